/**
 * The agent's integration environment (not exported from the package): a
 * real CentOps (initCentOps --dev, served on ephemeral ports with mutual
 * TLS), a harness broker trusting CentOps' CA, and a run-config for node
 * `node-a` pointing at both. Copied in spirit from
 * packages/centops/src/policy/test-support.ts (test-support files are not
 * exported across packages).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { stringify } from 'yaml';
import { harnessPaths, pemCacheReloadCommand, startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import { CONFIG_FILE, initCentOps, loadConfig, startServer, type CentOpsServer } from '@dmr/centops';
import { obtainCertificate, requestEnrolment } from '@dmr/pki';
import type { RawRunConfig } from './run-config.js';

export const TD = 'dmr.test';
export const NODE = 'node-a';
const ACTOR = `spiffe://${TD}/operator/admin`;

// The CentOps API tests' HTTPS client: real TLS, optional client certificate.
import { call, type Credentials, type Response as Answer } from '@dmr/centops/testing';

export { call, type Credentials, type Response as Answer } from '@dmr/centops/testing';

export interface AgentEnvironment {
  dir: string;
  centopsDir: string;
  server: CentOpsServer;
  harness: BrokerHarness;
  /** CentOps' root (PEM). */
  ca: string;
  admin: Credentials;
  /** The run-config for node-a (write it with writeRunConfig). */
  runConfig: RawRunConfig;
  api(path: string, options?: { method?: string; body?: unknown }): Promise<Answer>;
  /** A one-time bootstrap token for `id`. */
  token(id: string, kind: 'node' | 'client'): Promise<string>;
  /** Enrols a client through the enrolment listener (key made here), as a real client would. */
  enrolClient(id: string): Promise<{ chainPem: string; privateKeyPem: string; serial: string }>;
  close(): Promise<void>;
}

export async function writeRunConfig(dir: string, name: string, config: RawRunConfig): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, stringify(config));
  return file;
}

/** Starts CentOps (organisation `police`, node `node-a`, client `police-bot`) and one broker. */
export async function startAgentEnvironment(): Promise<AgentEnvironment> {
  const dir = await mkdtemp(join(tmpdir(), 'dmr-agent-test-'));
  const centopsDir = join(dir, 'centops');
  await initCentOps({ dir: centopsDir, dev: true, trustDomain: TD, database: join(dir, 'centops.db') });
  const config = await loadConfig(join(centopsDir, CONFIG_FILE));
  config.listen.port = 0;
  config.enrolListen.port = 0;
  const server = await startServer(config, { pollIntervalMs: 50 });
  let harness: BrokerHarness | undefined;
  try {
    const ca = await readFile(join(centopsDir, 'ca', 'root.crt'), 'utf8');
    const admin = {
      cert: await readFile(join(`${centopsDir}-admin`, 'admin.crt'), 'utf8'),
      key: await readFile(join(`${centopsDir}-admin`, 'admin.key'), 'utf8'),
    };
    const profile = { keyAlgorithm: 'ecdsa-p256' as const, lifetime: '7d', extraDns: [], extraIps: [] };
    const { store } = server;
    await store.create('Organisation', { id: 'police', name: 'Police', labels: {} }, ACTOR);
    await store.create('Organisation', { id: 'tax', name: 'Tax Board', labels: {} }, ACTOR);
    await store.create(
      'Node',
      {
        id: NODE,
        amqpsEndpoint: 'amqps://127.0.0.1:5671',
        managementEndpoint: 'https://127.0.0.1:15671',
        labels: {},
        // The node certificate is also its broker's server certificate: name the host clients dial.
        certificateProfile: { ...profile, extraDns: ['localhost'], extraIps: ['127.0.0.1'] },
      },
      ACTOR,
    );
    await store.create(
      'Client',
      {
        id: 'police-bot',
        organisation: 'police',
        homeNode: NODE,
        roles: ['chatbot'],
        labels: {},
        status: 'active',
        certificateProfile: profile,
      },
      ACTOR,
    );
    harness = await startBrokers({ dir: join(dir, 'brokers'), ca: server.ca, namePrefix: 'agent' });
    const broker = harness.node(0);
    const caFile = join(dir, 'centops-ca.pem');
    await writeFile(caFile, ca);
    const api = (path: string, options: { method?: string; body?: unknown } = {}) =>
      call(`${server.apiUrl}${path}`, { ...options, ca, credentials: admin });
    const runConfig: RawRunConfig = {
      node: NODE,
      dataDir: join(dir, 'node-a'),
      centops: {
        url: server.apiUrl,
        enrolUrl: server.enrolUrl,
        caFile,
        tokenFile: join(dir, 'node-a.token'),
        trustDomain: TD,
      },
      broker: {
        amqpsUrl: broker.amqpsUrl,
        serverName: 'localhost',
        management: {
          url: broker.managementUrl,
          username: harness.adminUsername,
          passwordFile: harnessPaths(harness.dir).adminPasswordFile,
        },
        tls: { ...broker.tls, reloadCommand: pemCacheReloadCommand(harness.dir) },
      },
      routers: 0,
      metrics: { listen: '127.0.0.1:0' },
      feed: { backoffInitialMs: 100, backoffMaxMs: 1000, waitSeconds: 5 },
      logLevel: 'silent',
    };
    const started = harness;
    const token = async (id: string, kind: 'node' | 'client'): Promise<string> => {
      const answer = await api('/v1/tokens', { method: 'POST', body: { id, kind } });
      if (answer.status !== 201) throw new Error(`token: ${answer.status} ${answer.text}`);
      return (answer.json as { token: string }).token;
    };
    return {
      dir,
      centopsDir,
      server,
      harness: started,
      ca,
      admin,
      runConfig,
      api,
      token,
      async enrolClient(id) {
        const secret = await token(id, 'client');
        const issued = await obtainCertificate({
          id,
          kind: 'client',
          trustDomain: TD,
          what: `enrolment of ${id}`,
          send: (csrPem) =>
            requestEnrolment({ enrolUrl: server.enrolUrl, token: secret, csrPem, caPem: ca, trustDomain: TD }),
        });
        return { chainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem, serial: issued.serial };
      },
      async close() {
        await Promise.allSettled([server.close(), started.stop()]);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await server.close();
    await harness?.stop();
    throw error;
  }
}

/** The serial (lowercase hex) of the certificate a TLS server presents now (a fresh handshake). */
export function serverSerial(port: number, ca: string, client: Credentials): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      { host: '127.0.0.1', port, servername: 'localhost', ca, cert: client.cert, key: client.key },
      () => {
        const serial = socket.getPeerCertificate().serialNumber.toLowerCase();
        socket.destroy();
        resolve(serial);
      },
    );
    socket.on('error', reject);
  });
}

/**
 * An HTTPS server presenting `material` (e.g. another node's certificate of
 * CentOps' own CA, with the same host names as CentOps): what a stolen node
 * key can stand up. It records every request that reaches it.
 */
export interface Impostor {
  url: string;
  /** `METHOD path body` of every request it received. */
  received: string[];
  /** A GET that checks only the chain (what clients did before pinning): a round trip to the impostor. */
  probe(ca: string): Promise<number>;
  close(): Promise<void>;
}

export async function startImpostor(material: { chainPem: string; privateKeyPem: string }): Promise<Impostor> {
  const received: string[] = [];
  const server = createHttpsServer({ cert: material.chainPem, key: material.privateKeyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push(`${req.method ?? ''} ${req.url ?? ''} ${Buffer.concat(chunks).toString('utf8')}`);
      res.writeHead(404, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    received,
    probe: (ca) =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(`${url}/probe`, { ca, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
