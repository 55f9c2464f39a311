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
import { NODE_ID, meshPaths } from './paths.js';
import { isAlive, processRef, stopProcess, tailOf } from './processes.js';
import { readMeshState, readStats, writeMeshState, type DemoStats, type MeshState } from './state.js';
import type { DmrCommand } from './up.js';

const DETACHED_START_TIMEOUT_MS = 4 * 60_000;
/** The supervisor stops four components, the broker alone ≈ 7 s; then it is killed and the rest cleaned here. */
const SUPERVISOR_STOP_TIMEOUT_MS = 90_000;

export interface DetachedStartOptions {
  dir: string;
  dmr: DmrCommand;
  /** Each step the supervisor finishes, as it finishes. */
  onStep?: (step: MeshState['steps'][number]) => void;
  intervalMs?: number;
}

/**
 * Starts `dmr up --foreground` in its own session (it outlives this process
 * and the terminal), its output in `<dir>/logs/mesh.log`, and returns once
 * mesh.json says it runs, or throws what it failed with.
 */
export async function startDetached(options: DetachedStartOptions): Promise<MeshState> {
  const paths = meshPaths(options.dir);
  await mkdir(paths.logsDir, { recursive: true, mode: 0o700 });
  try {
    const previous = await readMeshState(paths.dir);
    if (isAlive(previous.supervisor)) {
      throw new DmrError('CONFLICT', `a mesh is already running in ${paths.dir} (pid ${previous.supervisor.pid})`, {
        hint: `watch it with: dmr status --dir ${paths.dir}; stop it with: dmr down --dir ${paths.dir}`,
      });
    }
  } catch (error) {
    if (!(error instanceof DmrError && error.code === 'NOT_FOUND')) throw error;
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
        ...(options.intervalMs === undefined ? [] : ['--interval', String(options.intervalMs)]),
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
  const deadline = Date.now() + DETACHED_START_TIMEOUT_MS;
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
      throw new DmrError(
        'MESH_START_FAILED',
        `the mesh was not running after ${DETACHED_START_TIMEOUT_MS / 60_000} min`,
        {
          hint: `see ${paths.supervisorLog}; stop what started with dmr down --dir ${paths.dir}`,
        },
      );
    }
  }
}

export interface ComponentStatus {
  name: string;
  running: boolean;
  pid: number | null;
  endpoint: string | null;
  log: string | null;
  /** Component-specific facts (revisions, ports, counters). */
  info: Record<string, unknown>;
}

export interface MeshStatusReport {
  dir: string;
  /** What mesh.json last recorded; `running` is whether its supervisor is alive now. */
  recordedStatus: MeshState['status'];
  running: boolean;
  mode: MeshState['mode'];
  startedAt: string;
  error: MeshState['error'];
  components: ComponentStatus[];
  messages: DemoStats | null;
}

async function nodeStatus(state: MeshState): Promise<Record<string, unknown>> {
  if (state.centops === null || !isAlive(state.centops.process)) return { error: 'CentOps is not running' };
  try {
    const { api } = await CentOpsApi.admin(state.centops.adminConfig);
    const view = await api.call<Record<string, unknown>>('GET', `/v1/nodes/${NODE_ID}/status`);
    return {
      currentRevision: view.currentRevision,
      appliedRevision: view.appliedRevision,
      policyRevision: view.policyRevision,
      inSync: view.inSync,
      refused: view.refused,
      reportedAt: view.reportedAt,
    };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
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
  if (state.broker !== null) {
    let brokerRunning = false;
    let pid = state.broker.pid;
    try {
      const broker = await brokerStatus(state.broker.dir);
      const node = broker.nodes[0];
      brokerRunning = node?.running === true && node.listening;
      pid = node?.pid ?? pid;
    } catch {
      // No readable harness state: the broker counts as stopped.
    }
    components.push({
      name: 'broker',
      running: brokerRunning,
      pid,
      endpoint: state.broker.amqpsUrl,
      log: null,
      info: { management: state.broker.managementUrl, dir: state.broker.dir },
    });
  }
  if (state.node !== null) {
    components.push({
      name: state.node.id,
      running: isAlive(state.node.process),
      pid: state.node.process?.pid ?? null,
      endpoint: null,
      log: state.node.log,
      info: { config: state.node.config, ...(await nodeStatus(state)) },
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
      info: { organisation: client.organisation, certificate: client.certificate },
    });
  }
  return {
    dir: state.dir,
    recordedStatus: state.status,
    running,
    mode: state.mode,
    startedAt: state.startedAt,
    error: state.error,
    components,
    messages: await readStats(state.statsFile),
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
  if (state.node?.process) {
    stopped.push({ name: state.node.id, result: await stopProcess(state.node.process, 20_000) });
  }
  if (state.broker !== null) {
    try {
      const broker = await brokerStatus(state.broker.dir);
      if (broker.running || broker.processes.some((process) => process.running)) {
        onProgress?.('stopping the broker the supervisor left running');
        await stopBrokers(state.broker.dir);
        stopped.push({ name: 'broker', result: 'stopped' });
      } else {
        stopped.push({ name: 'broker', result: 'not-running' });
      }
    } catch {
      stopped.push({ name: 'broker', result: 'not-running' });
    }
  }
  if (state.centops?.process) {
    stopped.push({ name: 'centops', result: await stopProcess(state.centops.process, 20_000) });
  }
  const after = await readMeshState(dir).catch(() => state);
  if (after.status !== 'stopped' && after.status !== 'failed') await writeMeshState({ ...after, status: 'stopped' });
  return { dir: state.dir, found: true, ms: Math.round(performance.now() - started), stopped };
}
