/** `<dir>/mesh.json`: what `dmr up` started, for `dmr status` and `dmr down` in other processes. */
import { readFile } from 'node:fs/promises';
import { DmrError } from '@dmr/core';
import { writeFilesAtomic } from '@dmr/pki';
import type { ProcessRef } from './processes.js';
import { meshPaths } from './paths.js';
import type { Topology } from './topology.js';

export type MeshStatus = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

/**
 * The format of mesh.json. 2: one entry per DMR node (its broker and its
 * agent) and the links, where 1 had one broker and one node.
 */
export const MESH_STATE_VERSION = 2;

/** One DMR node of the mesh: its RabbitMQ (from the shared harness) and its agent (`dmr node run`). */
export interface MeshNodeState {
  id: string;
  /** Where clients and peer nodes connect; the broker presents this node's certificate. */
  amqpsUrl: string;
  amqpsPort: number;
  /** The node's vhost on its broker (`dmr-<id>`). */
  vhost: string;
  managementUrl: string;
  /** The harness node (`mesh-broker-<n>`) and its Erlang VM's PID. */
  broker: { name: string; pid: number | null };
  /** The agent's `GET /metrics` (`dmr_…` gauges), once the agent runs. */
  metricsUrl: string | null;
  config: string;
  dataDir: string;
  /** The agent, null until it is spawned. */
  process: ProcessRef | null;
  log: string;
}

export interface MeshLinkState {
  /** CentOps' link id, `<a>--<b>`. */
  id: string;
  nodes: [string, string];
}

export interface MeshClientState {
  id: string;
  organisation: string;
  /** Its home node. */
  node: string;
  certificate: string;
  key: string;
}

export interface MeshState {
  version: typeof MESH_STATE_VERSION;
  dir: string;
  status: MeshStatus;
  mode: 'foreground' | 'detached';
  startedAt: string;
  /** The `dmr up --foreground` process that owns every other component. */
  supervisor: ProcessRef;
  /** Why the start failed (status `failed`): the error code, message and hint. */
  error: { code: string; message: string; hint?: string } | null;
  /** The start's finished steps, in order. */
  steps: Array<{ name: string; ms: number; detail: string | null }>;
  topology: Topology;
  centops: {
    dir: string;
    apiUrl: string;
    enrolUrl: string;
    adminConfig: string;
    /** CentOps' GET /metrics (plain HTTP on loopback), null when it was not served. */
    metricsUrl: string | null;
    process: ProcessRef | null;
    log: string;
  } | null;
  /** The broker harness that runs every node's RabbitMQ. */
  broker: { dir: string } | null;
  nodes: MeshNodeState[];
  links: MeshLinkState[];
  clients: MeshClientState[];
  statsFile: string;
  /** The mesh's Prometheus (`dmr up --observability`); absent or null without it. */
  prometheus?: MeshPrometheusState | null;
  /** The mesh's Jaeger all-in-one (`dmr up --observability`, when installed); absent or null without it. */
  jaeger?: MeshJaegerState | null;
}

export interface MeshJaegerState {
  /** Its UI and query API (`/trace/<id>`, `/api/traces/<id>`). */
  url: string;
  /** The OTLP/HTTP base every process exports to (OTEL_EXPORTER_OTLP_ENDPOINT). */
  otlpUrl: string;
  process: ProcessRef | null;
  log: string;
}

export interface MeshPrometheusState {
  /** Its web UI and HTTP API. */
  url: string;
  /** Configuration, rules, target files and data (`<mesh>/prometheus`). */
  dir: string;
  process: ProcessRef | null;
  log: string;
}

/** What the demo counts, for the whole mesh and for each path. */
export interface RoundTripCounters {
  sent: number;
  roundTrips: number;
  refused: number;
  lastLatencyMs: number | null;
  /** Median of the last 100 round trips. */
  medianLatencyMs: number | null;
  lastRefusal: string | null;
}

export function zeroRoundTrips(): RoundTripCounters {
  return { sent: 0, roundTrips: 0, refused: 0, lastLatencyMs: null, medianLatencyMs: null, lastRefusal: null };
}

/** One demo path: a client asking another one, maybe on another node. */
export interface PathStats extends RoundTripCounters {
  from: { client: string; node: string };
  to: { client: string; node: string };
}

export interface DemoStats extends RoundTripCounters {
  paths: PathStats[];
  updatedAt: string;
}

export async function writeMeshState(state: MeshState): Promise<void> {
  await writeFilesAtomic([
    { path: meshPaths(state.dir).stateFile, data: `${JSON.stringify(state, null, 2)}\n`, mode: 0o600, overwrite: true },
  ]);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export async function readMeshState(dir: string): Promise<MeshState> {
  const file = meshPaths(dir).stateFile;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new DmrError('NOT_FOUND', `no local mesh in ${meshPaths(dir).dir} (${file} is missing)`, {
      details: { file },
      hint: `start one with: dmr up --dir ${dir}`,
      cause: error,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new DmrError('INVALID_ARGUMENT', `${file} is not JSON`, { hint: `remove ${file}`, cause: error });
  }
  if (!isRecord(parsed) || parsed.version !== MESH_STATE_VERSION || !Array.isArray(parsed.nodes)) {
    const version = isRecord(parsed) ? String(parsed.version) : 'none';
    throw new DmrError(
      'INVALID_ARGUMENT',
      `${file} has another format (version ${version}, this dmr writes ${MESH_STATE_VERSION})`,
      {
        details: { file, version },
        hint: `a mesh started by another version of dmr: stop it with that version, or remove ${meshPaths(dir).dir}`,
      },
    );
  }
  return parsed as unknown as MeshState;
}

/**
 * The supervisor a mesh.json of any format names, so that `dmr up` can tell
 * a live mesh from an old file it may overwrite.
 */
export async function recordedSupervisor(dir: string): Promise<ProcessRef | undefined> {
  try {
    const parsed: unknown = JSON.parse(await readFile(meshPaths(dir).stateFile, 'utf8'));
    const supervisor = isRecord(parsed) ? parsed.supervisor : undefined;
    if (isRecord(supervisor) && typeof supervisor.pid === 'number' && typeof supervisor.startTicks === 'number') {
      return { pid: supervisor.pid, startTicks: supervisor.startTicks };
    }
  } catch {
    // No file, or not one of ours: nothing recorded.
  }
  return undefined;
}

export async function readStats(file: string): Promise<DemoStats | null> {
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'));
    return isRecord(parsed) && Array.isArray(parsed.paths) ? (parsed as unknown as DemoStats) : null;
  } catch {
    return null;
  }
}
