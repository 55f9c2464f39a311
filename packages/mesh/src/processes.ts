/**
 * Child processes of the mesh, named by PID plus the kernel's start time:
 * a PID read back from mesh.json may belong to an unrelated process by then
 * (PIDs are reused), so nothing is signalled unless the start time still
 * matches. Nothing is ever found or killed by name. Linux only (/proc), like
 * the Debian RabbitMQ the harness runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRunning as isAlive, processRef, signalProcess as signal, type ProcessRef } from '@dmr/broker-harness';

/** Process identity and signalling by PID + start time: one implementation, the broker harness's. */
export { isRunning as isAlive, processRef, signalProcess as signal, type ProcessRef } from '@dmr/broker-harness';

/**
 * Signals the process group a child leads (children are spawned in their own
 * group, so the node's router processes go with it). Only while the leader
 * is still the process we started: a stale group id is never signalled.
 */
export function signalGroup(ref: ProcessRef | null | undefined, name: NodeJS.Signals): boolean {
  if (!isAlive(ref) || !ref) return false;
  try {
    process.kill(-ref.pid, name);
    return true;
  } catch {
    return signal(ref, name);
  }
}

/** Waits until the process is gone; false if it outlived the timeout. */
export async function waitGone(ref: ProcessRef | null | undefined, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(ref)) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/** SIGTERM, then SIGKILL after `graceMs`. Returns how it ended. */
export async function stopProcess(
  ref: ProcessRef | null | undefined,
  graceMs: number,
): Promise<'not-running' | 'stopped' | 'killed'> {
  if (!signal(ref, 'SIGTERM')) return 'not-running';
  if (await waitGone(ref, graceMs)) return 'stopped';
  signalGroup(ref, 'SIGKILL');
  await waitGone(ref, 5_000);
  return 'killed';
}

export interface LoggedChild {
  child: ChildProcess;
  ref: ProcessRef;
  /** Resolves when the process ends, with its code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns a program with stdout and stderr appended to a log file (the
 * component's own JSON logs stay out of the progress display) and stdin
 * closed, by default in a process group of its own: a Ctrl-C on the
 * terminal then reaches only the supervisor, which stops the components in
 * order instead of all of them racing to exit at once.
 */
export function spawnLogged(
  command: string,
  args: readonly string[],
  options: { logFile: string; cwd?: string; env?: NodeJS.ProcessEnv; detached?: boolean },
): LoggedChild {
  const log = openSync(options.logFile, 'a', 0o600);
  try {
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', log, log],
      detached: options.detached ?? true,
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, sig) => resolve({ code, signal: sig }));
      child.once('error', () => resolve({ code: null, signal: null }));
    });
    const ref = processRef(child.pid) ?? { pid: child.pid ?? -1, startTicks: -1 };
    return { child, ref, exited };
  } finally {
    closeSync(log);
  }
}

/** The last lines of a log, for an error that says what went wrong without making the user open the file. */
export function tailOf(file: string, lines = 8): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '';
  }
}
