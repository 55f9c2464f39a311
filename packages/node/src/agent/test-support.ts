/**
 * The agent's integration environment (not exported from the package): the
 * test CentOps (`@dmr/centops/testing`), a harness broker trusting CentOps'
 * CA, and a run-config for node `node-a` pointing at both.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { stringify } from 'yaml';
import { harnessPaths, pemCacheReloadCommand, startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import type { CentOpsServer } from '@dmr/centops';
import { startTestCentOps, type Credentials, type Response as Answer } from '@dmr/centops/testing';
import type { RawRunConfig } from './run-config.js';

export const TD = 'dmr.test';
export const NODE = 'node-a';

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
  const centops = await startTestCentOps({
    label: 'agent-test',
    trustDomain: TD,
    organisations: { police: 'Police', tax: 'Tax Board' },
    nodes: [NODE],
    clients: [{ id: 'police-bot', organisation: 'police', roles: ['chatbot'] }],
    lifetime: '7d',
  });
  const { dir, server } = centops;
  let harness: BrokerHarness | undefined;
  try {
    harness = await startBrokers({ dir: join(dir, 'brokers'), ca: server.ca, namePrefix: 'agent' });
    const broker = harness.node(0);
    const caFile = join(dir, 'centops-ca.pem');
    await writeFile(caFile, centops.rootPem);
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
    return {
      dir,
      centopsDir: centops.centopsDir,
      server,
      harness: started,
      ca: centops.rootPem,
      admin: centops.admin,
      runConfig,
      api: centops.api,
      token: centops.token,
      enrolClient: centops.enrolClient,
      async close() {
        // The harness's directory is inside CentOps' temp directory: stop it before that is removed.
        await started.stop().catch(() => undefined);
        await centops.close();
      },
    };
  } catch (error) {
    await harness?.stop();
    await centops.close();
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
