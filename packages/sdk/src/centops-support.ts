/**
 * Test support (not exported from the package): a real CentOps in process
 * (`initCentOps --dev`, SQLite, both listeners on ephemeral ports, real
 * mutual TLS), with organisations `ria` and `rik`, node `node-a` and the
 * clients `ria-desk` and `rik-bot` registered, and the admin's HTTPS client
 * for tokens. The SDK's enrolment and renewal tests run against it instead
 * of a stand-in; its CA (`server.ca`) can be handed to NodeFixture so the
 * broker accepts what CentOps issues.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONFIG_FILE, initCentOps, loadConfig, startServer, type CentOpsServer } from '@dmr/centops';
import { call, type Credentials, type Response } from '@dmr/centops/testing';

export const TRUST_DOMAIN = 'dmr.test';
const ACTOR = `spiffe://${TRUST_DOMAIN}/operator/admin`;

export interface TestCentOps {
  server: CentOpsServer;
  /** CentOps' trust bundle (PEM): what an enrolling client is given to authenticate CentOps. */
  trustBundlePem: string;
  admin: Credentials;
  /** A call on the mutual-TLS API as the admin. */
  api(path: string, options?: { method?: string; body?: unknown }): Promise<Response>;
  /** A one-time bootstrap token for client `id`. */
  token(id: string): Promise<string>;
  /** Sets the certificate lifetime of client `id`'s profile (e.g. to tell two of its certificates apart). */
  setLifetime(id: string, lifetime: string): Promise<void>;
  close(): Promise<void>;
}

export const CLIENT_PROFILE = { keyAlgorithm: 'ecdsa-p256' as const, lifetime: '1h', extraDns: [], extraIps: [] };

export async function startTestCentOps(label: string): Promise<TestCentOps> {
  const dir = await mkdtemp(join(tmpdir(), `dmr-${label}-`));
  const centopsDir = join(dir, 'centops');
  await initCentOps({ dir: centopsDir, dev: true, trustDomain: TRUST_DOMAIN, database: join(dir, 'centops.db') });
  const config = await loadConfig(join(centopsDir, CONFIG_FILE));
  config.listen.port = 0;
  config.enrolListen.port = 0;
  const server = await startServer(config, { pollIntervalMs: 50 });
  try {
    const admin = {
      cert: await readFile(join(`${centopsDir}-admin`, 'admin.crt'), 'utf8'),
      key: await readFile(join(`${centopsDir}-admin`, 'admin.key'), 'utf8'),
    };
    const trustBundlePem = server.ca.trustBundlePem();
    const { store } = server;
    await store.create('Organisation', { id: 'ria', name: 'RIA', labels: {} }, ACTOR);
    await store.create('Organisation', { id: 'rik', name: 'RIK', labels: {} }, ACTOR);
    await store.create(
      'Node',
      {
        id: 'node-a',
        amqpsEndpoint: 'amqps://127.0.0.1:5671',
        managementEndpoint: 'https://127.0.0.1:15671',
        labels: {},
        certificateProfile: { ...CLIENT_PROFILE, extraDns: ['localhost'], extraIps: ['127.0.0.1'] },
      },
      ACTOR,
    );
    for (const [id, organisation] of [
      ['ria-desk', 'ria'],
      ['rik-bot', 'rik'],
    ] as const) {
      await store.create(
        'Client',
        {
          id,
          organisation,
          homeNode: 'node-a',
          roles: ['bot'],
          labels: {},
          status: 'active',
          certificateProfile: CLIENT_PROFILE,
        },
        ACTOR,
      );
    }
    const api = (path: string, options: { method?: string; body?: unknown } = {}) =>
      call(`${server.apiUrl}${path}`, { ...options, ca: trustBundlePem, credentials: admin });
    return {
      server,
      trustBundlePem,
      admin,
      api,
      async token(id) {
        const answer = await api('/v1/tokens', { method: 'POST', body: { id, kind: 'client' } });
        if (answer.status !== 201) throw new Error(`token for ${id}: ${answer.status} ${answer.text}`);
        return (answer.json as { token: string }).token;
      },
      async setLifetime(id, lifetime) {
        const client = await store.get('Client', id);
        await store.update(
          'Client',
          { ...client.spec, certificateProfile: { ...client.spec.certificateProfile, lifetime } },
          ACTOR,
        );
      },
      async close() {
        await server.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await server.close();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
