/**
 * The denylist: ids nodes must refuse within seconds (close connections,
 * drop links, reject messages). It is part of what nodes are configured
 * from, so every change bumps the registry revision like a resource change.
 */
import type { Kysely, Selectable, Transaction } from 'kysely';
import { DmrError, assertPrincipalKind, assertValidId, canonicalDigest, type PrincipalKind } from '@dmr/core';
import { writeAudit } from './audit.js';
import { principalKindOf } from './principals.js';
import type { Database, Db, DenylistTable } from './schema.js';
import { bumpRevision, writeTransaction } from './tx.js';
import type { DenylistEntry } from './types.js';

const REASON_MAX = 500;

function toEntry(row: Selectable<DenylistTable>): DenylistEntry {
  return { id: row.id, kind: principalKindOf(row.kind), reason: row.reason, since: row.since, addedBy: row.added_by };
}

/** The entry as stored: a valid id and kind, a trimmed reason of 1–500 characters. */
function checkedEntry(entry: { id: string; kind: PrincipalKind; reason: string }): {
  id: string;
  kind: PrincipalKind;
  reason: string;
} {
  assertValidId(entry.id);
  assertPrincipalKind(entry.kind);
  const reason = typeof entry.reason === 'string' ? entry.reason.trim() : '';
  if (reason === '' || reason.length > REASON_MAX) {
    throw new DmrError('INVALID_ARGUMENT', `a denylist reason is required (at most ${REASON_MAX} characters)`);
  }
  return { id: entry.id, kind: entry.kind, reason };
}

/**
 * Puts an id on the denylist inside a write transaction whose revision the
 * caller has already bumped (`revision`), audited at that revision.
 * Returns undefined, changing nothing, when the id is already there. Used
 * by addToDenylist and by certificate revocation (one transaction, one
 * revision for the revoked certificate and the denylist entry).
 */
export async function denyInTransaction(
  trx: Transaction<Database>,
  entry: { id: string; kind: PrincipalKind; reason: string },
  actor: string,
  since: string,
  revision: number,
): Promise<DenylistEntry | undefined> {
  const checked = checkedEntry(entry);
  const existing = await trx.selectFrom('denylist').select('id').where('id', '=', checked.id).executeTakeFirst();
  if (existing !== undefined) return undefined;
  const row = { ...checked, since, added_by: actor };
  await trx.insertInto('denylist').values(row).execute();
  await writeAudit(trx, [
    {
      at: since,
      actor,
      action: 'denylist.add',
      kind: 'Denylist',
      id: checked.id,
      revision,
      afterDigest: canonicalDigest(toEntry(row)),
      detail: { kind: checked.kind, reason: checked.reason },
    },
  ]);
  return toEntry(row);
}

export async function addToDenylist(
  db: Kysely<Database>,
  entry: { id: string; kind: PrincipalKind; reason: string },
  actor: string,
  now: Date,
): Promise<DenylistEntry> {
  const checked = checkedEntry(entry);
  const since = now.toISOString();
  return writeTransaction(db, async (trx) => {
    const existing = await trx.selectFrom('denylist').selectAll().where('id', '=', checked.id).executeTakeFirst();
    if (existing !== undefined) {
      throw new DmrError('CONFLICT', `${checked.id} is already on the denylist (since ${existing.since})`, {
        details: { id: checked.id, since: existing.since },
      });
    }
    const revision = await bumpRevision(trx);
    const added = await denyInTransaction(trx, checked, actor, since, revision);
    if (added === undefined) throw new DmrError('INTERNAL', `${checked.id} appeared on the denylist mid-transaction`);
    return added;
  });
}

/** Lifts an entry; resolves with the kind it named and the revision it made. */
export async function removeFromDenylist(
  db: Kysely<Database>,
  id: string,
  actor: string,
  now: Date,
): Promise<{ kind: PrincipalKind; revision: number }> {
  const at = now.toISOString();
  return writeTransaction(db, async (trx) => {
    const removed = await trx.deleteFrom('denylist').where('id', '=', id).returningAll().executeTakeFirst();
    if (removed === undefined) throw new DmrError('NOT_FOUND', `${id} is not on the denylist`);
    const revision = await bumpRevision(trx);
    await writeAudit(trx, [
      {
        at,
        actor,
        action: 'denylist.remove',
        kind: 'Denylist',
        id,
        revision,
        beforeDigest: canonicalDigest(toEntry(removed)),
        detail: { kind: removed.kind, reason: removed.reason },
      },
    ]);
    return { kind: removed.kind as PrincipalKind, revision };
  });
}

export async function listDenylist(db: Db): Promise<DenylistEntry[]> {
  const rows = await db.selectFrom('denylist').selectAll().orderBy('id').execute();
  return rows.map(toEntry);
}
