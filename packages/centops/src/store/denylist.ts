/**
 * The denylist: ids nodes must refuse within seconds (close connections,
 * drop links, reject messages). It is part of what nodes are configured
 * from, so every change bumps the registry revision like a resource change.
 */
import type { Kysely, Selectable } from 'kysely';
import { DmrError, assertPrincipalKind, assertValidId, type PrincipalKind } from '@dmr/core';
import { writeAudit } from './audit.js';
import { principalKindOf } from './principals.js';
import type { Database, Db, DenylistTable } from './schema.js';
import { bumpRevision, writeTransaction } from './tx.js';
import type { DenylistEntry } from './types.js';

const REASON_MAX = 500;

function toEntry(row: Selectable<DenylistTable>): DenylistEntry {
  return { id: row.id, kind: principalKindOf(row.kind), reason: row.reason, since: row.since, addedBy: row.added_by };
}

export async function addToDenylist(
  db: Kysely<Database>,
  entry: { id: string; kind: PrincipalKind; reason: string },
  actor: string,
  now: Date,
): Promise<DenylistEntry> {
  assertValidId(entry.id);
  assertPrincipalKind(entry.kind);
  const reason = typeof entry.reason === 'string' ? entry.reason.trim() : '';
  if (reason === '' || reason.length > REASON_MAX) {
    throw new DmrError('INVALID_ARGUMENT', `a denylist reason is required (at most ${REASON_MAX} characters)`);
  }
  const since = now.toISOString();
  return writeTransaction(db, async (trx) => {
    const existing = await trx.selectFrom('denylist').selectAll().where('id', '=', entry.id).executeTakeFirst();
    if (existing !== undefined) {
      throw new DmrError('CONFLICT', `${entry.id} is already on the denylist (since ${existing.since})`, {
        details: { id: entry.id, since: existing.since },
      });
    }
    const row = { id: entry.id, kind: entry.kind, reason, since, added_by: actor };
    await trx.insertInto('denylist').values(row).execute();
    const revision = await bumpRevision(trx);
    await writeAudit(trx, [
      {
        at: since,
        actor,
        action: 'denylist.add',
        kind: 'Denylist',
        id: entry.id,
        revision,
        detail: { kind: entry.kind, reason },
      },
    ]);
    return toEntry(row);
  });
}

export async function removeFromDenylist(db: Kysely<Database>, id: string, actor: string, now: Date): Promise<void> {
  const at = now.toISOString();
  await writeTransaction(db, async (trx) => {
    const removed = await trx.deleteFrom('denylist').where('id', '=', id).returningAll().executeTakeFirst();
    if (removed === undefined) throw new DmrError('NOT_FOUND', `${id} is not on the denylist`);
    const revision = await bumpRevision(trx);
    await writeAudit(trx, [
      { at, actor, action: 'denylist.remove', kind: 'Denylist', id, revision, detail: { kind: removed.kind } },
    ]);
  });
}

export async function listDenylist(db: Db): Promise<DenylistEntry[]> {
  const rows = await db.selectFrom('denylist').selectAll().orderBy('id').execute();
  return rows.map(toEntry);
}
