/**
 * The relay of row b and the router of rows c/d run in child processes, so
 * the load generator never shares an event loop with the thing it measures.
 * Protocol over the IPC channel:
 *   parent → child  { type: 'start', config }, { type: 'command', id, command }, { type: 'stop' }
 *   child → parent  { type: 'ready', info } | { type: 'failed', message }
 *                   { type: 'result', id, info } | { type: 'result', id, error }
 *                   { type: 'stopped', info }
 * A child whose parent goes away exits on its own (IPC 'disconnect').
 */
import { fork, type ChildProcess } from 'node:child_process';
import { DmrError } from '@dmr/core';

export type ChildInfo = Record<string, unknown>;

type ToParent =
  | { type: 'ready'; info: ChildInfo }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; info?: ChildInfo; error?: string }
  | { type: 'stopped'; info: ChildInfo };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function toParent(value: unknown): ToParent | undefined {
  if (!isRecord(value)) return undefined;
  if ((value.type === 'ready' || value.type === 'stopped') && isRecord(value.info)) {
    return { type: value.type, info: value.info };
  }
  if (value.type === 'failed' && typeof value.message === 'string') return { type: 'failed', message: value.message };
  if (value.type === 'result' && typeof value.id === 'number') {
    return {
      type: 'result',
      id: value.id,
      ...(isRecord(value.info) ? { info: value.info } : {}),
      ...(typeof value.error === 'string' ? { error: value.error } : {}),
    };
  }
  return undefined;
}

export interface ChildHandle {
  readonly pid: number;
  readonly info: ChildInfo;
  /** Runs a command in the child (its `command` handler) and resolves with its answer. */
  command(command: unknown): Promise<ChildInfo>;
  /** Asks the child to stop cleanly; kills it (by its own PID) if it does not exit in `timeoutMs`. */
  stop(timeoutMs?: number): Promise<ChildInfo | undefined>;
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** Forks `script` (a compiled *-main.js), sends it `config` and resolves once it reports ready. */
export async function startChild(script: URL, name: string, config: unknown, timeoutMs = 60_000): Promise<ChildHandle> {
  // The child's stdout goes to our stderr: stdout carries only the table. DMR_BENCH_CPU_PROF=DIR writes a V8
  // CPU profile of every router/relay child there (NODE_OPTIONS may not carry --cpu-prof).
  const profileDir = process.env.DMR_BENCH_CPU_PROF;
  const child = fork(script, [], {
    execArgv: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
    stdio: ['ignore', 2, 2, 'ipc'],
    serialization: 'advanced',
  });
  const pid = child.pid;
  if (pid === undefined) throw new DmrError('INTERNAL', `could not start the ${name} process`);
  const exited = exitOf(child);
  let stoppedInfo: ChildInfo | undefined;
  const pending = new Map<number, { resolve: (info: ChildInfo) => void; reject: (error: Error) => void }>();
  let nextId = 1;
  child.once('exit', (code, signal) => {
    for (const { reject } of pending.values()) {
      reject(new DmrError('INTERNAL', `the ${name} process exited (${signal ?? code})`));
    }
    pending.clear();
  });
  const ready = new Promise<ChildInfo>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new DmrError('INTERNAL', `the ${name} process was not ready after ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.on('message', (raw: unknown) => {
      const message = toParent(raw);
      if (message?.type === 'ready') {
        clearTimeout(timer);
        resolve(message.info);
      } else if (message?.type === 'failed') {
        clearTimeout(timer);
        reject(new DmrError('INTERNAL', `the ${name} process failed: ${message.message}`));
      } else if (message?.type === 'result') {
        const waiter = pending.get(message.id);
        pending.delete(message.id);
        if (message.error !== undefined) waiter?.reject(new DmrError('INTERNAL', `${name}: ${message.error}`));
        else waiter?.resolve(message.info ?? {});
      } else if (message?.type === 'stopped') stoppedInfo = message.info;
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new DmrError('INTERNAL', `the ${name} process exited (${signal ?? code}) before it was ready`));
    });
  });
  let info: ChildInfo;
  try {
    child.send({ type: 'start', config });
    info = await ready;
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
  return {
    pid,
    info,
    command(command: unknown) {
      return new Promise<ChildInfo>((resolve, reject) => {
        if (!child.connected) {
          reject(new DmrError('INTERNAL', `the ${name} process is gone`));
          return;
        }
        const id = nextId++;
        pending.set(id, { resolve, reject });
        child.send({ type: 'command', id, command });
      });
    },
    async stop(stopTimeoutMs = 15_000) {
      if (child.connected) child.send({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
      await exited;
      clearTimeout(timer);
      return stoppedInfo;
    },
  };
}

export interface StartedChild {
  info: ChildInfo;
  stop: () => Promise<ChildInfo>;
  command?: (command: unknown) => Promise<ChildInfo>;
}

/**
 * The child's side: waits for the start message, runs `start(config)` and
 * reports ready with what it returns; answers commands with its `command`
 * handler; on 'stop' (or a lost parent) runs its stop function and exits.
 */
export function serveChild(start: (config: unknown) => Promise<StartedChild>): void {
  const send = (message: ToParent): void => {
    if (process.connected) process.send?.(message);
  };
  let started: StartedChild | undefined;
  let stopping = false;
  const finish = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    let info: ChildInfo = {};
    try {
      if (started !== undefined) info = await started.stop();
    } catch (error) {
      info = { stopError: messageOf(error) };
    }
    send({ type: 'stopped', info });
    process.disconnect?.();
    process.exit(0);
  };
  let starting = false;
  process.on('message', (raw: unknown) => {
    if (!isRecord(raw)) return;
    if (raw.type === 'start' && !starting) {
      starting = true;
      start(raw.config).then(
        (result) => {
          started = result;
          send({ type: 'ready', info: result.info });
        },
        (error: unknown) => {
          send({ type: 'failed', message: messageOf(error) });
          process.exit(1);
        },
      );
    } else if (raw.type === 'command' && typeof raw.id === 'number') {
      const id = raw.id;
      const handler = started?.command;
      if (handler === undefined) {
        send({ type: 'result', id, error: 'this process takes no commands (or has not started)' });
        return;
      }
      handler(raw.command).then(
        (info) => send({ type: 'result', id, info }),
        (error: unknown) => send({ type: 'result', id, error: messageOf(error) }),
      );
    } else if (raw.type === 'stop') void finish();
  });
  process.on('disconnect', () => void finish());
}
