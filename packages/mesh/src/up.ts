/**
 * `dmr up`: CentOps, a TLS-only RabbitMQ node, the DMR node and two demo
 * clients on this machine, all enrolled through CentOps. One process (the
 * supervisor: `dmr up --foreground`, or its detached copy) owns every
 * component, so a Ctrl-C or `dmr down` stops them in reverse order from
 * one place, and the broker's orphan watchdog stops the broker even when
 * the supervisor is killed outright.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import {
  harnessPaths,
  locateRabbitmq,
  startBrokers,
  type BrokerHarness,
  type NodeExitEvent,
} from '@dmr/broker-harness';
import { CONFIG_FILE, initCentOps, loadConfig, type CentOpsConfig } from '@dmr/centops';
import { DmrError, isDmrError } from '@dmr/core';
import { CertificateAuthority, writeFilesAtomic } from '@dmr/pki';
import { ensureOpa } from '@dmr/policy';
import { CentOpsApi } from './centops-client.js';
import { DemoExchange, enrolClient, type DemoEvent, type EnrolledClient } from './demo.js';
import { NODE_ID, meshPaths, type MeshPaths } from './paths.js';
import { isAlive, processRef, spawnLogged, stopProcess, tailOf, signalGroup, type LoggedChild } from './processes.js';
import type { MeshProgress, StepHandle } from './progress.js';
import { DEMO_CLIENTS, ensureGrants, registryDocuments } from './registry.js';
import { readMeshState, writeMeshState, type DemoStats, type MeshState } from './state.js';

/** How to run the `dmr` command line (the CLI passes its own node binary and script). */
export interface DmrCommand {
  command: string;
  args: string[];
}

export interface StartMeshOptions {
  dir: string;
  dmr: DmrCommand;
  mode: 'foreground' | 'detached';
  progress: MeshProgress;
  /** Between two questions of bot-a (default 1000 ms). */
  intervalMs?: number;
  /** Aborting (Ctrl-C during the start) stops what was started and rejects. */
  signal?: AbortSignal;
}

const CENTOPS_READY_TIMEOUT_MS = 60_000;
const NODE_READY_TIMEOUT_MS = 180_000;
const FIRST_ROUND_TRIP_TIMEOUT_MS = 60_000;
const CHILD_STOP_GRACE_MS = 20_000;
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

/**
 * The programs every component needs, checked before anything is created,
 * with the command that fixes each. RabbitMQ first: a missing broker should
 * not wait for a minutes-long opa build. A missing opa is built here (first
 * run only), its progress shown as lines of their own.
 */
export async function preflight(progress?: MeshProgress): Promise<void> {
  locateRabbitmq();
  let step: StepHandle | undefined;
  try {
    await ensureOpa({
      onBuild: () => {
        step = progress?.step('opa: installing the pinned version (a first build with Go takes about 3 minutes)');
      },
      onOutput: (line) => (progress === undefined ? process.stderr.write(`${line}\n`) : progress.line(`  ${line}`)),
    });
  } catch (error) {
    step?.fail(error);
    throw error;
  }
  step?.done();
}

function aborted(signalToCheck: AbortSignal | undefined): void {
  if (signalToCheck?.aborted) {
    throw new DmrError('MESH_START_FAILED', 'the start was interrupted', { hint: 'run dmr up again to start over' });
  }
}

function startFailure(what: string, message: string, log: string, cause?: unknown): DmrError {
  const tail = tailOf(log);
  return new DmrError(
    'MESH_START_FAILED',
    `${what}: ${message}${tail === '' ? '' : `\n--- last lines of ${log} ---\n${tail}`}`,
    {
      details: { component: what, log },
      hint: `see ${log}`,
      cause,
    },
  );
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

export class LocalMesh {
  readonly paths: MeshPaths;
  /** Where the start's steps, the message lines and the stop's steps go. */
  progress: MeshProgress;
  #state: MeshState;
  centops: LoggedChild | undefined;
  harness: BrokerHarness | undefined;
  node: LoggedChild | undefined;
  demo: DemoExchange | undefined;
  #stopping: Promise<void> | undefined;
  #failure: ((error: DmrError) => void) | undefined;
  /** Resolves when a component dies on its own while the mesh runs. */
  readonly failed: Promise<DmrError>;
  readonly stats: DemoStats = {
    sent: 0,
    roundTrips: 0,
    refused: 0,
    lastLatencyMs: null,
    medianLatencyMs: null,
    lastRefusal: null,
    updatedAt: new Date().toISOString(),
  };
  readonly #latencies: number[] = [];
  #statsTimer: NodeJS.Timeout | undefined;
  #writes: Promise<void> = Promise.resolve();

  constructor(options: StartMeshOptions, state: MeshState) {
    this.progress = options.progress;
    this.paths = meshPaths(options.dir);
    this.#state = state;
    this.failed = new Promise((resolve) => (this.#failure = resolve));
  }

  get state(): MeshState {
    return this.#state;
  }

  /**
   * Changes the state and writes it. Writes are chained, each writing the
   * state as it is by then: two overlapping atomic writes could otherwise
   * land in the wrong order and leave an older state on disk.
   */
  update(change: Partial<MeshState>): Promise<void> {
    this.#state = { ...this.#state, ...change };
    const write = this.#writes.then(() => writeMeshState(this.#state));
    this.#writes = write.catch(() => undefined);
    return write;
  }

  #died(error: DmrError): void {
    if (this.#stopping === undefined) this.#failure?.(error);
  }

  watch(child: LoggedChild, what: string, log: string): void {
    void child.exited.then((exit) =>
      this.#died(startFailure(what, `exited unexpectedly (${exit.signal ?? `code ${exit.code}`})`, log)),
    );
  }

  brokerExited(event: NodeExitEvent): void {
    if (event.expected) return;
    this.#died(
      new DmrError(
        'BROKER_NOT_RUNNING',
        `${event.node} exited unexpectedly (${event.signal ?? `code ${event.code}`})`,
        {
          hint: `see the broker log under ${harnessPaths(this.paths.brokerDir).nodesDir}/${event.node}/log`,
        },
      ),
    );
  }

  demoEvent(event: DemoEvent): void {
    const { progress } = this;
    const stats = this.stats;
    switch (event.kind) {
      case 'round-trip': {
        stats.roundTrips++;
        stats.lastLatencyMs = Math.round(event.latencyMs * 10) / 10;
        this.#latencies.push(event.latencyMs);
        if (this.#latencies.length > 100) this.#latencies.shift();
        const sorted = [...this.#latencies].sort((a, b) => a - b);
        stats.medianLatencyMs = Math.round((sorted[Math.floor(sorted.length / 2)] ?? 0) * 10) / 10;
        progress.line(
          `  bot-a → bot-b → bot-a  #${event.seq}  ${event.latencyMs.toFixed(1)} ms  (median ${stats.medianLatencyMs} ms, ${stats.roundTrips} round trips)`,
        );
        break;
      }
      case 'refused':
        stats.refused++;
        stats.lastRefusal = `${event.reason}${event.detail === '' ? '' : `: ${event.detail}`}`;
        progress.line(`  ✗ #${event.seq ?? '?'} refused by the node: ${stats.lastRefusal}`);
        break;
      case 'timeout':
        progress.line(`  … #${event.seq} got no answer within 10 s`);
        break;
      case 'connection':
        progress.line(`  ! ${event.client}: ${event.message}`);
        break;
    }
    stats.sent = this.demo?.sent ?? stats.sent;
    this.#scheduleStats();
  }

  /** At most one write a second: `dmr status` reads the counters from the file. */
  #scheduleStats(): void {
    if (this.#statsTimer !== undefined) return;
    this.#statsTimer = setTimeout(() => {
      this.#statsTimer = undefined;
      void this.writeStats();
    }, 1000);
    this.#statsTimer.unref();
  }

  async writeStats(): Promise<void> {
    this.stats.sent = this.demo?.sent ?? this.stats.sent;
    this.stats.updatedAt = new Date().toISOString();
    await writeFile(this.paths.statsFile, `${JSON.stringify(this.stats, null, 2)}\n`, { mode: 0o600 }).catch(
      () => undefined,
    );
  }

  /** Stops everything that was started, newest first, with a progress step each. Idempotent. */
  stop(progress: MeshProgress = this.progress): Promise<void> {
    this.#stopping ??= this.#stopAll(progress);
    return this.#stopping;
  }

  async #stopAll(progress: MeshProgress): Promise<void> {
    await this.update({ status: 'stopping' }).catch(() => undefined);
    if (this.#statsTimer) clearTimeout(this.#statsTimer);
    const stages: Array<[string, () => Promise<string | undefined>]> = [];
    const demo = this.demo;
    if (demo) {
      stages.push([
        'stop the demo clients',
        async () => {
          await demo.stop();
          await this.writeStats();
          return `${this.stats.roundTrips} round trips, ${this.stats.refused} refused`;
        },
      ]);
    }
    const node = this.node;
    if (node) stages.push([`stop ${NODE_ID}`, async () => stopProcess(node.ref, CHILD_STOP_GRACE_MS)]);
    const harness = this.harness;
    if (harness) {
      stages.push([
        'stop the broker',
        async () => {
          await harness.stop();
          return undefined;
        },
      ]);
    }
    const centops = this.centops;
    if (centops) stages.push(['stop CentOps', async () => stopProcess(centops.ref, CHILD_STOP_GRACE_MS)]);
    let firstError: unknown;
    for (const [name, run] of stages) {
      const step = progress.step(name);
      try {
        const detail = await run();
        step.done(detail === 'stopped' || detail === '' ? undefined : detail);
      } catch (error) {
        step.fail(error);
        firstError ??= error;
      }
    }
    await this.update({ status: 'stopped' }).catch(() => undefined);
    if (firstError !== undefined) throw firstError;
  }

  /** A second Ctrl-C: no grace, no waiting. */
  killNowSync(): void {
    signalGroup(this.node?.ref, 'SIGKILL');
    signalGroup(this.centops?.ref, 'SIGKILL');
    this.harness?.killNowSync('second interrupt');
  }
}

async function assertNotRunning(paths: MeshPaths): Promise<void> {
  let previous: MeshState | undefined;
  try {
    previous = await readMeshState(paths.dir);
  } catch {
    return;
  }
  if (previous.supervisor.pid !== process.pid && isAlive(previous.supervisor)) {
    throw new DmrError('CONFLICT', `a mesh is already running in ${paths.dir} (pid ${previous.supervisor.pid})`, {
      hint: `watch it with: dmr status --dir ${paths.dir}; stop it with: dmr down --dir ${paths.dir}`,
    });
  }
}

async function startCentOps(
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
        enrolUrl: admin.enrol.baseUrl,
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

async function startBroker(mesh: LocalMesh, options: StartMeshOptions, caDir: string): Promise<BrokerHarness> {
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

async function applyRegistry(options: StartMeshOptions, api: CentOpsApi, harness: BrokerHarness): Promise<void> {
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

async function startNode(
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
        enrolUrl: admin.enrol.baseUrl,
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

async function startDemo(
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

/** Starts every component in order; on any failure (or abort) stops what was started and rejects. */
export async function startMesh(options: StartMeshOptions): Promise<LocalMesh> {
  const paths = meshPaths(options.dir);
  await mkdir(paths.logsDir, { recursive: true, mode: 0o700 });
  await assertNotRunning(paths);
  await preflight(options.progress);
  const supervisor = processRef(process.pid) ?? { pid: process.pid, startTicks: -1 };
  const mesh = new LocalMesh(options, {
    version: 1,
    dir: paths.dir,
    status: 'starting',
    mode: options.mode,
    startedAt: new Date().toISOString(),
    supervisor,
    error: null,
    steps: [],
    centops: null,
    broker: null,
    node: null,
    clients: [],
    statsFile: paths.statsFile,
  });
  await mesh.update({});
  // A detached start's parent prints the finished steps it reads back from mesh.json.
  const shown = options.progress;
  options = {
    ...options,
    progress: {
      line: (text) => shown.line(text),
      step: (name) => {
        const handle = shown.step(name);
        return {
          update: (detail) => handle.update(detail),
          fail: (error) => handle.fail(error),
          done: (detail) => {
            const ms = handle.done(detail);
            if (mesh.state.status === 'starting') {
              void mesh
                .update({ steps: [...mesh.state.steps, { name, ms: Math.round(ms), detail: detail ?? null }] })
                .catch(() => undefined);
            }
            return ms;
          },
        };
      },
    },
  };
  mesh.progress = options.progress;
  try {
    const { config, admin } = await startCentOps(mesh, options);
    aborted(options.signal);
    const harness = await startBroker(mesh, options, join(paths.centopsDir, 'ca'));
    aborted(options.signal);
    await applyRegistry(options, admin.api, harness);
    aborted(options.signal);
    await startNode(mesh, options, admin, config, harness);
    aborted(options.signal);
    await startDemo(mesh, options, admin, config, harness);
    aborted(options.signal);
    await mesh.update({ status: 'running' });
    await mesh.writeStats();
    return mesh;
  } catch (error) {
    const failure = options.signal?.aborted
      ? new DmrError('MESH_START_FAILED', 'the start was interrupted; everything started was stopped', {
          hint: 'run dmr up again to start over',
        })
      : isDmrError(error)
        ? error
        : new DmrError('MESH_START_FAILED', error instanceof Error ? error.message : String(error), { cause: error });
    await mesh.stop().catch(() => undefined);
    await mesh
      .update({
        status: 'failed',
        error: {
          code: failure.code,
          message: failure.message,
          ...(failure.hint === undefined ? {} : { hint: failure.hint }),
        },
      })
      .catch(() => undefined);
    throw failure;
  }
}
