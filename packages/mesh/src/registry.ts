/**
 * What the demo mesh registers in CentOps: one Node per DMR node, the links
 * of the chosen topology, two organisations with one client each (bot-a on
 * the first node, bot-b on the last) and a policy grant that lets them
 * exchange ChatMessages. Everything goes through the API, as an operator's
 * `dmr ctl apply` and `dmr policy` would; CentOps computes the routes.
 */
import type { CentOpsApi } from './centops-client.js';
import { linkIdOf, type MeshShape } from './topology.js';

export interface DemoClient {
  id: string;
  organisation: string;
}

/** bot-a asks, bot-b answers: bot-a lives on the first node, bot-b on the last. */
export const DEMO_CLIENTS: readonly [DemoClient, DemoClient] = [
  { id: 'bot-a', organisation: 'org-a' },
  { id: 'bot-b', organisation: 'org-b' },
];

const PROFILE = { keyAlgorithm: 'ecdsa-p256', lifetime: '24h', extraDns: [], extraIps: [] };
/** Every Node the mesh registers carries it: a later `dmr up` removes only nodes with this label. */
const MESH_LABEL = { mesh: 'local' };

export interface NodeEndpoints {
  id: string;
  amqpsPort: number;
  managementPort: number;
}

export interface RegistryItem {
  op?: 'upsert' | 'delete';
  kind: string;
  spec?: Record<string, unknown>;
  id?: string;
}

/** The home node of each demo client: bot-a on the first node, bot-b on the last. */
export function demoHomes(shape: MeshShape): Map<string, string> {
  const first = shape.nodes[0] as string;
  const last = shape.nodes[shape.nodes.length - 1] as string;
  return new Map([
    [DEMO_CLIENTS[0].id, first],
    [DEMO_CLIENTS[1].id, last],
  ]);
}

/** The batch for POST /v1/apply (upserts: a second `dmr up` changes nothing it does not have to). */
export function registryDocuments(shape: MeshShape, endpoints: readonly NodeEndpoints[]): RegistryItem[] {
  const homes = demoHomes(shape);
  return [
    { kind: 'Organisation', spec: { id: 'org-a', name: 'Organisation A (demo)', labels: {} } },
    { kind: 'Organisation', spec: { id: 'org-b', name: 'Organisation B (demo)', labels: {} } },
    ...endpoints.map((node) => ({
      kind: 'Node',
      spec: {
        id: node.id,
        // What clients and peer nodes dial; the node certificate names localhost (below).
        amqpsEndpoint: `amqps://localhost:${node.amqpsPort}`,
        // The registry wants https; the harness serves management over http on loopback. The node's
        // run-config carries the URL it really uses, so this entry is descriptive only.
        managementEndpoint: `https://localhost:${node.managementPort}`,
        labels: MESH_LABEL,
        // The node certificate becomes the broker's server certificate: clients and peers verify "localhost".
        certificateProfile: { ...PROFILE, extraDns: ['localhost'], extraIps: ['127.0.0.1'] },
      },
    })),
    ...shape.links.map((nodes) => ({ kind: 'Link', spec: { id: linkIdOf(nodes), nodes: [...nodes], cost: 1 } })),
    ...DEMO_CLIENTS.map((client) => ({
      kind: 'Client',
      spec: {
        id: client.id,
        organisation: client.organisation,
        homeNode: homes.get(client.id),
        roles: ['chatbot'],
        labels: { demo: 'true' },
        status: 'active',
        certificateProfile: PROFILE,
      },
    })),
  ];
}

interface Page<T> {
  items: T[];
  next: string | null;
}

async function listAll<T>(api: Pick<CentOpsApi, 'call'>, path: string): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor === null ? '?limit=1000' : `?limit=1000&cursor=${encodeURIComponent(cursor)}`;
    const page: Page<T> = await api.call<Page<T>>('GET', `${path}${query}`);
    items.push(...page.items);
    cursor = page.next;
  } while (cursor !== null);
  return items;
}

/**
 * The deletes that make a reused CentOps match this shape: a mesh started
 * before with more nodes or another topology left nodes and links that would
 * otherwise stay in every route. Only nodes this mesh registered (its label)
 * and links between such nodes are touched.
 */
export async function staleRegistryItems(api: Pick<CentOpsApi, 'call'>, shape: MeshShape): Promise<RegistryItem[]> {
  const nodes = await listAll<{ spec: { id: string; labels: Record<string, string> } }>(api, '/v1/nodes');
  const links = await listAll<{ spec: { id: string; nodes: [string, string] } }>(api, '/v1/links');
  const ours = new Set(nodes.filter((node) => node.spec.labels.mesh === MESH_LABEL.mesh).map((node) => node.spec.id));
  const wantedNodes = new Set(shape.nodes);
  const wantedLinks = new Set(shape.links.map(linkIdOf));
  return [
    ...links
      .filter((link) => !wantedLinks.has(link.spec.id) && link.spec.nodes.every((node) => ours.has(node)))
      .map((link) => ({ op: 'delete' as const, kind: 'Link', id: link.spec.id })),
    ...[...ours].filter((id) => !wantedNodes.has(id)).map((id) => ({ op: 'delete' as const, kind: 'Node', id })),
  ];
}

interface PolicySet {
  version: number;
  files: Record<string, string>;
}

interface Grant {
  from: string;
  to: string;
  types?: string[];
}

const GRANT_TYPES = ['ChatMessage', 'DeliveryReport'];
const DATA_FILE = 'dmr/data.json';

/**
 * Adds org-a → org-b and org-b → org-a grants to the policy data (the
 * default pack's `dmr/data.json`), keeping everything else. CentOps runs
 * `opa check` and `opa test` on the result before it stores it. Returns
 * false when the grants were already there (nothing written).
 */
export async function ensureGrants(api: CentOpsApi): Promise<boolean> {
  const policy = await api.call<PolicySet>('GET', '/v1/policy');
  const raw = policy.files[DATA_FILE] ?? '{}';
  const data = JSON.parse(raw) as { grants?: Grant[] } & Record<string, unknown>;
  const grants = Array.isArray(data.grants) ? data.grants : [];
  const wanted: Grant[] = [
    { from: 'org-a', to: 'org-b', types: GRANT_TYPES },
    { from: 'org-b', to: 'org-a', types: GRANT_TYPES },
  ];
  const missing = wanted.filter((want) => !grants.some((grant) => grant.from === want.from && grant.to === want.to));
  if (missing.length === 0) return false;
  const files = {
    ...policy.files,
    [DATA_FILE]: `${JSON.stringify({ ...data, grants: [...grants, ...missing] }, null, 2)}\n`,
  };
  await api.call('PUT', '/v1/policy', { files });
  return true;
}
