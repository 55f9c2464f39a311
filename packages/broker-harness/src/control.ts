/**
 * Operations on a harness directory from any process: status, stop, CRL
 * installation and management access, all driven by harness.json.
 */
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  installBrokerTls,
  installCrlFile,
  LOOPBACK,
  ManagementClient,
  parseCrl,
  rabbitmqctl,
  type CtlResult,
  type InstalledCrl,
} from '@dmr/broker';
import { nodeView, type BrokerNode } from './node-view.js';
import { nodeTlsFiles } from './layout.js';
import { envForNode } from './node.js';
import { isRunning } from './processes.js';
import {
  readState,
  writeState,
  type HarnessState,
  type HarnessStatus,
  type Lifetime,
  type NodeState,
} from './state.js';
import { harnessProcesses, stopFromState, type StopReport } from './teardown.js';
import { DmrError } from '@dmr/core';

export interface NodeStatus extends BrokerNode {
  /** beam.smp recorded at start is still alive. */
  running: boolean;
  /** The AMQPS port accepts TCP connections. */
  listening: boolean;
}

export interface BrokerStatus {
  dir: string;
  /** What the harness last recorded; `running` below is what is true now. */
  recordedStatus: HarnessStatus;
  running: boolean;
  lifetime: Lifetime;
  startedAt: string;
  rabbitmqVersion: string;
  trustDomain: string | null;
  nodes: NodeStatus[];
  epmd: { port: number; running: boolean };
  watchdogRunning: boolean;
  crl: { file: string | null; nextUpdate: string | null; expired: boolean; revokedCount: number | null };
  processes: Array<{ role: string; pid: number; running: boolean }>;
  error: string | null;
}

function acceptsTcp(port: number, timeoutMs = 300): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = connect({ host: LOOPBACK, port });
    const done = (result: boolean): void => {
      socket.destroy();
      resolvePromise(result);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export async function brokerStatus(dir: string): Promise<BrokerStatus> {
  const state = await readState(resolve(dir));
  const nodes = await Promise.all(
    state.nodes.map(async (node): Promise<NodeStatus> => {
      const running = isRunning(node.beam);
      return { ...nodeView(node, state.dir), running, listening: running && (await acceptsTcp(node.ports.amqps)) };
    }),
  );
  let revokedCount: number | null = null;
  let expired = false;
  if (state.crl.file) {
    try {
      const info = parseCrl(await readFile(state.crl.file, 'utf8'));
      revokedCount = info.revokedCount;
      expired = info.nextUpdate !== undefined && info.nextUpdate.getTime() <= Date.now();
    } catch {
      // Reported as unknown; `dmr broker crl` replaces it.
    }
  }
  return {
    dir: state.dir,
    recordedStatus: state.status,
    running: nodes.some((node) => node.running),
    lifetime: state.lifetime,
    startedAt: state.startedAt,
    rabbitmqVersion: state.rabbitmq.version,
    trustDomain: state.trustDomain,
    nodes,
    epmd: { port: state.epmd.port, running: isRunning(state.epmd.process) },
    watchdogRunning: isRunning(state.watchdog),
    crl: { file: state.crl.file, nextUpdate: state.crl.nextUpdate, expired, revokedCount },
    processes: harnessProcesses(state),
    error: state.error,
  };
}

/** Stops the nodes of a harness directory, whichever process started them. */
export async function stopBrokers(dir: string): Promise<StopReport> {
  return stopFromState(await readState(resolve(dir)));
}

/** Installs a CRL into a harness directory (e.g. `dmr broker crl` after `dmr pki revoke`). */
export async function installCrlInDir(dir: string, pem: string): Promise<InstalledCrl> {
  const state = await readState(resolve(dir));
  const installed = await installCrlFile(state.crl.dir, pem);
  await writeState({
    ...state,
    crl: { dir: state.crl.dir, file: installed.path, nextUpdate: installed.nextUpdate?.toISOString() ?? null },
  });
  return installed;
}

/** A management client for node `index` of a harness directory (reads the admin password file). */
export async function managementFor(dir: string, index = 0): Promise<ManagementClient> {
  const state = await readState(resolve(dir));
  const node = state.nodes[index];
  if (!node) throw new DmrError('INVALID_ARGUMENT', `the harness in ${dir} has no node ${index}`);
  const password = (await readFile(state.admin.passwordFile, 'utf8')).trim();
  return new ManagementClient({
    baseUrl: nodeView(node, state.dir).managementUrl,
    username: state.admin.username,
    password,
  });
}

export type RabbitmqctlRunner = (args: readonly string[], timeoutMs?: number) => Promise<CtlResult>;

function ctlRunner(state: HarnessState, node: NodeState): RabbitmqctlRunner {
  const ctl = join(state.rabbitmq.sbinDir, 'rabbitmqctl');
  return (args, timeoutMs) => rabbitmqctl(ctl, envForNode(state, node), node.nodename, args, timeoutMs);
}

/**
 * `rabbitmqctl -n <node> ...` for node `node` (index or name) of a harness
 * directory, from any process: the CLI needs the harness's HOME (cookie),
 * epmd port and CLI distribution ports, which come from harness.json.
 */
export async function rabbitmqctlFor(dir: string, node: number | string = 0): Promise<RabbitmqctlRunner> {
  const state = await readState(resolve(dir));
  const found = typeof node === 'number' ? state.nodes[node] : state.nodes.find((entry) => entry.name === node);
  if (!found) throw new DmrError('INVALID_ARGUMENT', `the harness in ${dir} has no node ${node}`);
  return ctlRunner(state, found);
}

/**
 * `ssl:clear_pem_cache()` on every running node of a harness directory: the
 * nodes re-read their trust bundle for the next handshake (see installBrokerTls).
 */
export async function clearPemCacheInDir(dir: string): Promise<void> {
  const state = await readState(resolve(dir));
  await Promise.all(
    state.nodes
      .filter((node) => isRunning(node.beam))
      .map(async (node) => {
        // rabbitmqctl boots an Erlang VM of its own: with test files side by side on 2 cores that alone
        // took over 30 s, so this gets the same cap as every other rabbitmqctl call.
        const { stdout } = await ctlRunner(state, node)(['eval', 'ssl:clear_pem_cache().']);
        if (stdout.trim() !== 'ok') {
          throw new DmrError(
            'BROKER_COMMAND_FAILED',
            `ssl:clear_pem_cache() on ${node.nodename} said: ${stdout.trim()}`,
            {
              details: { node: node.nodename },
            },
          );
        }
      }),
  );
}

const CLEAR_PEM_CACHE_MAIN = fileURLToPath(new URL('./clear-pem-cache-main.js', import.meta.url));

/**
 * An argv that runs clearPemCacheInDir(dir) in a process of its own: what a
 * node agent's `broker.tls.reloadCommand` is set to when its broker is a
 * harness node, so the production agent carries no harness code.
 */
export function pemCacheReloadCommand(dir: string): string[] {
  return [process.execPath, CLEAR_PEM_CACHE_MAIN, resolve(dir)];
}

/** Replaces the trust bundle of every node of a harness directory and makes them use it (e.g. a CA rollover). */
export async function installTrustBundleInDir(dir: string, pem: string): Promise<{ certificates: number }> {
  const state = await readState(resolve(dir));
  const [first] = state.nodes;
  if (!first) throw new DmrError('INVALID_ARGUMENT', `the harness in ${dir} has no nodes`);
  const { trustBundle } = await installBrokerTls({
    tls: first.tls ?? nodeTlsFiles(state.dir, first.paths),
    trustBundlePem: pem,
    reload: () => clearPemCacheInDir(state.dir),
  });
  if (!trustBundle) throw new DmrError('INTERNAL', 'installBrokerTls returned no trust bundle');
  return trustBundle;
}
