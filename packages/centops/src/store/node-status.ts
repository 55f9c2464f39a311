/**
 * What each node last reported: the revision it runs, the one it refused
 * (and why), and its policy bundle. Reports are not operator actions, so
 * they are not audited. They still take the registry lock: it is cheap at
 * control-plane rates and spares SQLite a read-then-write lock upgrade.
 */
import type { Kysely, Selectable } from 'kysely';
import { DmrError } from '@dmr/core';
import type { Database, NodeStatusTable } from './schema.js';
import { writeTransaction } from './tx.js';
import type { NodeStatus, NodeStatusReport } from './types.js';

const TEXT_MAX = 1000;

function toStatus(row: Selectable<NodeStatusTable>): NodeStatus {
  return {
    nodeId: row.node_id,
    appliedRevision: row.applied_revision,
    refused:
      row.refused_revision === null ? null : { revision: row.refused_revision, reason: row.refused_reason ?? '' },
    policyRevision: row.policy_revision,
    reportedAt: row.reported_at,
  };
}

function checkReport(report: NodeStatusReport): void {
  const problems: string[] = [];
  const revision = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
  if (report.appliedRevision !== null && !revision(report.appliedRevision)) {
    problems.push('appliedRevision must be null or a revision number');
  }
  if (report.refused !== null) {
    if (!revision(report.refused?.revision)) problems.push('refused.revision must be a revision number');
    const reason = report.refused?.reason;
    if (typeof reason !== 'string' || reason === '' || reason.length > TEXT_MAX) {
      problems.push(`refused.reason must be a non-empty string of at most ${TEXT_MAX} characters`);
    }
  }
  const policy = report.policyRevision;
  if (policy !== null && (typeof policy !== 'string' || policy === '' || policy.length > 200)) {
    problems.push('policyRevision must be null or a non-empty string');
  }
  if (problems.length > 0) throw new DmrError('INVALID_ARGUMENT', problems.join('; '), { details: { problems } });
}

export async function reportNodeStatus(
  db: Kysely<Database>,
  nodeId: string,
  report: NodeStatusReport,
  now: Date,
): Promise<NodeStatus> {
  checkReport(report);
  return writeTransaction(db, async (trx, revision) => {
    const node = await trx
      .selectFrom('resources')
      .select('id')
      .where('kind', '=', 'Node')
      .where('id', '=', nodeId)
      .executeTakeFirst();
    if (node === undefined) throw new DmrError('NOT_FOUND', `Node ${nodeId} does not exist`);
    for (const reported of [report.appliedRevision, report.refused?.revision]) {
      if (reported != null && reported > revision) {
        throw new DmrError(
          'INVALID_ARGUMENT',
          `revision ${reported} does not exist yet (the registry is at ${revision})`,
        );
      }
    }
    const update = {
      applied_revision: report.appliedRevision,
      refused_revision: report.refused?.revision ?? null,
      refused_reason: report.refused?.reason ?? null,
      policy_revision: report.policyRevision,
      reported_at: now.toISOString(),
    };
    const row = { node_kind: 'Node', node_id: nodeId, ...update };
    await trx
      .insertInto('node_status')
      .values(row)
      .onConflict((conflict) => conflict.column('node_id').doUpdateSet(update))
      .execute();
    return toStatus(row);
  });
}

export async function getNodeStatus(db: Kysely<Database>, nodeId: string): Promise<NodeStatus | undefined> {
  const row = await db.selectFrom('node_status').selectAll().where('node_id', '=', nodeId).executeTakeFirst();
  return row === undefined ? undefined : toStatus(row);
}

export async function listNodeStatus(db: Kysely<Database>): Promise<NodeStatus[]> {
  const rows = await db.selectFrom('node_status').selectAll().orderBy('node_id').execute();
  return rows.map(toStatus);
}
