/** `<dir>/mesh.json`: what `dmr up` started, for `dmr status` and `dmr down` in other processes. */
import { readFile } from 'node:fs/promises';
import { DmrError } from '@dmr/core';
import { writeFilesAtomic } from '@dmr/pki';
import type { ProcessRef } from './processes.js';
import { meshPaths } from './paths.js';

export type MeshStatus = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface MeshState {
  version: 1;
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
  centops: {
    dir: string;
    apiUrl: string;
    enrolUrl: string;
    adminConfig: string;
    process: ProcessRef | null;
    log: string;
  } | null;
  broker: {
    dir: string;
    amqpsUrl: string;
    amqpsPort: number;
    managementUrl: string;
    pid: number | null;
  } | null;
  node: {
    id: string;
    config: string;
    dataDir: string;
    process: ProcessRef | null;
    log: string;
  } | null;
  clients: Array<{ id: string; organisation: string; certificate: string; key: string }>;
  statsFile: string;
}

export interface DemoStats {
  sent: number;
  roundTrips: number;
  refused: number;
  lastLatencyMs: number | null;
  /** Median of the last 100 round trips. */
  medianLatencyMs: number | null;
  lastRefusal: string | null;
  updatedAt: string;
}

export async function writeMeshState(state: MeshState): Promise<void> {
  await writeFilesAtomic([
    { path: meshPaths(state.dir).stateFile, data: `${JSON.stringify(state, null, 2)}\n`, mode: 0o600, overwrite: true },
  ]);
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
  const state = JSON.parse(text) as MeshState;
  if (state.version !== 1) {
    throw new DmrError('INVALID_ARGUMENT', `${file} has an unknown format (version ${String(state.version)})`);
  }
  return state;
}

export async function readStats(file: string): Promise<DemoStats | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as DemoStats;
  } catch {
    return null;
  }
}
