/**
 * The start of each component of `dmr up`, one function per progress step:
 * CentOps, the broker, the registry, the DMR node, the demo clients. Each
 * records what it started on the LocalMesh, so a failure later stops it.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { harnessPaths, startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import { CONFIG_FILE, initCentOps, loadConfig, type CentOpsConfig } from '@dmr/centops';
import { DmrError, isDmrError } from '@dmr/core';
import { CertificateAuthority, writeFilesAtomic } from '@dmr/pki';
import { CentOpsApi } from './centops-client.js';
import { DemoExchange, enrolClient, type EnrolledClient } from './demo.js';
import { startFailure, type LocalMesh, type StartMeshOptions } from './local-mesh.js';
import { NODE_ID } from './paths.js';
import { spawnLogged, type LoggedChild } from './processes.js';
import { DEMO_CLIENTS, ensureGrants, registryDocuments } from './registry.js';

const CENTOPS_READY_TIMEOUT_MS = 60_000;
const NODE_READY_TIMEOUT_MS = 180_000;
const FIRST_ROUND_TRIP_TIMEOUT_MS = 60_000;
const PREFERRED_CENTOPS_PORT = 8443;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** The API port and the enrolment port right after it (CentOps' convention), both free. */
async function freePortPair(): Promise<number> {
  const candidates = [PREFERRED_CENTOPS_PORT, ...Array.from({ length: 50 }, () => randomInt(40_000, 49_000))];
  for (const port of candidates) {
    if ((await portFree(port)) && (await portFree(port + 1))) return port;
  }
  throw new DmrError('CONFLICT', 'found no two free adjacent TCP ports on 127.0.0.1 for CentOps');
}

async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = randomInt(49_000, 50_000);
    if (await portFree(port)) return port;
  }
  throw new DmrError('CONFLICT', 'found no free TCP port on 127.0.0.1 for the node metrics');
}

/** Polls `check` until it returns a value, the child exits, or the time is up. */
async function waitFor<T>(options: {
  what: string;
  child: LoggedChild;
  log: string;
  timeoutMs: number;
  check: () => Promise<T | undefined>;
}): Promise<T> {
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void options.child.exited.then((exit) => (exited = exit));
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (exited !== undefined) {
      throw startFailure(
        options.what,
        `exited (${exited.signal ?? `code ${exited.code}`}) before it was ready`,
        options.log,
      );
    }
    try {
      const value = await options.check();
      if (value !== undefined) return value;
    } catch (error) {
      // A refusal the component reported is final; anything else (not listening yet) is retried.
      if (isDmrError(error) && error.code === 'MESH_START_FAILED') throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? ` (last: ${lastError.message})` : '';
      throw startFailure(options.what, `not ready after ${options.timeoutMs / 1000} s${why}`, options.log, lastError);
    }
    await sleep(300);
  }
}

interface NodeStatusView {
  currentRevision: number;
  appliedRevision: number | null;
  policyRevision: number | null;
  refused: { revision: number; reason: string } | null;
  reportedAt: string | null;
  inSync: boolean;
}

export async function startCentOps(
  mesh: LocalMesh,
  options: StartMeshOptions,
): Promise<{ config: CentOpsConfig; admin: Awaited<ReturnType<typeof CentOpsApi.admin>> }> {
  const { paths } = mesh;
  const step = options.progress.step('CentOps');
  try {
    const configFile = join(paths.centopsDir, CONFIG_FILE);
    let created = false;
    if (!existsSync(configFile)) {
      const leftovers = await readdir(paths.centopsDir).catch(() => []);
      if (leftovers.length > 0) {
        throw new DmrError('CONFLICT', `${paths.centopsDir} holds a half-made CentOps (no ${CONFIG_FILE})`, {
          hint: `an earlier init failed; remove ${paths.centopsDir} (or the whole ${paths.dir}) and run dmr up again`,
        });
      }
      step.update('init: development CA, SQLite registry, default policy');
      const port = await freePortPair();
      await initCentOps({ dir: paths.centopsDir, dev: true, listen: `127.0.0.1:${port}` });
      created = true;
    }
    const config = await loadConfig(configFile);
    for (const listen of [config.listen, config.enrolListen]) {
      if (!(await portFree(listen.port))) {
        throw new DmrError('CONFLICT', `port ${listen.port} (CentOps, from ${configFile}) is in use`, {
          details: { port: listen.port },
          hint: `stop what listens there (another dmr up? try dmr down --dir ${paths.dir}), or remove ${paths.dir} to start a new mesh on free ports`,
        });
      }
    }
    step.update('serve');
    const child = spawnLogged(
      options.dmr.command,
      [...options.dmr.args, 'centops', 'serve', '--dir', paths.centopsDir],
      {
        logFile: paths.centopsLog,
      },
    );
    mesh.centops = child;
    const admin = await CentOpsApi.admin(join(`${paths.centopsDir}-admin`, 'admin.yaml'));
    await waitFor({
      what: 'CentOps',
      child,
      log: paths.centopsLog,
      timeoutMs: CENTOPS_READY_TIMEOUT_MS,
      check: async () => admin.api.call<{ revision: number }>('GET', '/v1/status'),
    });
    mesh.watch(child, 'CentOps', paths.centopsLog);
    await mesh.update({
      centops: {
        dir: paths.centopsDir,
        apiUrl: admin.api.baseUrl,
        enrolUrl: admin.enrol.enrolUrl,
        adminConfig: join(`${paths.centopsDir}-admin`, 'admin.yaml'),
        process: child.ref,
        log: paths.centopsLog,
      },
    });
    step.done(
      `${admin.api.baseUrl} (${created ? 'new, ' : ''}trust domain ${config.trustDomain}, pid ${child.ref.pid})`,
    );
    return { config, admin };
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

export async function startBroker(mesh: LocalMesh, options: StartMeshOptions, caDir: string): Promise<BrokerHarness> {
  const step = options.progress.step('RabbitMQ (TLS only, client certificates)');
  try {
    const ca = await CertificateAuthority.open(caDir);
    const harness = await startBrokers({
      dir: mesh.paths.brokerDir,
      nodes: 1,
      ca,
      namePrefix: 'mesh',
      lifetime: 'process',
      // The supervisor handles signals itself, to stop the other components first and report progress.
      handleSignals: false,
      watchdog: true,
      onProgress: (event) => step.update(event.message),
      onNodeExit: (event) => mesh.brokerExited(event),
    });
    mesh.harness = harness;
    const node = harness.node(0);
    await mesh.update({
      broker: {
        dir: mesh.paths.brokerDir,
        amqpsUrl: node.amqpsUrl,
        amqpsPort: node.amqpsPort,
        managementUrl: node.managementUrl,
        pid: node.pid,
      },
    });
    step.done(`${node.amqpsUrl} (boot ${((node.bootMs ?? 0) / 1000).toFixed(1)} s)`);
    return harness;
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

export async function applyRegistry(options: StartMeshOptions, api: CentOpsApi, harness: BrokerHarness): Promise<void> {
  const step = options.progress.step('registry: org-a, org-b, bot-a, bot-b, node-1; policy grant org-a ↔ org-b');
  try {
    const node = harness.node(0);
    const result = await api.call<{ revision: number }>(
      'POST',
      '/v1/apply',
      registryDocuments({ amqpsPort: node.amqpsPort, managementPort: node.ports.management }),
    );
    step.update('policy grant (opa check + opa test in CentOps)');
    const granted = await ensureGrants(api);
    step.done(`revision ${result.revision}${granted ? ', grants added' : ''}`);
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

export async function startNode(
  mesh: LocalMesh,
  options: StartMeshOptions,
  admin: Awaited<ReturnType<typeof CentOpsApi.admin>>,
  config: CentOpsConfig,
  harness: BrokerHarness,
): Promise<NodeStatusView> {
  const { paths } = mesh;
  const step = options.progress.step(`DMR node ${NODE_ID}`);
  try {
    const { token } = await admin.api.call<{ token: string }>('POST', '/v1/tokens', {
      id: NODE_ID,
      kind: 'node',
      ttl: '1h',
    });
    const broker = harness.node(0);
    const runConfig = {
      node: NODE_ID,
      dataDir: paths.nodeDir,
      centops: {
        url: admin.api.baseUrl,
        enrolUrl: admin.enrol.enrolUrl,
        caFile: admin.caBundle,
        tokenFile: paths.nodeTokenFile,
        trustDomain: config.trustDomain,
      },
      broker: {
        amqpsUrl: `amqps://127.0.0.1:${broker.amqpsPort}`,
        serverName: broker.servername,
        management: {
          url: broker.managementUrl,
          username: harness.adminUsername,
          passwordFile: harnessPaths(harness.dir).adminPasswordFile,
        },
        tls: broker.tls,
      },
      routers: 1,
      policy: { mode: 'wasm' },
      metrics: { listen: `127.0.0.1:${await freePort()}` },
    };
    await writeFilesAtomic([
      { path: paths.nodeTokenFile, data: `${token}\n`, mode: 0o600, overwrite: true },
      {
        path: paths.nodeConfigFile,
        data: `# written by dmr up; see docs/node-run.md\n${stringify(runConfig)}`,
        mode: 0o600,
        overwrite: true,
      },
    ]);
    step.update('enrol, install broker TLS, apply the configuration');
    const spawnedAt = Date.now();
    const child = spawnLogged(
      options.dmr.command,
      [...options.dmr.args, 'node', 'run', '--config', paths.nodeConfigFile],
      {
        logFile: paths.nodeLog,
      },
    );
    mesh.node = child;
    await mesh.update({
      node: {
        id: NODE_ID,
        config: paths.nodeConfigFile,
        dataDir: paths.nodeDir,
        process: child.ref,
        log: paths.nodeLog,
      },
    });
    const status = await waitFor({
      what: `node ${NODE_ID}`,
      child,
      log: paths.nodeLog,
      timeoutMs: NODE_READY_TIMEOUT_MS,
      check: async () => {
        const view = await admin.api.call<NodeStatusView>('GET', `/v1/nodes/${NODE_ID}/status`);
        // A report from a previous run of this mesh says nothing about the fresh broker.
        const fresh = view.reportedAt !== null && Date.parse(view.reportedAt) >= spawnedAt - 1000;
        if (!fresh) return undefined;
        if (view.refused !== null && view.refused.revision >= view.currentRevision) {
          throw startFailure(
            `node ${NODE_ID}`,
            `refused revision ${view.refused.revision}: ${view.refused.reason}`,
            paths.nodeLog,
          );
        }
        return view.inSync ? view : undefined;
      },
    });
    mesh.watch(child, `node ${NODE_ID}`, paths.nodeLog);
    step.done(
      `revision ${status.appliedRevision ?? '?'} applied, policy ${status.policyRevision ?? '?'} (pid ${child.ref.pid})`,
    );
    return status;
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

export async function startDemo(
  mesh: LocalMesh,
  options: StartMeshOptions,
  admin: Awaited<ReturnType<typeof CentOpsApi.admin>>,
  config: CentOpsConfig,
  harness: BrokerHarness,
): Promise<void> {
  const step = options.progress.step('demo clients bot-a and bot-b: enrol, connect, first round trip');
  try {
    const clients: EnrolledClient[] = [];
    for (const client of DEMO_CLIENTS) {
      step.update(`enrol ${client.id} (key and CSR made here)`);
      clients.push(
        await enrolClient({
          api: admin.api,
          enrol: admin.enrol,
          id: client.id,
          organisation: client.organisation,
          trustDomain: config.trustDomain,
          dir: mesh.paths.clientsDir,
        }),
      );
    }
    await mesh.update({
      clients: clients.map((client) => ({
        id: client.id,
        organisation: client.organisation,
        certificate: client.certificateFile,
        key: client.keyFile,
      })),
    });
    const [asker, answerer] = clients as [EnrolledClient, EnrolledClient];
    let first: ((value: number) => void) | undefined;
    let refusal: ((error: DmrError) => void) | undefined;
    const firstRoundTrip = new Promise<number>((resolve, reject) => {
      first = resolve;
      refusal = reject;
    });
    let started = false;
    const demo = new DemoExchange({
      amqpsPort: harness.node(0).amqpsPort,
      caPem: harness.trustBundlePem,
      trustDomain: config.trustDomain,
      asker,
      answerer,
      intervalMs: options.intervalMs,
      onEvent: (event) => {
        if (!started) {
          if (event.kind === 'round-trip') first?.(event.latencyMs);
          if (event.kind === 'refused') {
            refusal?.(
              new DmrError('MESH_START_FAILED', `the node refused the first message: ${event.reason} ${event.detail}`, {
                hint: `see the node log ${mesh.paths.nodeLog}`,
              }),
            );
          }
        }
        mesh.demoEvent(event);
      },
    });
    mesh.demo = demo;
    step.update('connect over AMQPS (EXTERNAL)');
    await demo.start();
    step.update('first round trip');
    // The timer is cleared once answered: a pending one would keep the supervisor alive after a stop.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new DmrError('MESH_START_FAILED', `no answer from bot-b within ${FIRST_ROUND_TRIP_TIMEOUT_MS / 1000} s`, {
              hint: `see the node log ${mesh.paths.nodeLog}`,
            }),
          ),
        FIRST_ROUND_TRIP_TIMEOUT_MS,
      );
    });
    const latency = await Promise.race([firstRoundTrip, timeout]).finally(() => clearTimeout(timer));
    started = true;
    step.done(`first round trip ${latency.toFixed(1)} ms`);
  } catch (error) {
    step.fail(error);
    throw error;
  }
}
