/**
 * One RabbitMQ node's life: launch the server script, wait until it is ready
 * for TLS clients, stop it cleanly with SIGTERM.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { DmrError } from '@dmr/core';
import { epmdNames } from './epmd.js';
import { harnessPaths } from './layout.js';
import { nodeEnvironment } from './node-config.js';
import { isRunning, processRef, signalGroup, signalProcess, waitForExit, type ProcessRef } from './processes.js';
import { probeTls, type TlsProbeOptions, type TlsProbeResult } from '@dmr/broker';
import type { HarnessState, NodeState } from './state.js';

export interface NodeExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LaunchedNode {
  shell: ProcessRef;
  /** Settles when the server script exits, for whatever reason. */
  exited: Promise<NodeExit>;
  hasExited(): boolean;
}

export function envForNode(state: Pick<HarnessState, 'dir' | 'epmd'>, node: NodeState): Record<string, string> {
  return nodeEnvironment({
    harness: harnessPaths(state.dir),
    paths: node.paths,
    nodename: node.nodename,
    ports: node.ports,
    epmdPort: state.epmd.port,
    path: process.env.PATH,
  });
}

export function launchNode(serverScript: string, env: Record<string, string>, node: NodeState): LaunchedNode {
  const log = openSync(node.paths.consoleLog, 'a');
  let done = false;
  let child;
  try {
    child = spawn(serverScript, [], {
      // setsid: the script, beam.smp and its port programs get a process group
      // of their own, so a forced stop can take all of them and a terminal's
      // Ctrl-C reaches only the harness, which then stops them in order.
      detached: true,
      stdio: ['ignore', log, log],
      env,
    });
  } finally {
    closeSync(log);
  }
  child.unref();
  const exited = new Promise<NodeExit>((resolve) => {
    child.on('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
    child.on('error', () => {
      done = true;
      resolve({ code: null, signal: null });
    });
  });
  const shell = processRef(child.pid);
  if (!shell) {
    throw new DmrError('BROKER_START_FAILED', `could not start ${serverScript} for ${node.nodename}`, {
      details: { node: node.nodename },
    });
  }
  return { shell, exited, hasExited: () => done };
}

export async function logTail(node: NodeState, lines = 30): Promise<string> {
  const parts: string[] = [];
  for (const [label, file] of [
    ['console', node.paths.consoleLog],
    ['log', node.paths.logFile],
  ] as const) {
    try {
      const text = (await readFile(file, 'utf8')).trimEnd();
      if (text.length > 0) parts.push(`--- ${label} (${file}) ---\n${text.split('\n').slice(-lines).join('\n')}`);
    } catch {
      // Not written yet: the node died before logging started.
    }
  }
  return parts.join('\n');
}

/** Turns what the log says into the most useful hint. */
export function hintFromLog(tail: string, node: NodeState): string {
  if (/eaddrinuse/i.test(tail)) {
    return `a port of ${node.nodename} was taken after the harness picked it (another process bound it meanwhile); start again to get new ports`;
  }
  if (/no_cert|keyfile|certfile|cacertfile|enoent/i.test(tail)) {
    return `the TLS files of ${node.nodename} could not be used; check ${node.paths.root}/tls and the CA`;
  }
  return `see ${node.paths.logFile} and ${node.paths.consoleLog}`;
}

async function startFailure(node: NodeState, what: string, cause?: unknown): Promise<DmrError> {
  const tail = await logTail(node);
  return new DmrError('BROKER_START_FAILED', `${node.nodename} ${what}${tail ? `\n${tail}` : ''}`, {
    hint: hintFromLog(tail, node),
    details: { node: node.nodename, logFile: node.paths.logFile, consoleLog: node.paths.consoleLog },
    cause,
  });
}

async function readPidFile(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(file, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export interface ReadyNode {
  beam: ProcessRef;
  bootMs: number;
  probe: TlsProbeResult;
}

export interface AwaitReadyOptions {
  epmdPort: number;
  node: NodeState;
  launched: LaunchedNode;
  startedAt: number;
  timeoutMs: number;
  probe: TlsProbeOptions;
  /** Set when the caller gave up on this boot (another node failed). */
  signal?: AbortSignal;
  onPhase?: (message: string) => void;
  /** How long a listener that accepts connections may keep failing the handshake before the boot fails (5 s). */
  handshakeGraceMs?: number;
}

/**
 * Ready = registered with epmd, and a client completed a mutual-TLS
 * handshake and got AMQP's connection.start. RabbitMQ 3.10 opens its client
 * listeners last (`rabbit:do_run_postlaunch_phase`: plugins, definitions,
 * then `rabbit_networking:boot()`, then only the "startup complete" log line
 * and the boot state `ready`), so a listener that answers means every
 * plugin and the definitions are up. `rabbitmqctl await_startup` said no
 * more than that and cost a CLI Erlang VM per boot, about 1.1 s of CPU
 * (docs/decisions/0038-ci-time.md); it also succeeds when the listener
 * failed, which is why the handshake was always the last word.
 */
export async function awaitNodeReady(options: AwaitReadyOptions): Promise<ReadyNode> {
  const { node, launched } = options;
  const deadline = options.startedAt + options.timeoutMs;
  const shortName = node.nodename.split('@')[0];
  const checkAlive = async (): Promise<void> => {
    if (options.signal?.aborted) throw await startFailure(node, 'boot abandoned because another node failed');
    if (launched.hasExited()) {
      const exit = await launched.exited;
      throw await startFailure(node, `exited during boot (${exit.signal ?? `code ${exit.code}`})`);
    }
    if (Date.now() > deadline) throw await startFailure(node, `was not ready after ${options.timeoutMs} ms`);
  };

  options.onPhase?.('waiting for the Erlang node to register');
  for (;;) {
    await checkAlive();
    const names = await epmdNames(options.epmdPort).catch(() => []);
    if (names.some((entry) => entry.name === shortName)) break;
    await sleep(100);
  }

  options.onPhase?.('waiting for RabbitMQ to finish booting (a client handshake on its TLS listener)');
  let probe: TlsProbeResult;
  // Refused: the listener is not open yet, the boot goes on. Anything else: it is open and the handshake failed,
  // which a short retry covers (a slow accept loop) before it counts as a broken listener.
  let failingSince: number | undefined;
  for (;;) {
    probe = await probeTls(options.probe);
    if (probe.ok) break;
    await checkAlive();
    if (probe.code !== 'ECONNREFUSED') {
      failingSince ??= Date.now();
      if (Date.now() - failingSince > (options.handshakeGraceMs ?? 5000)) {
        throw await startFailure(
          node,
          `booted but its TLS listener on 127.0.0.1:${node.ports.amqps} refused a client handshake (${probe.code ?? 'error'}: ${probe.message ?? ''})`,
        );
      }
    }
    await sleep(200);
  }

  const beamPid = await readPidFile(node.paths.pidFile);
  const beam = processRef(beamPid);
  if (!beam) throw await startFailure(node, `booted but its pid file ${node.paths.pidFile} names no running process`);
  return { beam, bootMs: Date.now() - options.startedAt, probe };
}

export interface NodeStopReport {
  name: string;
  /** False when RabbitMQ did not shut down by itself (CLI stop, else SIGTERM) and was killed. */
  graceful: boolean;
  wasRunning: boolean;
  ms: number;
  error?: string;
}

/**
 * SIGTERM to the VM, then wait for it to exit: Erlang's own SIGTERM handler
 * (RabbitMQ 3.10 leaves it in place) runs `init:stop()`, the same orderly
 * shutdown of every application that `rabbitmqctl stop` ends in, without the
 * CLI's own Erlang VM (about 1.2 s of CPU per stop, measured with one node:
 * 12.1–13.1 s of CPU from spawn to stopped instead of 14.4–16.1 s,
 * docs/decisions/0038-ci-time.md). SIGKILL of the process group only last.
 */
export async function stopNode(node: NodeState, timeoutMs = 60_000): Promise<NodeStopReport> {
  const started = Date.now();
  const refs = [node.beam, node.shell];
  if (!refs.some(isRunning)) return { name: node.name, graceful: true, wasRunning: false, ms: 0 };
  let error: string | undefined;
  if (isRunning(node.beam)) {
    signalProcess(node.beam, 'SIGTERM');
    if (!(await waitForExit([node.beam], timeoutMs))) error = `still running ${timeoutMs} ms after SIGTERM`;
  }
  // The server script and port programs follow the VM within moments.
  let graceful = error === undefined && (await waitForExit(refs, 10_000));
  if (refs.some(isRunning)) {
    signalGroup(node.shell, [node.beam], 'SIGKILL');
    signalProcess(node.beam, 'SIGKILL');
    await waitForExit(refs, 5000);
    graceful = false;
  }
  return { name: node.name, graceful, wasRunning: true, ms: Date.now() - started, ...(error ? { error } : {}) };
}

/** SIGKILL of the node's process group, as a crash: no shutdown, clients' connections just break. */
export async function killNode(node: NodeState): Promise<NodeStopReport> {
  const started = Date.now();
  const refs = [node.beam, node.shell];
  const wasRunning = refs.some(isRunning);
  killNodeSync(node);
  if (!(await waitForExit(refs, 10_000))) {
    throw new DmrError('INTERNAL', `${node.name} still runs after SIGKILL`, { details: { node: node.nodename } });
  }
  return { name: node.name, graceful: false, wasRunning, ms: Date.now() - started };
}

/** Immediate and synchronous, for exit hooks and the watchdog. */
export function killNodeSync(node: NodeState): void {
  signalGroup(node.shell, [node.beam], 'SIGKILL');
  signalProcess(node.beam, 'SIGKILL');
}
