/**
 * Revocation by identity (docs/decisions/0012-revocation-by-identity.md). `identity_revocations` holds
 * one "not before" per identity (kind + id): every certificate of the id
 * issued before it is refused, whatever its serial, and lifting a denylist
 * entry does not move it. `certificates.supersede_at` is when a certificate
 * that a renewal replaced is revoked (reason superseded), after the
 * configured overlap. Both dialects add a nullable column in place.
 */
import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../location.js';

export function identityRevocationMigration(dialect: Dialect): Migration {
  const pg = dialect === 'postgres';
  const id = pg ? sql`text collate "C"` : sql`text`;
  const time = pg ? sql`timestamptz` : sql`text`;
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('identity_revocations')
        .addColumn('principal_kind', sql`text`, (c) => c.notNull())
        .addColumn('principal_id', id, (c) => c.notNull())
        .addColumn('not_before', time, (c) => c.notNull())
        .addColumn('reason', sql`text`, (c) => c.notNull())
        .addColumn('revoked_by', sql`text`, (c) => c.notNull())
        .addPrimaryKeyConstraint('identity_revocations_pk', ['principal_kind', 'principal_id'])
        .addCheckConstraint('identity_revocations_kind', sql`principal_kind in ('client', 'node', 'operator')`)
        .execute();
      await sql`alter table certificates add column supersede_at ${time}`.execute(db);
    },
  };
}
