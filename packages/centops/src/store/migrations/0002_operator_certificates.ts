/**
 * Certificates of the control plane in the store, beside the mesh's: the
 * `certificates` table now also records `operator` certificates (with their
 * role) and CentOps' own (`centops`: the API server, the config signer).
 * Until now only the CA's ca.json knew about them, so issuing or revoking an
 * operator certificate left no audit trail and no row for `GET
 * /v1/certificates`.
 *
 * `role` is set exactly for operator certificates; the check says so, so a
 * row can never claim a role for a node or lose an operator's.
 *
 * PostgreSQL alters the constraints in place. SQLite cannot alter a CHECK
 * constraint, so there the table is rebuilt (create, copy, drop, rename),
 * the procedure SQLite's documentation gives for schema changes ALTER TABLE
 * does not support; nothing references `certificates` by foreign key, so
 * dropping the old table is safe.
 */
import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../location.js';

const KIND_CHECK = sql`principal_kind in ('client', 'node', 'operator', 'centops')`;
// `role is not null` spelled out: a CHECK passes when it evaluates to NULL, and `NULL in (…)` is NULL.
const ROLE_CHECK = sql`(principal_kind = 'operator' and role is not null and role in ('admin', 'operator', 'viewer'))
  or (principal_kind <> 'operator' and role is null)`;
const COLUMNS = [
  'serial',
  'principal_kind',
  'principal_id',
  'fingerprint',
  'not_before',
  'not_after',
  'recorded_at',
  'revoked_at',
  'revocation_reason',
];

async function upPostgres(db: Kysely<unknown>): Promise<void> {
  await sql`alter table certificates add column role text`.execute(db);
  await sql`alter table certificates drop constraint certificates_kind`.execute(db);
  await sql`alter table certificates add constraint certificates_kind check (${KIND_CHECK})`.execute(db);
  await sql`alter table certificates add constraint certificates_role check (${ROLE_CHECK})`.execute(db);
}

async function rebuildSqlite(db: Kysely<unknown>): Promise<void> {
  // The same columns and types as 0001 (SQLite: text), plus role.
  await db.schema
    .createTable('certificates_0002')
    .addColumn('serial', 'text', (c) => c.primaryKey())
    .addColumn('principal_kind', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    .addColumn('fingerprint', 'text', (c) => c.notNull().unique())
    .addColumn('not_before', 'text', (c) => c.notNull())
    .addColumn('not_after', 'text', (c) => c.notNull())
    .addColumn('recorded_at', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'text')
    .addColumn('revocation_reason', 'text')
    .addColumn('role', 'text')
    .addCheckConstraint('certificates_kind', KIND_CHECK)
    .addCheckConstraint('certificates_role', ROLE_CHECK)
    .addCheckConstraint('certificates_validity', sql`not_after > not_before`)
    .execute();
  const columns = sql.join(COLUMNS.map((name) => sql.ref(name)));
  await sql`insert into certificates_0002 (${columns}) select ${columns} from certificates`.execute(db);
  await db.schema.dropTable('certificates').execute();
  await sql`alter table certificates_0002 rename to certificates`.execute(db);
  // The index went with the old table.
  await db.schema
    .createIndex('certificates_by_principal')
    .on('certificates')
    .columns(['principal_id', 'serial'])
    .execute();
}

// Kysely runs SQLite migrations outside a transaction (it reports no transactional DDL), but SQLite's DDL is
// transactional: one transaction means a crash mid-rebuild leaves the old table, not half of a new one.
async function upSqlite(db: Kysely<unknown>): Promise<void> {
  await db.transaction().execute((trx) => rebuildSqlite(trx));
}

export function operatorCertificatesMigration(dialect: Dialect): Migration {
  return { up: dialect === 'postgres' ? upPostgres : upSqlite };
}
