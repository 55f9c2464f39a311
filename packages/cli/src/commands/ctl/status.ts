/** `dmr ctl status`: the registry revision and the revision each node reports running (or refused). */
import { Command } from 'commander';
import { validAnswer } from '@dmr/centops-client';
import {
  MESH_STATUS_SCHEMA,
  type MeshNodeStatus as NodeStatus,
  type MeshStatus as StatusResponse,
} from '@dmr/contract';
import { action } from '../../action.js';
import { printResult } from '../../output.js';
import { apiClient } from './common.js';
import { renderTable } from '../../output.js';

export type { MeshNodeStatus as NodeStatus, MeshStatus as StatusResponse } from '@dmr/contract';

function refusedText(refused: NodeStatus['refused']): string {
  if (refused === null) return '';
  return `${refused.revision}: ${refused.reason}`;
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
        const status = validAnswer(MESH_STATUS_SCHEMA, await (await apiClient(command)).get('/v1/status'), 'status');
        printResult(format, status, renderStatus);
      }),
    );
}
