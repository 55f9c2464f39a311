/**
 * Registry resources in the database: row mapping, reads, and the write
 * primitives that apply.ts sequences. Every write keeps `resource_refs` in
 * step with the spec it stores.
 */
import type { Selectable } from 'kysely';
import { DmrError, canonicalJson } from '@dmr/core';
import type { ResourceKind, ResourceSpecs, Stored } from '../model.js';
import { decodeCursor, pageLimit, toPage } from './cursor.js';
import type { Db, ResourcesTable } from './schema.js';
import type { ListFilters, ListOptions, Page } from './types.js';
import { isResourceKind } from './validate.js';

/** A stored resource of any kind, discriminated by `kind`. */
export type AnyStored = { [K in ResourceKind]: Stored<K> }[ResourceKind];
export type AnySpec = ResourceSpecs[ResourceKind];

export function resourceKey(kind: ResourceKind, id: string): string {
  return `${kind}/${id}`;
}

/** Organisations, clients and nodes share one id namespace; links have their own. */
export function namespaceOf(kind: ResourceKind): 'principal' | 'link' {
  return kind === 'Link' ? 'link' : 'principal';
}

export function toStored(row: Selectable<ResourcesTable>): AnyStored {
  if (!isResourceKind(row.kind)) {
    throw new DmrError('INTERNAL', `the resources table holds an unknown kind "${row.kind}"`);
  }
  return {
    kind: row.kind,
    spec: JSON.parse(row.spec) as AnySpec,
    version: row.version,
    revision: row.revision,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  } as AnyStored;
}

/** The typed view of a stored resource once its kind is known to be K. */
export function narrow<K extends ResourceKind>(stored: AnyStored, _kind: K): Stored<K> {
  return stored as Stored<K>;
}

interface Ref {
  field: string;
  targetKind: ResourceKind;
  targetId: string;
}

export function refsOf(kind: ResourceKind, spec: AnySpec): Ref[] {
  if (kind === 'Client') {
    const client = spec as ResourceSpecs['Client'];
    return [
      { field: 'organisation', targetKind: 'Organisation', targetId: client.organisation },
      { field: 'homeNode', targetKind: 'Node', targetId: client.homeNode },
    ];
  }
  if (kind === 'Link') {
    return (spec as ResourceSpecs['Link']).nodes.map((node) => ({ field: 'node', targetKind: 'Node', targetId: node }));
  }
  return [];
}

/** List filters as the ref field each one matches. */
const FILTER_FIELDS: { [K in ResourceKind]: Record<keyof ListFilters[K], string> } = {
  Organisation: {},
  Client: { organisation: 'organisation', homeNode: 'homeNode' },
  Node: {},
  Link: { node: 'node' },
};

export async function findResource(db: Db, kind: ResourceKind, id: string): Promise<AnyStored | undefined> {
  const row = await db
    .selectFrom('resources')
    .selectAll()
    .where('kind', '=', kind)
    .where('id', '=', id)
    .executeTakeFirst();
  return row === undefined ? undefined : toStored(row);
}

/** Every resource, ordered by kind and id. Validation needs the whole registry. */
export async function loadAllResources(db: Db): Promise<AnyStored[]> {
  const rows = await db.selectFrom('resources').selectAll().orderBy('kind').orderBy('id').execute();
  return rows.map(toStored);
}

export async function listResources<K extends ResourceKind>(
  db: Db,
  kind: K,
  options: ListOptions<K>,
): Promise<Page<Stored<K>>> {
  const limit = pageLimit(options);
  const scope = `resources:${kind}`;
  let query = db.selectFrom('resources').selectAll().where('kind', '=', kind);
  if (options.cursor !== undefined) query = query.where('id', '>', decodeCursor(scope, options.cursor, 'string'));
  const fields: Record<string, string> = FILTER_FIELDS[kind];
  for (const [name, value] of Object.entries(options.filter ?? {}) as [string, unknown][]) {
    if (value === undefined) continue;
    const field = fields[name];
    if (field === undefined || typeof value !== 'string') {
      throw new DmrError('INVALID_ARGUMENT', `${kind} cannot be filtered by "${name}"`, {
        details: { allowed: Object.keys(fields) },
      });
    }
    query = query.where(({ exists, selectFrom }) =>
      exists(
        selectFrom('resource_refs as r')
          .select('r.id')
          .whereRef('r.kind', '=', 'resources.kind')
          .whereRef('r.id', '=', 'resources.id')
          .where('r.field', '=', field)
          .where('r.target_id', '=', value),
      ),
    );
  }
  const rows = await query
    .orderBy('id')
    .limit(limit + 1)
    .execute();
  return toPage(
    rows,
    limit,
    scope,
    (row) => narrow(toStored(row), kind),
    (row) => row.id,
  );
}

export async function insertResource(db: Db, stored: AnyStored): Promise<void> {
  await db
    .insertInto('resources')
    .values({
      kind: stored.kind,
      id: stored.spec.id,
      namespace: namespaceOf(stored.kind),
      spec: canonicalJson(stored.spec),
      version: stored.version,
      revision: stored.revision,
      created_at: stored.createdAt,
      updated_at: stored.updatedAt,
    })
    .execute();
  await insertRefs(db, stored.kind, stored.spec);
}

/** Writes a new version; `previousVersion` guards against a lost update even though writers are serialised. */
export async function updateResource(db: Db, stored: AnyStored, previousVersion: number): Promise<void> {
  const result = await db
    .updateTable('resources')
    .set({
      spec: canonicalJson(stored.spec),
      version: stored.version,
      revision: stored.revision,
      updated_at: stored.updatedAt,
    })
    .where('kind', '=', stored.kind)
    .where('id', '=', stored.spec.id)
    .where('version', '=', previousVersion)
    .executeTakeFirst();
  if (result.numUpdatedRows !== 1n) {
    throw new DmrError('INTERNAL', `${stored.kind} ${stored.spec.id} changed underneath a serialised write`);
  }
  await db.deleteFrom('resource_refs').where('kind', '=', stored.kind).where('id', '=', stored.spec.id).execute();
  await insertRefs(db, stored.kind, stored.spec);
}

/** Its refs, bootstrap tokens and node status go with it (foreign keys, on delete cascade). */
export async function deleteResource(db: Db, kind: ResourceKind, id: string): Promise<void> {
  await db.deleteFrom('resources').where('kind', '=', kind).where('id', '=', id).execute();
}

async function insertRefs(db: Db, kind: ResourceKind, spec: AnySpec): Promise<void> {
  const refs = refsOf(kind, spec);
  if (refs.length === 0) return;
  await db
    .insertInto('resource_refs')
    .values(
      refs.map((ref) => ({
        kind,
        id: spec.id,
        field: ref.field,
        target_kind: ref.targetKind,
        target_id: ref.targetId,
      })),
    )
    .execute();
}
