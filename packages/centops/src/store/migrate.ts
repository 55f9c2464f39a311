/**
 * Brings a database to this version's schema when a store opens, and
 * refuses one that a newer CentOps has already migrated further: running
 * old code on a newer schema could silently drop what the newer code wrote.
 */
import { Migrator, sql, type Kysely } from 'kysely';
import { DmrError } from '@dmr/core';
import { describeLocation, type StoreLocation } from './location.js';
import { InCodeMigrationProvider, migrationsFor } from './migrations/index.js';
import type { Database } from './schema.js';

export const MIGRATION_TABLE = 'centops_migration';
export const MIGRATION_LOCK_TABLE = 'centops_migration_lock';

/** The migration names this build knows, in order; the last is the schema version. */
export function knownMigrations(location: StoreLocation): string[] {
  return Object.keys(migrationsFor(location.dialect)).sort();
}

async function appliedMigrations(db: Kysely<Database>): Promise<string[]> {
  const tables = await db.introspection.getTables({ withInternalKyselyTables: true });
  if (!tables.some((table) => table.name === MIGRATION_TABLE)) return [];
  const result = await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)}`.execute(db);
  return result.rows.map((row) => row.name).sort();
}

export async function migrateToLatest(db: Kysely<Database>, location: StoreLocation): Promise<string> {
  const known = knownMigrations(location);
  const unknown = (await appliedMigrations(db)).filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw new DmrError(
      'STORE_TOO_NEW',
      `${describeLocation(location)} was migrated by a newer CentOps (migration ${unknown.join(', ')}; this version knows up to ${known.at(-1) ?? 'none'})`,
      {
        details: { unknownMigrations: unknown, latestKnown: known.at(-1) ?? null },
        hint: 'run the CentOps version that migrated this database (or newer); downgrading needs a restored backup',
      },
    );
  }
  const migrator = new Migrator({
    db,
    provider: new InCodeMigrationProvider(location.dialect),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((result) => result.status === 'Error')?.migrationName;
    throw new DmrError(
      'INTERNAL',
      `migrating ${describeLocation(location)} failed${failed === undefined ? '' : ` in ${failed}`}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error, hint: 'restore the database from a backup, or report this with the message above' },
    );
  }
  return known.at(-1) ?? '';
}
