/**
 * The first schema. Migrations are code (not .sql files) so that they ship
 * inside dist/ with nothing to locate at run time, and so that the few
 * dialect differences (column types, auto-increment) sit next to each other.
 *
 * Never edit a migration once released: add `0002_…` instead.
 */
import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../location.js';

function columnTypes(dialect: Dialect) {
  const pg = dialect === 'postgres';
  return {
    // "C" collation orders ids bytewise in PostgreSQL as SQLite does, so list
    // order and cursors behave the same on both (ids are ASCII).
    id: pg ? sql`text collate "C"` : sql`text`,
    text: sql`text`,
    time: pg ? sql`timestamptz` : sql`text`,
    json: pg ? sql`jsonb` : sql`text`,
    bigint: pg ? sql`bigint` : sql`integer`,
  };
}

export function initialMigration(dialect: Dialect): Migration {
  const t = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('registry_state')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('revision', t.bigint, (c) => c.notNull())
        .addCheckConstraint('registry_state_single_row', sql`id = 1`)
        .addCheckConstraint('registry_state_revision', sql`revision >= 0`)
        .execute();
      await sql`insert into registry_state (id, revision) values (1, 0)`.execute(db);

      await db.schema
        .createTable('resources')
        .addColumn('kind', t.text, (c) => c.notNull())
        .addColumn('id', t.id, (c) => c.notNull())
        .addColumn('namespace', t.text, (c) => c.notNull())
        .addColumn('spec', t.json, (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('revision', t.bigint, (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('updated_at', t.time, (c) => c.notNull())
        .addPrimaryKeyConstraint('resources_pk', ['kind', 'id'])
        // The shared id namespace, enforced by the database as well as by validation.
        .addUniqueConstraint('resources_namespace_id', ['namespace', 'id'])
        .addCheckConstraint('resources_kind', sql`kind in ('Organisation', 'Client', 'Node', 'Link')`)
        .addCheckConstraint(
          'resources_namespace',
          sql`(kind = 'Link' and namespace = 'link') or (kind <> 'Link' and namespace = 'principal')`,
        )
        .addCheckConstraint('resources_version', sql`version > 0`)
        .execute();

      await db.schema
        .createTable('resource_refs')
        .addColumn('kind', t.text, (c) => c.notNull())
        .addColumn('id', t.id, (c) => c.notNull())
        .addColumn('field', t.text, (c) => c.notNull())
        .addColumn('target_kind', t.text, (c) => c.notNull())
        .addColumn('target_id', t.id, (c) => c.notNull())
        .addPrimaryKeyConstraint('resource_refs_pk', ['kind', 'id', 'field', 'target_id'])
        .addForeignKeyConstraint('resource_refs_source', ['kind', 'id'], 'resources', ['kind', 'id'], (fk) =>
          fk.onDelete('cascade'),
        )
        // No cascade: deleting a resource that is still referenced must fail. Checked at
        // commit, so a batch can delete a node and move its clients away in any order.
        .addForeignKeyConstraint(
          'resource_refs_target',
          ['target_kind', 'target_id'],
          'resources',
          ['kind', 'id'],
          (fk) => fk.deferrable().initiallyDeferred(),
        )
        .execute();
      await db.schema
        .createIndex('resource_refs_by_target')
        .on('resource_refs')
        .columns(['target_kind', 'target_id', 'field'])
        .execute();

      const audit = db.schema.createTable('audit_log');
      await (
        dialect === 'postgres'
          ? audit.addColumn('seq', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
          : audit.addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
      )
        .addColumn('at', t.time, (c) => c.notNull())
        .addColumn('actor', t.text, (c) => c.notNull())
        .addColumn('action', t.text, (c) => c.notNull())
        .addColumn('kind', t.text)
        .addColumn('id', t.id)
        .addColumn('before_digest', t.text)
        .addColumn('after_digest', t.text)
        .addColumn('revision', t.bigint)
        .addColumn('detail', t.json)
        .execute();
      await db.schema.createIndex('audit_log_by_subject').on('audit_log').columns(['kind', 'id', 'seq']).execute();
      await db.schema.createIndex('audit_log_by_time').on('audit_log').columns(['at']).execute();

      await db.schema
        .createTable('bootstrap_tokens')
        .addColumn('token_hash', t.text, (c) => c.primaryKey())
        .addColumn('resource_kind', t.text, (c) => c.notNull())
        .addColumn('principal_id', t.id, (c) => c.notNull())
        .addColumn('created_at', t.time, (c) => c.notNull())
        .addColumn('created_by', t.text, (c) => c.notNull())
        .addColumn('expires_at', t.time, (c) => c.notNull())
        .addColumn('used_at', t.time)
        .addColumn('used_by', t.text)
        .addCheckConstraint('bootstrap_tokens_kind', sql`resource_kind in ('Client', 'Node')`)
        // A token dies with the client or node it was made for.
        .addForeignKeyConstraint(
          'bootstrap_tokens_principal',
          ['resource_kind', 'principal_id'],
          'resources',
          ['kind', 'id'],
          (fk) => fk.onDelete('cascade'),
        )
        .execute();
      await db.schema
        .createIndex('bootstrap_tokens_by_principal')
        .on('bootstrap_tokens')
        .columns(['principal_id'])
        .execute();

      // No foreign key to resources: certificates outlive a deleted client
      // (they stay valid until revoked or expired, so their record must stay).
      await db.schema
        .createTable('certificates')
        .addColumn('serial', t.text, (c) => c.primaryKey())
        .addColumn('principal_kind', t.text, (c) => c.notNull())
        .addColumn('principal_id', t.id, (c) => c.notNull())
        .addColumn('fingerprint', t.text, (c) => c.notNull().unique())
        .addColumn('not_before', t.time, (c) => c.notNull())
        .addColumn('not_after', t.time, (c) => c.notNull())
        .addColumn('recorded_at', t.time, (c) => c.notNull())
        .addColumn('revoked_at', t.time)
        .addColumn('revocation_reason', t.text)
        .addCheckConstraint('certificates_kind', sql`principal_kind in ('client', 'node')`)
        .addCheckConstraint('certificates_validity', sql`not_after > not_before`)
        .execute();
      await db.schema
        .createIndex('certificates_by_principal')
        .on('certificates')
        .columns(['principal_id', 'serial'])
        .execute();

      // Likewise no foreign key: an id may be denied before it exists or after it is deleted.
      await db.schema
        .createTable('denylist')
        .addColumn('id', t.id, (c) => c.primaryKey())
        .addColumn('kind', t.text, (c) => c.notNull())
        .addColumn('reason', t.text, (c) => c.notNull())
        .addColumn('since', t.time, (c) => c.notNull())
        .addColumn('added_by', t.text, (c) => c.notNull())
        .addCheckConstraint('denylist_kind', sql`kind in ('client', 'node')`)
        .execute();

      await db.schema
        .createTable('node_status')
        .addColumn('node_kind', t.text, (c) => c.notNull().defaultTo('Node'))
        .addColumn('node_id', t.id, (c) => c.primaryKey())
        .addColumn('applied_revision', t.bigint)
        .addColumn('refused_revision', t.bigint)
        .addColumn('refused_reason', t.text)
        .addColumn('policy_revision', t.text)
        .addColumn('reported_at', t.time, (c) => c.notNull())
        .addCheckConstraint('node_status_kind', sql`node_kind = 'Node'`)
        .addForeignKeyConstraint('node_status_node', ['node_kind', 'node_id'], 'resources', ['kind', 'id'], (fk) =>
          fk.onDelete('cascade'),
        )
        .execute();
    },
  };
}
