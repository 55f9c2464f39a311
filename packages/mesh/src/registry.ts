/**
 * What the demo mesh registers in CentOps: two organisations with one
 * client each, both homed on the one node, and a policy grant that lets them
 * exchange ChatMessages. Everything goes through the API, as an operator's
 * `dmr ctl apply` and `dmr policy` would.
 */
import { NODE_ID } from './paths.js';
import type { CentOpsApi } from './centops-client.js';

export interface DemoClient {
  id: string;
  organisation: string;
}

export const DEMO_CLIENTS: readonly DemoClient[] = [
  { id: 'bot-a', organisation: 'org-a' },
  { id: 'bot-b', organisation: 'org-b' },
];

const PROFILE = { keyAlgorithm: 'ecdsa-p256', lifetime: '24h', extraDns: [], extraIps: [] };

export interface NodeEndpoints {
  amqpsPort: number;
  managementPort: number;
}

/** The batch for POST /v1/apply (upserts: a second `dmr up` changes nothing it does not have to). */
export function registryDocuments(endpoints: NodeEndpoints): Array<{ kind: string; spec: Record<string, unknown> }> {
  return [
    { kind: 'Organisation', spec: { id: 'org-a', name: 'Organisation A (demo)', labels: {} } },
    { kind: 'Organisation', spec: { id: 'org-b', name: 'Organisation B (demo)', labels: {} } },
    {
      kind: 'Node',
      spec: {
        id: NODE_ID,
        amqpsEndpoint: `amqps://localhost:${endpoints.amqpsPort}`,
        // The registry wants https; the harness serves management over http on loopback. The node's
        // run-config carries the URL it really uses, so this entry is descriptive only.
        managementEndpoint: `https://localhost:${endpoints.managementPort}`,
        labels: { mesh: 'local' },
        // The node certificate becomes the broker's server certificate: clients verify "localhost".
        certificateProfile: { ...PROFILE, extraDns: ['localhost'], extraIps: ['127.0.0.1'] },
      },
    },
    ...DEMO_CLIENTS.map((client) => ({
      kind: 'Client',
      spec: {
        id: client.id,
        organisation: client.organisation,
        homeNode: NODE_ID,
        roles: ['chatbot'],
        labels: { demo: 'true' },
        status: 'active',
        certificateProfile: PROFILE,
      },
    })),
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
