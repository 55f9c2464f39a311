/**
 * DIR/harness.json: what was started and where, so that `stop`, `status`,
 * `crl` and the orphan watchdog work from another process. It is rewritten
 * (atomically) whenever a PID becomes known, so a crash at any moment leaves
 * a file that names every process to clean up.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { DmrError } from '@dmr/core';
import type { BrokerTlsFiles } from '@dmr/broker';
import { harnessPaths, STATE_FILE_NAME, type NodePaths } from './layout.js';
import type { NodePorts } from './ports.js';
import type { ProcessRef } from './processes.js';

export const STATE_VERSION = 1;

export type HarnessStatus = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';
export type Lifetime = 'process' | 'detached';

export interface NodeState {
  /** Short name, also the id of the node's server certificate (e.g. `dmr-broker-1`). */
  name: string;
  /** Erlang node name, `<name>@localhost`. */
  nodename: string;
  ports: NodePorts;
  paths: NodePaths;
  /** The server script, leader of the node's process group. */
  shell: ProcessRef | null;
  /** beam.smp, from RABBITMQ_PID_FILE. */
  beam: ProcessRef | null;
  bootMs: number | null;
  certificate: { serial: string; notAfter: string; fingerprintSha256: string };
  /** Absent in state files written before hot swap existed; nodeView() derives it then. */
  tls?: BrokerTlsFiles;
}

export interface HarnessState {
  version: typeof STATE_VERSION;
  dir: string;
  status: HarnessStatus;
  lifetime: Lifetime;
  /** The process that started the nodes; the watchdog cleans up when it disappears. */
  owner: ProcessRef;
  startedAt: string;
  updatedAt: string;
  rabbitmq: { version: string; sbinDir: string };
  trustDomain: string | null;
  epmd: { port: number; process: ProcessRef | null };
  watchdog: ProcessRef | null;
  admin: { username: string; passwordFile: string };
  trustBundleFile: string;
  crl: { dir: string; file: string | null; nextUpdate: string | null };
  nodes: NodeState[];
  error: string | null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isProcessRefOrNull(value: unknown): value is ProcessRef | null {
  return value === null || (isRecord(value) && Number.isInteger(value.pid) && Number.isInteger(value.startTicks));
}

function hasNumbers(value: unknown, keys: readonly string[]): boolean {
  return isRecord(value) && keys.every((key) => Number.isInteger(value[key]));
}

function hasStrings(value: unknown, keys: readonly string[]): boolean {
  return isRecord(value) && keys.every((key) => typeof value[key] === 'string');
}

const PORT_KEYS = ['amqps', 'management', 'prometheus', 'dist', 'ctlDistMin', 'ctlDistMax'] as const;
const NODE_PATH_KEYS = [
  'root',
  'configFile',
  'advancedConfigFile',
  'enabledPluginsFile',
  'certificateFile',
  'keyFile',
  'mnesiaBase',
  'logBase',
  'logFile',
  'consoleLog',
  'pidFile',
] as const;

function isNodeState(value: unknown): value is NodeState {
  return (
    isRecord(value) &&
    typeof value.name === 'string' &&
    typeof value.nodename === 'string' &&
    hasNumbers(value.ports, PORT_KEYS) &&
    hasStrings(value.paths, NODE_PATH_KEYS) &&
    isProcessRefOrNull(value.shell) &&
    isProcessRefOrNull(value.beam) &&
    (value.bootMs === null || typeof value.bootMs === 'number') &&
    hasStrings(value.certificate, ['serial', 'notAfter', 'fingerprintSha256']) &&
    (value.tls === undefined || hasStrings(value.tls, ['certFile', 'keyFile', 'caFile', 'crlDir']))
  );
}

/** Checks the shape of a parsed state file; the harness never trusts JSON it did not just write. */
export function isHarnessState(value: unknown): value is HarnessState {
  if (!isRecord(value) || value.version !== STATE_VERSION) return false;
  const { epmd, crl, admin, rabbitmq } = value;
  return (
    typeof value.dir === 'string' &&
    ['starting', 'running', 'stopping', 'stopped', 'failed'].includes(value.status as string) &&
    (value.lifetime === 'process' || value.lifetime === 'detached') &&
    isProcessRefOrNull(value.owner) &&
    value.owner !== null &&
    typeof value.startedAt === 'string' &&
    hasStrings(rabbitmq, ['version', 'sbinDir']) &&
    (value.trustDomain === null || typeof value.trustDomain === 'string') &&
    isRecord(epmd) &&
    Number.isInteger(epmd.port) &&
    isProcessRefOrNull(epmd.process) &&
    isProcessRefOrNull(value.watchdog) &&
    hasStrings(admin, ['username', 'passwordFile']) &&
    typeof value.trustBundleFile === 'string' &&
    isRecord(crl) &&
    typeof crl.dir === 'string' &&
    Array.isArray(value.nodes) &&
    value.nodes.every(isNodeState)
  );
}

function notAHarness(dir: string, reason: string): DmrError {
  return new DmrError('NOT_FOUND', `${dir} is not a broker harness directory (${reason})`, {
    hint: `start brokers there first: dmr broker start --dir ${dir} --pki <PKIDIR>`,
    details: { dir },
  });
}

function parseState(dir: string, text: string): HarnessState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw notAHarness(dir, `${STATE_FILE_NAME} is not JSON`);
  }
  if (!isHarnessState(parsed)) throw notAHarness(dir, `${STATE_FILE_NAME} has an unknown shape or version`);
  return parsed;
}

export async function readState(dir: string): Promise<HarnessState> {
  let text: string;
  try {
    text = await readFile(harnessPaths(dir).stateFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw notAHarness(dir, `no ${STATE_FILE_NAME}`);
    throw error;
  }
  return parseState(dir, text);
}

export function readStateSync(dir: string): HarnessState {
  let text: string;
  try {
    text = readFileSync(harnessPaths(dir).stateFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw notAHarness(dir, `no ${STATE_FILE_NAME}`);
    throw error;
  }
  return parseState(dir, text);
}

function temporaryPath(file: string): string {
  return `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

function serialise(state: HarnessState): string {
  return `${JSON.stringify({ ...state, updatedAt: new Date().toISOString() }, null, 2)}\n`;
}

export async function writeState(state: HarnessState): Promise<void> {
  const file = harnessPaths(state.dir).stateFile;
  const temporary = temporaryPath(file);
  await writeFile(temporary, serialise(state), { mode: 0o600 });
  await rename(temporary, file);
}

/** For exit hooks, where nothing asynchronous runs any more. */
export function writeStateSync(state: HarnessState): void {
  const file = harnessPaths(state.dir).stateFile;
  const temporary = temporaryPath(file);
  writeFileSync(temporary, serialise(state), { mode: 0o600 });
  renameSync(temporary, file);
}
