/**
 * Policies in CentOps: every accepted version of the policy set —
 * Rego modules, data and Rego tests — with the signed bundle built from it.
 * Rows are never updated or deleted: the newest version is the active one,
 * older ones are the history (and what `GET /v1/policy?version=N` reads).
 *
 * `version` is the policy's own counter and the bundle's revision (nodes
 * refuse a bundle older than the one they run, so it only grows);
 * `registry_revision` is the registry revision the change produced (0 for
 * the set `centops init` seeds before anything is served). The bundle is
 * stored base64-encoded in a text column so that both dialects hand back
 * the same value.
 */
import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../location.js';

export function policiesMigration(dialect: Dialect): Migration {
  const pg = dialect === 'postgres';
  const time = pg ? sql`timestamptz` : sql`text`;
  const json = pg ? sql`jsonb` : sql`text`;
  const bigint = pg ? sql`bigint` : sql`integer`;
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('policy_versions')
        .addColumn('version', 'integer', (c) => c.primaryKey())
        .addColumn('registry_revision', bigint, (c) => c.notNull())
        .addColumn('files', json, (c) => c.notNull())
        .addColumn('digest', sql`text`, (c) => c.notNull())
        .addColumn('bundle', sql`text`, (c) => c.notNull())
        .addColumn('bundle_digest', sql`text`, (c) => c.notNull())
        .addColumn('tests_passed', 'integer', (c) => c.notNull())
        .addColumn('created_at', time, (c) => c.notNull())
        .addColumn('created_by', sql`text`, (c) => c.notNull())
        .addCheckConstraint('policy_versions_version', sql`version > 0`)
        .addCheckConstraint('policy_versions_registry_revision', sql`registry_revision >= 0`)
        .execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.dropTable('policy_versions').execute();
    },
  };
}
