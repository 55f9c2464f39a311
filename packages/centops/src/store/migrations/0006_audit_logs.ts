/**
 * Audit logs that prove themselves (docs/audit.md): the router writers CentOps
 * knows (`audit_writers`, one row per writer, registered by its node's first
 * checkpoint) and every checkpoint CentOps holds (`audit_checkpoints`): the
 * writers' ones, countersigned, and those of CentOps' own audit log. A
 * checkpoint is kept with the writer's log edge at that size (base64 JSON
 * list), which is what a restarted writer continues from. Rows are never
 * updated or deleted; (origin, size) is unique, so two CentOps instances
 * witnessing the same checkpoint store it once.
 */
import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../location.js';

export function auditLogsMigration(dialect: Dialect): Migration {
  const pg = dialect === 'postgres';
  const time = pg ? sql`timestamptz` : sql`text`;
  const bigint = pg ? sql`bigint` : sql`integer`;
  const id = pg ? sql`text collate "C"` : sql`text`;
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('audit_writers')
        .addColumn('writer', id, (c) => c.primaryKey())
        .addColumn('node_id', id, (c) => c.notNull())
        .addColumn('origin', id, (c) => c.notNull().unique())
        .addColumn('registered_at', time, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('audit_checkpoints')
        .addColumn('origin', id, (c) => c.notNull())
        .addColumn('size', bigint, (c) => c.notNull())
        .addColumn('root', sql`text`, (c) => c.notNull())
        .addColumn('note', sql`text`, (c) => c.notNull())
        .addColumn('edge', sql`text`)
        .addColumn('at', time, (c) => c.notNull())
        .addPrimaryKeyConstraint('audit_checkpoints_pk', ['origin', 'size'])
        .addCheckConstraint('audit_checkpoints_size', sql`size >= 0`)
        .execute();
    },
    async down(db: Kysely<unknown>): Promise<void> {
      await db.schema.dropTable('audit_checkpoints').execute();
      await db.schema.dropTable('audit_writers').execute();
    },
  };
}
