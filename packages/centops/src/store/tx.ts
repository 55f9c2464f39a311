/**
 * Transactions. Every write that the audit log records runs in
 * `writeTransaction`, which first locks the one `registry_state` row. That
 * serialises writers on both dialects, which buys three things cheaply:
 * validation sees a registry nobody else is changing, revisions are bumped
 * without gaps or races, and audit `seq` order is commit order (a reader
 * paging by seq never misses an entry that commits late).
 *
 * The lock is a no-op UPDATE rather than SELECT … FOR UPDATE because SQLite
 * has no FOR UPDATE: there, a write as the first statement takes the
 * database's write lock at once (and waits out other processes through
 * busy_timeout) instead of failing later when a read lock cannot upgrade.
 * Control-plane writes are rare; one at a time is plenty.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { DmrError } from '@dmr/core';
import type { Database, Db } from './schema.js';

export async function writeTransaction<T>(
  db: Kysely<Database>,
  work: (trx: Transaction<Database>, revision: number) => Promise<T>,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('registry_state')
      .set({ revision: sql<number>`revision` })
      .where('id', '=', 1)
      .returning('revision')
      .executeTakeFirst();
    if (row === undefined) throw new DmrError('INTERNAL', 'the registry_state row is missing');
    return work(trx, row.revision);
  });
}

/**
 * A consistent read: REPEATABLE READ in PostgreSQL (one snapshot for every
 * statement); SQLite transactions are snapshots already (WAL), and Kysely's
 * SQLite driver ignores the isolation setting.
 */
export async function readTransaction<T>(
  db: Kysely<Database>,
  work: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  return db.transaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute(work);
}

/** Bumps the revision by one; only inside writeTransaction, and at most once per transaction. */
export async function bumpRevision(trx: Transaction<Database>): Promise<number> {
  const row = await trx
    .updateTable('registry_state')
    .set({ revision: sql<number>`revision + 1` })
    .where('id', '=', 1)
    .returning('revision')
    .executeTakeFirstOrThrow();
  return row.revision;
}

export async function currentRevision(db: Db): Promise<number> {
  const row = await db.selectFrom('registry_state').select('revision').where('id', '=', 1).executeTakeFirst();
  if (row === undefined) throw new DmrError('INTERNAL', 'the registry_state row is missing');
  return row.revision;
}
