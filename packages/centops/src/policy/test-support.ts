/** Shared by the policy tests: an empty CentOps (startEmptyCentOps) with callers of every kind. */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CentOpsServer } from '../server/app.js';
import { loadClientConfig } from '../server/config.js';
import { recordIssued } from '../server/credentials.js';
import { addOperator } from '../server/operators.js';
import { startEmptyCentOps, type TestCallOptions } from '../server/test-support/empty-centops.js';
import type { Credentials, Response } from '../server/test-support/https.js';
import type { Backend } from '../store/test-support/backends.js';
import { client, node, organisation } from '../store/test-support/fixtures.js';

export const TD = 'dmr.test';
const ACTOR = `spiffe://${TD}/operator/admin`;

export interface PolicyCentOps {
  dir: string;
  server: CentOpsServer;
  /** The root CA (PEM): TLS trust and the bundle verification root. */
  ca: string;
  admin: Credentials;
  viewer: Credentials;
  node: Credentials & { certPath: string; keyPath: string };
  client: Credentials;
  api(path: string, options?: TestCallOptions): Promise<Response>;
  close(): Promise<void>;
}

export function errorOf(response: Response): { code?: string; details?: Record<string, unknown> } {
  return ((response.json as { error?: object } | undefined)?.error ?? {}) as {
    code?: string;
    details?: Record<string, unknown>;
  };
}

/** Init (seeding the default pack), serve, and credentials for a viewer, a node and a client. */
export async function startPolicyCentOps(backend: Backend): Promise<PolicyCentOps> {
  const centops = await startEmptyCentOps({
    label: 'centops-policy-test',
    trustDomain: TD,
    database: await backend.fresh(),
    server: { pollIntervalMs: 50 },
  });
  const { dir, server, store } = centops;
  try {
    const added = await addOperator({ dir: centops.centopsDir, id: 'vera', role: 'viewer', outDir: join(dir, 'vera') });
    const viewerConfig = await loadClientConfig(added.config);
    const viewer = {
      cert: await readFile(viewerConfig.clientCertificate, 'utf8'),
      key: await readFile(viewerConfig.clientKey, 'utf8'),
    };
    await store.create('Organisation', organisation('police'), ACTOR);
    await store.create('Node', node('dmr-tallinn'), ACTOR);
    await store.create('Client', client('police-bot', 'police', 'dmr-tallinn'), ACTOR);
    const nodeIssued = await server.ca.issueWithKey({ kind: 'node', id: 'dmr-tallinn' });
    await recordIssued(store, { kind: 'node', id: 'dmr-tallinn' }, nodeIssued, ACTOR);
    const clientIssued = await server.ca.issueWithKey({ kind: 'client', id: 'police-bot' });
    await recordIssued(store, { kind: 'client', id: 'police-bot' }, clientIssued, ACTOR);
    const certPath = join(dir, 'node.crt');
    const keyPath = join(dir, 'node.key');
    await writeFile(certPath, nodeIssued.chainPem);
    await writeFile(keyPath, nodeIssued.privateKeyPem, { mode: 0o600 });
    return {
      dir,
      server,
      ca: centops.rootPem,
      admin: centops.admin,
      viewer,
      node: { cert: nodeIssued.chainPem, key: nodeIssued.privateKeyPem, certPath, keyPath },
      client: { cert: clientIssued.chainPem, key: clientIssued.privateKeyPem },
      api: (path, options = {}) => centops.api(path, options),
      close: () => centops.close(),
    };
  } catch (error) {
    await centops.close();
    throw error;
  }
}

/** A decision input (docs: the policy input schema): a message from organisation `from` to `to`. */
export function samplePolicyInput(from: string, to: string, type = 'ChatMessage'): unknown {
  const principal = (id: string, org: string) => ({ id, organisation: org, roles: ['bot'], labels: {} });
  return {
    sender: principal('a-bot', from),
    recipient: principal('b-bot', to),
    message: { id: '7b0e6a8c-9f1e-4a8a-b0a6-0d1c4f3e2a10', type, size: 100 },
    hop: { origin: 'node-a', count: 0 },
    node: { id: 'node-a' },
  };
}
