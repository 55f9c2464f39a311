/**
 * Runs the router child processes of `dmr node run`: one per shard, each
 * restarted with back-off when it exits unexpectedly (a crash must not take
 * the node down for good, and a crash loop must not spin), stopped with
 * SIGTERM (then SIGKILL after a grace period) when the node stops.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { Backoff } from './backoff.js';

/** The compiled router entry beside this file. */
export const ROUTER_ENTRY = fileURLToPath(new URL('./router-main.js', import.meta.url));

export interface SupervisorOptions {
  configFile: string;
  routers: number;
  logger: Logger;
  /** Restart back-off (default 500 ms doubling to 30 s); reset once a child ran for `stableMs`. */
  backoff?: { initialMs: number; maxMs: number };
  stableMs?: number;
  /** Grace period between SIGTERM and SIGKILL on stop (default 15 s). */
  stopGraceMs?: number;
  onRestart?: (shard: number) => void;
  /** Where the children's stdout/stderr go (default: inherited, so their JSON logs join ours). */
  stdio?: 'inherit' | 'pipe';
}

interface Child {
  shard: number;
  process: ChildProcess | undefined;
  backoff: Backoff;
  startedAt: number;
  timer: NodeJS.Timeout | undefined;
}

export class RouterSupervisor {
  readonly #options: SupervisorOptions;
  readonly #children: Child[] = [];
  #stopping = false;

  constructor(options: SupervisorOptions) {
    this.#options = options;
  }

  /** PIDs of the running children, by shard (tests). */
  get pids(): Array<number | undefined> {
    return this.#children.map((child) => child.process?.pid);
  }

  child(shard: number): ChildProcess | undefined {
    return this.#children[shard]?.process;
  }

  start(): void {
    const backoff = this.#options.backoff ?? { initialMs: 500, maxMs: 30_000 };
    for (let shard = 0; shard < this.#options.routers; shard += 1) {
      const child: Child = { shard, process: undefined, backoff: new Backoff(backoff), startedAt: 0, timer: undefined };
      this.#children.push(child);
      this.#spawn(child);
    }
  }

  #spawn(child: Child): void {
    if (this.#stopping) return;
    const { logger } = this.#options;
    const proc = spawn(
      process.execPath,
      [ROUTER_ENTRY, '--config', this.#options.configFile, '--shard', String(child.shard)],
      // The IPC channel is only a lifeline: the router stops when it closes, i.e. when this agent is gone.
      { stdio: ['ignore', this.#options.stdio ?? 'inherit', this.#options.stdio ?? 'inherit', 'ipc'] },
    );
    child.process = proc;
    child.startedAt = Date.now();
    logger.info({ shard: child.shard, pid: proc.pid }, 'router started');
    proc.once('exit', (code, signal) => {
      child.process = undefined;
      if (this.#stopping) return;
      if (Date.now() - child.startedAt >= (this.#options.stableMs ?? 60_000)) child.backoff.reset();
      const delay = child.backoff.next();
      logger.warn({ shard: child.shard, code, signal, restartInMs: delay }, 'router exited unexpectedly');
      this.#options.onRestart?.(child.shard);
      child.timer = setTimeout(() => {
        child.timer = undefined;
        this.#spawn(child);
      }, delay);
    });
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    const grace = this.#options.stopGraceMs ?? 15_000;
    await Promise.all(
      this.#children.map(async (child) => {
        if (child.timer) clearTimeout(child.timer);
        const proc = child.process;
        if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGTERM');
        const kill = setTimeout(() => proc.kill('SIGKILL'), grace);
        await exited;
        clearTimeout(kill);
      }),
    );
  }
}
