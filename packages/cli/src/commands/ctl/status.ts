/** `dmr ctl status`: the registry revision and the revision each node reports running (or refused). */
import { Command } from 'commander';
import { action } from '../../action.js';
import { printResult } from '../../output.js';
import { apiClient } from './common.js';
import { renderTable } from './render.js';

export interface NodeStatus {
  id: string;
  appliedRevision: number | null;
  upToDate: boolean;
  refused: { revision?: number; reason?: string } | null;
  policyRevision: number | null;
  reportedAt: string | null;
}

export interface StatusResponse {
  revision: number;
  schemaVersion?: unknown;
  nodes: NodeStatus[];
}

function refusedText(refused: NodeStatus['refused']): string {
  if (refused === null) return '';
  return `${refused.revision ?? '?'}${refused.reason === undefined ? '' : `: ${refused.reason}`}`;
}

export function renderStatus(status: StatusResponse): string {
  const head = `revision: ${status.revision}`;
  if (status.nodes.length === 0) return `${head}\nno nodes`;
  const rows = status.nodes.map((node) => [
    node.id,
    node.appliedRevision === null ? '-' : String(node.appliedRevision),
    node.appliedRevision === null ? 'never reported' : node.upToDate ? 'up to date' : 'behind',
    refusedText(node.refused),
    node.reportedAt ?? '-',
  ]);
  return `${head}\n${renderTable(['NODE', 'APPLIED', 'STATE', 'REFUSED', 'REPORTED'], rows)}`;
}

export function statusCommand(): Command {
  return new Command('status')
    .description("the registry revision and each node's applied (or refused) revision")
    .action(
      action<[]>(async ({ format, command }) => {
        const status = await (await apiClient(command)).get<StatusResponse>('/v1/status');
        printResult(format, status, renderStatus);
      }),
    );
}
