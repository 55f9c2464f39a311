/**
 * The checkpoints CentOps holds for each audit log (a router writer's, or its
 * own) and the writers it knows. Witnessing is decided inside the write
 * lock (store/tx.ts): two checkpoints of one log arriving at once are judged
 * one after the other against the latest stored, so a fork cannot slip in
 * between a check and its insert.
 */
import type { Selectable } from 'kysely';
import { DmrError } from '@dmr/core';
import type { AuditCheckpointsTable, Db } from './schema.js';
import type { Database } from './schema.js';
import type { Kysely } from 'kysely';
import { writeTransaction } from './tx.js';

/**
 * Writers CentOps registers per node. A node names its writers itself (any
 * `<node>/<name>`), so without a bound one node could grow audit_writers
 * (and GET /v1/audit/writers) without end. A node runs at most 64 routers
 * (run-config `routers`) and starts a fresh writer per router only when
 * CentOps could not say where its log stands: 16 such starts of a full node.
 */
export const MAX_AUDIT_WRITERS_PER_NODE = 1024;

export interface StoredCheckpoint {
  origin: string;
  size: number;
  /** base64 */
  root: string;
  note: string;
  /** base64 edge hashes at `size` (writers' logs only). */
  edge: string[] | null;
  at: string;
}

export interface AuditWriter {
  writer: string;
  nodeId: string;
  origin: string;
  registeredAt: string;
}

function toCheckpoint(row: Selectable<AuditCheckpointsTable>): StoredCheckpoint {
  return {
    origin: row.origin,
    size: Number(row.size),
    root: row.root,
    note: row.note,
    edge: row.edge === null ? null : (JSON.parse(row.edge) as string[]),
    at: typeof row.at === 'string' ? row.at : new Date(row.at as unknown as Date).toISOString(),
  };
}

export async function latestCheckpoint(db: Db, origin: string): Promise<StoredCheckpoint | undefined> {
  const row = await db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .where('origin', '=', origin)
    .orderBy('size', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row === undefined ? undefined : toCheckpoint(row);
}

/** A log's checkpoints, smallest first (an export carries them all). */
export async function listCheckpoints(
  db: Db,
  origin: string,
  afterSize = -1,
  limit = 1000,
): Promise<StoredCheckpoint[]> {
  const rows = await db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .where('origin', '=', origin)
    .where('size', '>', afterSize)
    .orderBy('size')
    .limit(limit)
    .execute();
  return rows.map(toCheckpoint);
}

export async function listAuditWriters(db: Db): Promise<AuditWriter[]> {
  const rows = await db.selectFrom('audit_writers').selectAll().orderBy('writer').execute();
  return rows.map((row) => ({
    writer: row.writer,
    nodeId: row.node_id,
    origin: row.origin,
    registeredAt: typeof row.registered_at === 'string' ? row.registered_at : new Date(row.registered_at).toISOString(),
  }));
}

async function assertWriterRoom(db: Db, nodeId: string): Promise<void> {
  const { count } = await db
    .selectFrom('audit_writers')
    .select((eb) => eb.fn.countAll().as('count'))
    .where('node_id', '=', nodeId)
    .executeTakeFirstOrThrow();
  if (Number(count) >= MAX_AUDIT_WRITERS_PER_NODE) {
    throw new DmrError(
      'FORBIDDEN',
      `node ${nodeId} has ${MAX_AUDIT_WRITERS_PER_NODE} audit writers: CentOps registers no more`,
      {
        details: { nodeId, limit: MAX_AUDIT_WRITERS_PER_NODE },
        hint: "a node's writers are <node>/router-<shard>, and a fresh one per router only when CentOps was unreachable at start",
      },
    );
  }
}

export interface CheckpointProposal {
  origin: string;
  /** For a writer's log: registered on its first checkpoint. */
  writer?: { writer: string; nodeId: string };
  size: number;
  root: string;
  edge: string[] | null;
}

/**
 * Stores the checkpoint `decide` returns for `proposal`, given the latest
 * one held (undefined for a new log). `decide` throws to refuse; returning
 * the latest one unchanged (a repeat) stores nothing.
 */
export async function witnessCheckpoint(
  db: Kysely<Database>,
  proposal: CheckpointProposal,
  now: Date,
  decide: (latest: StoredCheckpoint | undefined) => string,
): Promise<StoredCheckpoint> {
  return writeTransaction(db, async (trx) => {
    const latest = await latestCheckpoint(trx, proposal.origin);
    if (proposal.writer !== undefined && latest === undefined) await assertWriterRoom(trx, proposal.writer.nodeId);
    const note = decide(latest);
    if (latest !== undefined && latest.size === proposal.size) return latest;
    const at = now.toISOString();
    if (proposal.writer !== undefined && latest === undefined) {
      await trx
        .insertInto('audit_writers')
        .values({
          writer: proposal.writer.writer,
          node_id: proposal.writer.nodeId,
          origin: proposal.origin,
          registered_at: at,
        })
        .onConflict((conflict) => conflict.column('writer').doNothing())
        .execute();
    }
    const row = {
      origin: proposal.origin,
      size: proposal.size,
      root: proposal.root,
      note,
      edge: proposal.edge === null ? null : JSON.stringify(proposal.edge),
      at,
    };
    await trx.insertInto('audit_checkpoints').values(row).execute();
    return toCheckpoint(row);
  });
}
