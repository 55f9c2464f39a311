/**
 * The start of each component of `dmr up`, one function per progress step:
 * CentOps, the brokers, the registry, the DMR nodes, the demo clients. Each
 * records what it started on the LocalMesh, so a failure later stops it.
 */
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { harnessPaths, startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import { CONFIG_FILE, initCentOps, loadConfig, type CentOpsConfig } from '@dmr/centops';
import { vhostName } from '@dmr/contract';
import { DmrError, isDmrError } from '@dmr/core';
import { CertificateAuthority, writeFilesAtomic } from '@dmr/pki';
import { CentOpsApi } from './centops-client.js';
import { DemoExchange, enrolClient, type EnrolledClient } from './demo.js';
import { pathLinks } from './inspect.js';
import { startFailure, type LocalMesh, type StartMeshOptions } from './local-mesh.js';
import { JAEGER_INSTALL_HINT, locateJaeger, tracingEnv, writeJaegerConfig, type JaegerPorts } from './jaeger.js';
import { meshPaths } from './paths.js';
import { locatePrometheus, meshTargets, prometheusArgs, writePrometheusFiles } from './prometheus.js';
import { spawnLogged, type LoggedChild } from './processes.js';
import { DEMO_CLIENTS, demoHomes, ensureGrants, registryDocuments, staleRegistryItems } from './registry.js';
import type { MeshNodeState } from './state.js';

const CENTOPS_READY_TIMEOUT_MS = 60_000;
const NODE_READY_TIMEOUT_MS = 180_000;
const FIRST_ROUND_TRIP_TIMEOUT_MS = 60_000;
const PREFERRED_CENTOPS_PORT = 8443;
const BROKER_BOOT_TIMEOUT_MS = 60_000;
const BROKER_BOOT_TIMEOUT_PER_NODE_MS = 30_000;
const PROMETHEUS_READY_TIMEOUT_MS = 60_000;

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

/** A free port on 127.0.0.1 in [from, to). */
async function freeLoopbackPort(from: number, to: number, what: string): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = randomInt(from, to);
    if (await portFree(port)) return port;
  }
  throw new DmrError('CONFLICT', `found no free TCP port on 127.0.0.1:${from}-${to} for ${what}`, {
    hint: `something holds most of 127.0.0.1:${from}-${to}; free some ports and run dmr up again`,
  });
}

/**
 * A metrics port for each node agent, with the next `routers` free too: the
 * agent serves on its port and router N on port + 1 + N (docs/node-run.md).
 */
async function freeMetricsPorts(count: number, routers: number): Promise<number[]> {
  const width = 1 + routers;
  const ports: number[] = [];
  for (let attempt = 0; attempt < 200 && ports.length < count; attempt++) {
    const port = randomInt(49_000, 50_000 - width);
    if (ports.some((taken) => Math.abs(taken - port) < width)) continue;
    if (await allFree(port, width)) ports.push(port);
  }
  if (ports.length < count) {
    throw new DmrError(
      'CONFLICT',
      `found no ${count} free runs of ${width} TCP ports on 127.0.0.1 for the node metrics`,
      {
        hint: 'something holds most of 127.0.0.1:49000-50000; free some ports and run dmr up again',
      },
    );
  }
  return ports;
}

async function allFree(from: number, width: number): Promise<boolean> {
  for (let port = from; port < from + width; port++) if (!(await portFree(port))) return false;
  return true;
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
): Promise<{ config: CentOpsConfig; admin: Admin }> {
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
    const metricsPort = await freeLoopbackPort(50_000, 51_000, 'the CentOps metrics');
    const child = spawnLogged(
      options.dmr.command,
      [
        ...options.dmr.args,
        'centops',
        'serve',
        '--dir',
        paths.centopsDir,
        '--metrics-listen',
        `127.0.0.1:${metricsPort}`,
      ],
      {
        logFile: paths.centopsLog,
        ...(mesh.childEnv === undefined ? {} : { env: mesh.childEnv }),
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
        metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
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

export async function startMeshBrokers(
  mesh: LocalMesh,
  options: StartMeshOptions,
  caDir: string,
): Promise<BrokerHarness> {
  const count = options.shape.nodes.length;
  const step = options.progress.step(
    count === 1
      ? 'RabbitMQ (TLS only, client certificates)'
      : `${count} RabbitMQ nodes (TLS only, client certificates)`,
  );
  try {
    const ca = await CertificateAuthority.open(caDir);
    let ready = 0;
    const harness = await startBrokers({
      dir: mesh.paths.brokerDir,
      nodes: count,
      ca,
      namePrefix: 'mesh',
      lifetime: 'process',
      // The supervisor handles signals itself, to stop the other components first and report progress.
      handleSignals: false,
      watchdog: true,
      // Every node boots at once on the same cores: a bigger mesh boots each one slower.
      bootTimeoutMs: BROKER_BOOT_TIMEOUT_MS + BROKER_BOOT_TIMEOUT_PER_NODE_MS * count,
      onProgress: (event) => {
        if (event.phase === 'ready') ready++;
        step.update(count === 1 ? event.message : `${ready}/${count} ready: ${event.message}`);
      },
      onNodeExit: (event) => mesh.brokerExited(event),
    });
    mesh.harness = harness;
    const nodes: MeshNodeState[] = options.shape.nodes.map((id, index) => {
      const broker = harness.node(index);
      const files = mesh.paths.node(id);
      return {
        id,
        amqpsUrl: `amqps://localhost:${broker.amqpsPort}`,
        amqpsPort: broker.amqpsPort,
        vhost: vhostName(id),
        managementUrl: broker.managementUrl,
        broker: { name: broker.name, pid: broker.pid },
        metricsUrl: null,
        config: files.configFile,
        dataDir: files.dataDir,
        process: null,
        log: files.log,
      };
    });
    await mesh.update({ broker: { dir: mesh.paths.brokerDir }, nodes });
    const slowest = Math.max(...harness.nodes.map((node) => node.bootMs ?? 0));
    step.done(
      count === 1
        ? `${nodes[0]?.amqpsUrl ?? ''} (boot ${(slowest / 1000).toFixed(1)} s)`
        : `ports ${nodes.map((node) => node.amqpsPort).join(', ')} (slowest boot ${(slowest / 1000).toFixed(1)} s)`,
    );
    return harness;
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

export async function applyRegistry(options: StartMeshOptions, api: CentOpsApi, harness: BrokerHarness): Promise<void> {
  const { shape } = options;
  const homes = demoHomes(shape);
  const links =
    shape.links.length === 0 ? 'no links' : `${shape.topology} ${shape.links.map(([a, b]) => `${a}–${b}`).join(', ')}`;
  const step = options.progress.step(
    `registry: ${shape.nodes.length === 1 ? shape.nodes[0] : `${shape.nodes.length} nodes`} (${links}); ` +
      `bot-a on ${homes.get('bot-a')}, bot-b on ${homes.get('bot-b')}; policy grant org-a ↔ org-b`,
  );
  try {
    const endpoints = shape.nodes.map((id, index) => {
      const broker = harness.node(index);
      return { id, amqpsPort: broker.amqpsPort, managementPort: broker.ports.management };
    });
    // Clients move first (upserts), then what an earlier, bigger or differently linked mesh left is removed:
    // one batch, all or nothing.
    const stale = await staleRegistryItems(api, shape);
    const result = await api.call<{ revision: number }>('POST', '/v1/apply', [
      ...registryDocuments(shape, endpoints),
      ...stale,
    ]);
    // Deleting a node revoked its certificate: its old identity must not be found by a later, bigger mesh.
    for (const item of stale) {
      if (item.kind !== 'Node' || item.id === undefined) continue;
      const files = meshPaths(options.dir).node(item.id);
      await Promise.all(
        [files.dataDir, files.configFile, files.tokenFile].map((path) => rm(path, { recursive: true, force: true })),
      );
    }
    step.update('policy grant (opa check + opa test in CentOps)');
    const granted = await ensureGrants(api);
    const removed = stale.length === 0 ? '' : `, removed ${stale.map((item) => `${item.kind} ${item.id}`).join(', ')}`;
    step.done(`revision ${result.revision}${granted ? ', grants added' : ''}${removed}`);
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

interface Admin {
  api: CentOpsApi;
  enrol: CentOpsApi;
  caBundle: string;
}

/** Writes one node's run-config and token, spawns `dmr node run`, waits until it runs CentOps' current revision. */
async function startOneNode(
  mesh: LocalMesh,
  options: StartMeshOptions,
  admin: Admin,
  config: CentOpsConfig,
  harness: BrokerHarness,
  index: number,
  metricsPort: number,
): Promise<NodeStatusView> {
  const id = options.shape.nodes[index] as string;
  const files = mesh.paths.node(id);
  const { token } = await admin.api.call<{ token: string }>('POST', '/v1/tokens', { id, kind: 'node', ttl: '1h' });
  const broker = harness.node(index);
  const runConfig = {
    node: id,
    dataDir: files.dataDir,
    centops: {
      url: admin.api.baseUrl,
      enrolUrl: admin.enrol.enrolUrl,
      caFile: admin.caBundle,
      tokenFile: files.tokenFile,
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
    routers: options.routers ?? 1,
    policy: { mode: 'wasm' },
    metrics: { listen: `127.0.0.1:${metricsPort}` },
  };
  await writeFilesAtomic([
    { path: files.tokenFile, data: `${token}\n`, mode: 0o600, overwrite: true },
    {
      path: files.configFile,
      data: `# written by dmr up; see docs/node-run.md\n${stringify(runConfig)}`,
      mode: 0o600,
      overwrite: true,
    },
  ]);
  const spawnedAt = Date.now();
  const child = spawnLogged(options.dmr.command, [...options.dmr.args, 'node', 'run', '--config', files.configFile], {
    logFile: files.log,
    ...(mesh.childEnv === undefined ? {} : { env: mesh.childEnv }),
  });
  mesh.nodes.set(id, child);
  await mesh.update({
    nodes: mesh.state.nodes.map((node) =>
      node.id === id ? { ...node, process: child.ref, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` } : node,
    ),
  });
  const status = await waitFor({
    what: `node ${id}`,
    child,
    log: files.log,
    timeoutMs: NODE_READY_TIMEOUT_MS,
    check: async () => {
      const view = await admin.api.call<NodeStatusView>('GET', `/v1/nodes/${id}/status`);
      // A report from a previous run of this mesh says nothing about the fresh broker.
      const fresh = view.reportedAt !== null && Date.parse(view.reportedAt) >= spawnedAt - 1000;
      if (!fresh) return undefined;
      if (view.refused !== null && view.refused.revision >= view.currentRevision) {
        throw startFailure(
          `node ${id}`,
          `refused revision ${view.refused.revision}: ${view.refused.reason}`,
          files.log,
        );
      }
      return view.inSync ? view : undefined;
    },
  });
  mesh.watch(child, `node ${id}`, files.log);
  return status;
}

/**
 * Every node at once: each enrols, installs its certificate on its broker
 * and applies its configuration (links and routes included). They share
 * nothing but CentOps, so nothing is gained by waiting for one another.
 */
export async function startNodes(
  mesh: LocalMesh,
  options: StartMeshOptions,
  admin: Admin,
  config: CentOpsConfig,
  harness: BrokerHarness,
): Promise<void> {
  const { nodes } = options.shape;
  const step = options.progress.step(nodes.length === 1 ? `DMR node ${nodes[0]}` : `DMR nodes ${nodes.join(', ')}`);
  try {
    const metricsPorts = await freeMetricsPorts(nodes.length, options.routers ?? 1);
    step.update('enrol, install broker TLS, apply the configuration');
    let ready = 0;
    const statuses = await Promise.all(
      nodes.map(async (id, index) => {
        const status = await startOneNode(mesh, options, admin, config, harness, index, metricsPorts[index] as number);
        ready++;
        const pid = mesh.nodes.get(id)?.ref.pid;
        if (nodes.length > 1) {
          step.update(`${ready}/${nodes.length} in sync`);
          options.progress.line(
            `  ✓ ${id}  revision ${status.appliedRevision ?? '?'} applied, policy ${status.policyRevision ?? '?'} (pid ${pid})`,
          );
        }
        return status;
      }),
    );
    const first = statuses[0];
    step.done(
      nodes.length === 1
        ? `revision ${first?.appliedRevision ?? '?'} applied, policy ${first?.policyRevision ?? '?'} (pid ${mesh.nodes.get(nodes[0] as string)?.ref.pid})`
        : `all ${nodes.length} run revision ${first?.appliedRevision ?? '?'}`,
    );
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

/** Where the demo's questions are, for an error that says which link did not carry them. */
async function pathState(mesh: LocalMesh, from: string, to: string): Promise<string> {
  const links = await pathLinks(mesh.state, from, to).catch(() => undefined);
  if (links === undefined) return `no route from ${from} to ${to} in the applied configurations`;
  return links.map((link) => `${link.from} → ${link.to} ${link.state}, ${link.messages ?? '?'} waiting`).join('; ');
}

export async function startDemo(
  mesh: LocalMesh,
  options: StartMeshOptions,
  admin: Admin,
  config: CentOpsConfig,
  harness: BrokerHarness,
): Promise<void> {
  const { shape } = options;
  const homes = demoHomes(shape);
  const [askerHome, answererHome] = DEMO_CLIENTS.map((client) => homes.get(client.id) as string) as [string, string];
  const across = askerHome === answererHome ? `on ${askerHome}` : `${askerHome} ↔ ${answererHome}`;
  const step = options.progress.step(`demo clients bot-a and bot-b (${across}): enrol, connect, first round trip`);
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
        node: homes.get(client.id) as string,
        certificate: client.certificateFile,
        key: client.keyFile,
      })),
    });
    const [asker, answerer] = clients as [EnrolledClient, EnrolledClient];
    const party = (client: EnrolledClient, node: string) => ({
      client,
      node,
      amqpsPort: harness.node(shape.nodes.indexOf(node)).amqpsPort,
    });
    mesh.setDemoPath(
      { from: { client: asker.id, node: askerHome }, to: { client: answerer.id, node: answererHome } },
      askerHome === answererHome ? 'bot-a → bot-b → bot-a' : `bot-a@${askerHome} → bot-b@${answererHome} → bot-a`,
    );
    let first: ((latencyMs: number) => void) | undefined;
    let refusal: ((error: DmrError) => void) | undefined;
    const firstRoundTrip = new Promise<number>((resolve, reject) => {
      first = resolve;
      refusal = reject;
    });
    let started = false;
    const demo = new DemoExchange({
      caPem: harness.trustBundlePem,
      trustDomain: config.trustDomain,
      asker: party(asker, askerHome),
      answerer: party(answerer, answererHome),
      intervalMs: options.intervalMs,
      onEvent: (event) => {
        if (!started) {
          if (event.kind === 'round-trip') first?.(event.latencyMs);
          if (event.kind === 'refused') {
            refusal?.(
              new DmrError('MESH_START_FAILED', `the mesh refused the first message: ${event.reason} ${event.detail}`, {
                hint: `see the node logs in ${mesh.paths.logsDir}`,
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
      timer = setTimeout(() => {
        void (async () => {
          const where = askerHome === answererHome ? '' : ` (links: ${await pathState(mesh, askerHome, answererHome)})`;
          reject(
            new DmrError(
              'MESH_START_FAILED',
              `no answer from bot-b within ${FIRST_ROUND_TRIP_TIMEOUT_MS / 1000} s${where}`,
              { hint: `see the node logs in ${mesh.paths.logsDir}` },
            ),
          );
        })();
      }, FIRST_ROUND_TRIP_TIMEOUT_MS);
    });
    const latency = await Promise.race([firstRoundTrip, timeout]).finally(() => {
      started = true;
      clearTimeout(timer);
    });
    step.done(`first round trip ${latency.toFixed(1)} ms`);
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

/** `--observability`: Prometheus scraping CentOps, every agent, router and broker, with the shipped alert rules. */
export async function startPrometheus(mesh: LocalMesh, options: StartMeshOptions): Promise<void> {
  const step = options.progress.step('Prometheus');
  try {
    const install = locatePrometheus();
    const { prometheusDir: dir, prometheusLog: log } = mesh.paths;
    const harness = mesh.harness;
    const brokerMetrics = new Map(
      harness === undefined ? [] : mesh.state.nodes.map((node, index) => [node.id, harness.node(index).prometheusUrl]),
    );
    await writePrometheusFiles(dir, meshTargets(mesh.state, brokerMetrics, options.routers ?? 1));
    const port = await freeLoopbackPort(51_000, 52_000, 'Prometheus');
    const child = spawnLogged(install.prometheus, prometheusArgs(dir, port), { logFile: log });
    mesh.prometheus = child;
    const url = `http://127.0.0.1:${port}`;
    await waitFor({
      what: 'Prometheus',
      child,
      log,
      timeoutMs: PROMETHEUS_READY_TIMEOUT_MS,
      check: async () => ((await fetch(`${url}/-/ready`)).ok ? true : undefined),
    });
    mesh.watch(child, 'Prometheus', log);
    await mesh.update({ prometheus: { url, dir, process: child.ref, log } });
    step.done(`${url} (alerts: ${url}/alerts, pid ${child.ref.pid})`);
  } catch (error) {
    step.fail(error);
    throw error;
  }
}

/**
 * `--observability`: Jaeger when installed (jaeger.ts), started before
 * everything else so that CentOps and every node export to it from their
 * first span; when it is not installed the step says how to install it
 * and the mesh starts without traces.
 */
export async function startJaeger(mesh: LocalMesh): Promise<void> {
  const step = mesh.progress.step('Jaeger');
  const binary = locateJaeger();
  if (binary === undefined) {
    step.done(`not installed, starting without traces: ${JAEGER_INSTALL_HINT}`);
    return;
  }
  try {
    const { jaegerDir: dir, jaegerLog: log } = mesh.paths;
    const ports: JaegerPorts = {
      otlp: await freeLoopbackPort(52_000, 52_300, 'Jaeger OTLP'),
      ui: await freeLoopbackPort(52_300, 52_600, 'the Jaeger UI'),
      queryGrpc: await freeLoopbackPort(52_600, 52_900, 'Jaeger query gRPC'),
    };
    const config = await writeJaegerConfig(dir, ports);
    const child = spawnLogged(binary, ['--config', config], { logFile: log });
    mesh.jaeger = child;
    const url = `http://127.0.0.1:${ports.ui}`;
    const otlpUrl = `http://127.0.0.1:${ports.otlp}`;
    await waitFor({
      what: 'Jaeger',
      child,
      log,
      timeoutMs: PROMETHEUS_READY_TIMEOUT_MS,
      check: async () => ((await fetch(`${url}/api/services`)).ok ? true : undefined),
    });
    mesh.watch(child, 'Jaeger', log);
    mesh.childEnv = tracingEnv(otlpUrl);
    await mesh.update({ jaeger: { url, otlpUrl, process: child.ref, log } });
    step.done(`${url} (traces from every process; dmr trace <message-id> links here, pid ${child.ref.pid})`);
  } catch (error) {
    step.fail(error);
    throw error;
  }
}
