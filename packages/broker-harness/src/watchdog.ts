/**
 * The orphan watchdog: a tiny detached process per harness that outlives its
 * owner. If the owner vanishes without stopping the nodes (SIGKILL, a test
 * runner timeout, a crash in native code), exit hooks never run; the
 * watchdog then kills the processes recorded in harness.json.
 *
 * Only harnesses tied to their process get one: `dmr broker start` without
 * --foreground leaves the nodes running on purpose.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRunning, processRef, type ProcessRef } from './processes.js';
import { readStateSync, type HarnessState } from './state.js';
import { killFromStateSync } from './teardown.js';

const WATCHDOG_MAIN = fileURLToPath(new URL('./watchdog-main.js', import.meta.url));

export function spawnWatchdog(dir: string, owner: ProcessRef, logFile: string): ProcessRef | null {
  const log = openSync(logFile, 'a');
  try {
    const child = spawn(process.execPath, [WATCHDOG_MAIN, dir, String(owner.pid), String(owner.startTicks)], {
      // Its own session: it must survive the owner's process group being killed.
      detached: true,
      stdio: ['ignore', log, log],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    child.unref();
    return processRef(child.pid) ?? null;
  } finally {
    closeSync(log);
  }
}

export interface WatchdogOptions {
  pollMs?: number;
  /** How often to re-read the state file to notice a normal stop. */
  stateCheckMs?: number;
  /** The pause between polls (tests count the polls through it, to know the watchdog looked and let be). */
  sleep?: (ms: number) => Promise<unknown>;
}

function readOrUndefined(dir: string): HarnessState | undefined {
  try {
    return readStateSync(dir);
  } catch {
    return undefined;
  }
}

/** Returns why it ended: the owner vanished (and what it did), or the harness stopped normally. */
export async function runWatchdog(dir: string, owner: ProcessRef, options: WatchdogOptions = {}): Promise<string> {
  const pollMs = options.pollMs ?? 250;
  const stateCheckMs = options.stateCheckMs ?? 2000;
  const pause = options.sleep ?? sleep;
  let lastStateCheck = Date.now();
  for (;;) {
    if (!isRunning(owner)) {
      const state = readOrUndefined(dir);
      if (!state) return 'owner gone; no readable harness.json, nothing to do';
      if (state.status === 'stopped') return 'owner gone after a normal stop';
      killFromStateSync(state, `owner process ${owner.pid} exited without stopping the nodes; killed by the watchdog`, {
        includeWatchdog: false,
      });
      return `owner ${owner.pid} gone; killed the harness processes`;
    }
    if (Date.now() - lastStateCheck >= stateCheckMs) {
      lastStateCheck = Date.now();
      const state = readOrUndefined(dir);
      if (!state || state.status === 'stopped' || state.status === 'failed') return 'harness stopped normally';
      if (state.watchdog !== null && state.watchdog.pid !== process.pid) return 'replaced by another watchdog';
    }
    await pause(pollMs);
  }
}
