/**
 * The other processes' side of a mesh: `dmr up` without --foreground starts
 * the supervisor detached and follows its progress through mesh.json;
 * `dmr status` and `dmr down` read mesh.json and check every recorded
 * process by PID and start time before they trust or signal it.
 */
import { spawn } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { brokerStatus, stopBrokers } from '@dmr/broker-harness';
import { DmrError, isErrorCode } from '@dmr/core';
import { CentOpsApi } from './centops-client.js';
import { appliedConfig, linkReports, unknownLinks, type AppliedConfig, type LinkReport } from './inspect.js';
import { meshPaths } from './paths.js';
import { isAlive, processRef, stopProcess, tailOf } from './processes.js';
import {
  readMeshState,
  readStats,
  recordedSupervisor,
  writeMeshState,
  type DemoStats,
  type MeshState,
  type PathStats,
} from './state.js';
import { followRoutes, type MeshShape } from './topology.js';
import type { DmrCommand } from './up.js';

/** Brokers boot at once on the same cores, nodes start at once: a mesh of 8 needs longer than one of 1. */
const DETACHED_START_TIMEOUT_MS = 2 * 60_000;
const DETACHED_START_TIMEOUT_PER_NODE_MS = 40_000;
/** The supervisor stops its components in order (the brokers alone ≈ 7 s); then it is killed and the rest cleaned here. */
const SUPERVISOR_STOP_TIMEOUT_MS = 90_000;

export interface DetachedStartOptions {
  dir: string;
  dmr: DmrCommand;
  shape: MeshShape;
  /** Each step the supervisor finishes, as it finishes. */
  onStep?: (step: MeshState['steps'][number]) => void;
  intervalMs?: number;
  /** `--observability`: the supervisor also starts Prometheus. */
  observability?: boolean;
}

/**
 * Starts `dmr up --foreground` in its own session (it outlives this process
 * and the terminal), its output in `<dir>/logs/mesh.log`, and returns once
 * mesh.json says it runs, or throws what it failed with.
 */
export async function startDetached(options: DetachedStartOptions): Promise<MeshState> {
  const paths = meshPaths(options.dir);
  await mkdir(paths.logsDir, { recursive: true, mode: 0o700 });
  const previous = await recordedSupervisor(paths.dir);
  if (previous !== undefined && isAlive(previous)) {
    throw new DmrError('CONFLICT', `a mesh is already running in ${paths.dir} (pid ${previous.pid})`, {
      hint: `watch it with: dmr status --dir ${paths.dir}; stop it with: dmr down --dir ${paths.dir}`,
    });
  }
  const log = await open(paths.supervisorLog, 'a', 0o600);
  let pid: number | undefined;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  try {
    const child = spawn(
      options.dmr.command,
      [
        ...options.dmr.args,
        'up',
        '--foreground',
        '--dir',
        paths.dir,
        '--detached-supervisor',
        '--nodes',
        String(options.shape.nodes.length),
        '--topology',
        options.shape.topology,
        ...(options.intervalMs === undefined ? [] : ['--interval', String(options.intervalMs)]),
        ...(options.observability === true ? ['--observability'] : []),
      ],
      { detached: true, stdio: ['ignore', log.fd, log.fd] },
    );
    child.once('exit', (code, signal) => (exit = { code, signal }));
    child.unref();
    pid = child.pid;
  } finally {
    await log.close();
  }
  const ref = processRef(pid);
  const timeoutMs = DETACHED_START_TIMEOUT_MS + DETACHED_START_TIMEOUT_PER_NODE_MS * options.shape.nodes.length;
  const deadline = Date.now() + timeoutMs;
  let shown = 0;
  for (;;) {
    await sleep(250);
    let state: MeshState | undefined;
    try {
      state = await readMeshState(paths.dir);
    } catch {
      state = undefined;
    }
    if (state !== undefined && state.supervisor.pid === pid) {
      for (const step of state.steps.slice(shown)) options.onStep?.(step);
      shown = state.steps.length;
      if (state.status === 'running') return state;
      if (state.status === 'failed' && state.error !== null) {
        const code = isErrorCode(state.error.code) ? state.error.code : 'MESH_START_FAILED';
        throw new DmrError(code, state.error.message, {
          hint: `${state.error.hint === undefined ? '' : `${state.error.hint}; `}the whole start is in ${paths.supervisorLog}`,
        });
      }
    }
    if (exit !== undefined || (ref !== undefined && !isAlive(ref))) {
      throw new DmrError(
        'MESH_START_FAILED',
        `dmr up exited before the mesh was running\n${tailOf(paths.supervisorLog)}`,
        {
          hint: `see ${paths.supervisorLog}`,
        },
      );
    }
    if (Date.now() > deadline) {
      throw new DmrError('MESH_START_FAILED', `the mesh was not running after ${Math.round(timeoutMs / 1000)} s`, {
        hint: `see ${paths.supervisorLog}; stop what started with dmr down --dir ${paths.dir}`,
      });
    }
  }
}

export interface ComponentStatus {
  name: string;
  running: boolean;
  pid: number | null;
  endpoint: string | null;
  log: string | null;
  /** Component-specific facts (ports, files, organisation). */
  info: Record<string, unknown>;
}

/** One DMR node: its agent, its broker, what it runs, and its links. */
export interface NodeReport {
  id: string;
  /** The agent (`dmr node run`) is alive. */
  running: boolean;
  pid: number | null;
  log: string;
  broker: {
    name: string;
    running: boolean;
    pid: number | null;
    amqpsUrl: string;
    vhost: string;
    managementUrl: string;
  };
  metricsUrl: string | null;
  /** CentOps' view: the revision the node reported, and whether that is the current one. */
  appliedRevision: number | null;
  currentRevision: number | null;
  inSync: boolean | null;
  policyRevision: string | null;
  refused: { revision: number; reason: string } | null;
  /** The configuration the agent applied (its links and CentOps' routes), when it has one. */
  applied: AppliedConfig | null;
  links: LinkReport[];
  /** Why some of the above is unknown (CentOps down, …). */
  error: string | null;
}

/** A demo path: who asks whom, the nodes a question crosses (from the nodes' applied routes) and its counters. */
export interface PathReport extends PathStats {
  /** Nodes from the asker's to the answerer's, or null when some node has no route. */
  route: string[] | null;
  /** Links crossed one way. */
  hops: number | null;
}

export interface MeshStatusReport {
  dir: string;
  /** What mesh.json last recorded; `running` is whether its supervisor is alive now. */
  recordedStatus: MeshState['status'];
  running: boolean;
  mode: MeshState['mode'];
  startedAt: string;
  error: MeshState['error'];
  topology: MeshState['topology'];
  /** The supervisor, CentOps and the demo clients. */
  components: ComponentStatus[];
  nodes: NodeReport[];
  /** Each direction of each link. */
  links: LinkReport[];
  paths: PathReport[];
  messages: DemoStats | null;
}

interface CentOpsNodeView {
  currentRevision: number;
  appliedRevision: number | null;
  policyRevision: string | null;
  refused: { revision: number; reason: string } | null;
  inSync: boolean;
}

async function centopsViews(state: MeshState): Promise<Map<string, CentOpsNodeView> | string> {
  if (state.centops === null || !isAlive(state.centops.process)) return 'CentOps is not running';
  try {
    const { api } = await CentOpsApi.admin(state.centops.adminConfig);
    const views = await Promise.all(
      state.nodes.map(
        async (node) => [node.id, await api.call<CentOpsNodeView>('GET', `/v1/nodes/${node.id}/status`)] as const,
      ),
    );
    return new Map(views);
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

async function brokersNow(state: MeshState): Promise<Map<string, { running: boolean; pid: number | null }>> {
  const found = new Map<string, { running: boolean; pid: number | null }>();
  if (state.broker === null) return found;
  try {
    const broker = await brokerStatus(state.broker.dir);
    for (const node of broker.nodes) found.set(node.name, { running: node.running && node.listening, pid: node.pid });
  } catch {
    // No readable harness state: every broker counts as stopped.
  }
  return found;
}

async function nodeReport(
  state: MeshState,
  index: number,
  views: Map<string, CentOpsNodeView> | string,
  brokers: Map<string, { running: boolean; pid: number | null }>,
): Promise<NodeReport> {
  const node = state.nodes[index] as MeshState['nodes'][number];
  const view = typeof views === 'string' ? undefined : views.get(node.id);
  const broker = brokers.get(node.broker.name) ?? { running: false, pid: node.broker.pid };
  const applied = (await appliedConfig(node.dataDir)) ?? null;
  const peers =
    applied?.links ??
    state.links.flatMap((link) =>
      link.nodes[0] === node.id ? [link.nodes[1]] : link.nodes[1] === node.id ? [link.nodes[0]] : [],
    );
  const links =
    broker.running && state.broker !== null
      ? await linkReports(state.broker.dir, index, node, peers)
      : unknownLinks(node.id, peers);
  return {
    id: node.id,
    running: isAlive(node.process),
    pid: node.process?.pid ?? null,
    log: node.log,
    broker: {
      name: node.broker.name,
      running: broker.running,
      pid: broker.pid,
      amqpsUrl: node.amqpsUrl,
      vhost: node.vhost,
      managementUrl: node.managementUrl,
    },
    metricsUrl: node.metricsUrl,
    appliedRevision: view?.appliedRevision ?? null,
    currentRevision: view?.currentRevision ?? null,
    inSync: view?.inSync ?? null,
    policyRevision: view?.policyRevision ?? null,
    refused: view?.refused ?? null,
    applied,
    links,
    error: typeof views === 'string' ? views : view === undefined ? 'no status from CentOps' : null,
  };
}

export async function meshStatus(dir: string): Promise<MeshStatusReport> {
  const state = await readMeshState(dir);
  const running = isAlive(state.supervisor);
  const components: ComponentStatus[] = [
    {
      name: 'supervisor',
      running,
      pid: state.supervisor.pid,
      endpoint: null,
      log: state.mode === 'detached' ? meshPaths(dir).supervisorLog : null,
      info: { mode: state.mode },
    },
  ];
  if (state.centops !== null) {
    components.push({
      name: 'centops',
      running: isAlive(state.centops.process),
      pid: state.centops.process?.pid ?? null,
      endpoint: state.centops.apiUrl,
      log: state.centops.log,
      info: { enrolment: state.centops.enrolUrl, adminConfig: state.centops.adminConfig },
    });
  }
  if (state.jaeger != null) {
    components.push({
      name: 'jaeger',
      running: isAlive(state.jaeger.process),
      pid: state.jaeger.process?.pid ?? null,
      endpoint: state.jaeger.url,
      log: state.jaeger.log,
      info: { otlp: state.jaeger.otlpUrl },
    });
  }
  if (state.prometheus != null) {
    components.push({
      name: 'prometheus',
      running: isAlive(state.prometheus.process),
      pid: state.prometheus.process?.pid ?? null,
      endpoint: state.prometheus.url,
      log: state.prometheus.log,
      info: { dir: state.prometheus.dir },
    });
  }
  for (const client of state.clients) {
    components.push({
      name: client.id,
      // The demo clients live inside the supervisor.
      running: running && state.status === 'running',
      pid: running ? state.supervisor.pid : null,
      endpoint: null,
      log: null,
      info: { organisation: client.organisation, node: client.node, certificate: client.certificate },
    });
  }
  const [views, brokers] = await Promise.all([centopsViews(state), brokersNow(state)]);
  const nodes = await Promise.all(state.nodes.map((_, index) => nodeReport(state, index, views, brokers)));
  const messages = await readStats(state.statsFile);
  const routes = new Map(nodes.map((node) => [node.id, node.applied?.routes ?? {}]));
  const paths = (messages?.paths ?? []).map((path): PathReport => {
    const route =
      path.from.node === path.to.node
        ? [path.from.node]
        : (followRoutes(
            path.from.node,
            path.to.node,
            (at, destination) => routes.get(at)?.[destination] ?? undefined,
          ) ?? null);
    return { ...path, route, hops: route === null ? null : route.length - 1 };
  });
  return {
    dir: state.dir,
    recordedStatus: state.status,
    running,
    mode: state.mode,
    startedAt: state.startedAt,
    error: state.error,
    topology: state.topology,
    components,
    nodes,
    links: nodes.flatMap((node) => node.links),
    paths,
    messages,
  };
}

export interface DownReport {
  dir: string;
  /** False when there was no mesh.json (nothing to do). */
  found: boolean;
  ms: number;
  stopped: Array<{ name: string; result: 'not-running' | 'stopped' | 'killed' }>;
}

/**
 * Asks the supervisor to stop everything (SIGTERM: it stops the components
 * newest first), then stops whatever it left behind itself. Idempotent.
 */
export async function meshDown(dir: string, onProgress?: (message: string) => void): Promise<DownReport> {
  const started = performance.now();
  let state: MeshState;
  try {
    state = await readMeshState(dir);
  } catch (error) {
    if (error instanceof DmrError && error.code === 'NOT_FOUND') {
      return { dir: meshPaths(dir).dir, found: false, ms: 0, stopped: [] };
    }
    throw error;
  }
  const stopped: DownReport['stopped'] = [];
  if (isAlive(state.supervisor)) onProgress?.(`stopping the mesh (supervisor pid ${state.supervisor.pid})`);
  stopped.push({ name: 'supervisor', result: await stopProcess(state.supervisor, SUPERVISOR_STOP_TIMEOUT_MS) });
  // Whatever the supervisor did not stop (it was killed, or it failed half way) is stopped here.
  if (state.prometheus?.process) {
    stopped.push({ name: 'prometheus', result: await stopProcess(state.prometheus.process, 20_000) });
  }
  const agents = await Promise.all(state.nodes.map((node) => stopProcess(node.process, 20_000)));
  if (state.jaeger?.process) {
    stopped.push({ name: 'jaeger', result: await stopProcess(state.jaeger.process, 20_000) });
  }
  state.nodes.forEach((node, index) => stopped.push({ name: node.id, result: agents[index] ?? 'not-running' }));
  if (state.broker !== null) {
    try {
      const broker = await brokerStatus(state.broker.dir);
      if (broker.running || broker.processes.some((process) => process.running)) {
        onProgress?.('stopping the brokers the supervisor left running');
        await stopBrokers(state.broker.dir);
        stopped.push({ name: 'brokers', result: 'stopped' });
      } else {
        stopped.push({ name: 'brokers', result: 'not-running' });
      }
    } catch {
      stopped.push({ name: 'brokers', result: 'not-running' });
    }
  }
  if (state.centops?.process) {
    stopped.push({ name: 'centops', result: await stopProcess(state.centops.process, 20_000) });
  }
  const after = await readMeshState(dir).catch(() => state);
  if (after.status !== 'stopped' && after.status !== 'failed') await writeMeshState({ ...after, status: 'stopped' });
  return { dir: state.dir, found: true, ms: Math.round(performance.now() - started), stopped };
}
