/**
 * Resource kinds as the CLI names them ↔ the API's kinds and paths. One
 * table, so `get`, `describe`, `create`, `delete`, `apply` and `export`
 * agree on spelling (`client`, `clients`, `Client` all work) and on the
 * order documents are exported in.
 */
import { DmrError } from '@dmr/core';
import type { ResourceKind, ResourceSpecs, Stored } from '@dmr/centops';

export interface KindInfo<K extends ResourceKind = ResourceKind> {
  kind: K;
  /** The API collection: /v1/<path>. */
  path: string;
  aliases: readonly string[];
  /** Table columns for `get`: header and how to read it from the spec. */
  columns: ReadonlyArray<readonly [string, (spec: ResourceSpecs[K]) => string]>;
}

const labels = (value: Record<string, string>) =>
  Object.entries(value)
    .map(([key, label]) => `${key}=${label}`)
    .join(',');

const ORGANISATION: KindInfo<'Organisation'> = {
  kind: 'Organisation',
  path: 'organisations',
  aliases: ['organisation', 'organisations', 'organization', 'organizations', 'org', 'orgs'],
  columns: [
    ['NAME', (spec) => spec.name],
    ['LABELS', (spec) => labels(spec.labels)],
  ],
};
const NODE: KindInfo<'Node'> = {
  kind: 'Node',
  path: 'nodes',
  aliases: ['node', 'nodes'],
  columns: [
    ['AMQPS', (spec) => spec.amqpsEndpoint],
    ['LABELS', (spec) => labels(spec.labels)],
  ],
};
const LINK: KindInfo<'Link'> = {
  kind: 'Link',
  path: 'links',
  aliases: ['link', 'links'],
  columns: [
    ['NODES', (spec) => spec.nodes.join(' ↔ ')],
    ['COST', (spec) => String(spec.cost)],
  ],
};
const CLIENT: KindInfo<'Client'> = {
  kind: 'Client',
  path: 'clients',
  aliases: ['client', 'clients'],
  columns: [
    ['ORGANISATION', (spec) => spec.organisation],
    ['HOME NODE', (spec) => spec.homeNode],
    ['STATUS', (spec) => spec.status],
    ['ROLES', (spec) => spec.roles.join(',')],
  ],
};

/** Export order: what others refer to comes first, so the file reads top-down (apply itself does not care). */
export const KINDS: readonly KindInfo[] = [ORGANISATION, NODE, LINK, CLIENT] as unknown as readonly KindInfo[];

export function kindInfo(name: string): KindInfo {
  const wanted = name.toLowerCase();
  const found = KINDS.find((info) => info.kind.toLowerCase() === wanted || info.aliases.includes(wanted));
  if (found === undefined) {
    throw new DmrError('INVALID_ARGUMENT', `unknown kind "${name}"`, {
      details: { kind: name },
      hint: `one of ${KINDS.map((info) => info.path).join(', ')}`,
    });
  }
  return found;
}

/** The id of a stored resource of any kind (every spec has one). */
export function idOf(resource: Stored<ResourceKind>): string {
  return resource.spec.id;
}

export function itemPath(info: KindInfo, id: string): string {
  return `/v1/${info.path}/${encodeURIComponent(id)}`;
}
