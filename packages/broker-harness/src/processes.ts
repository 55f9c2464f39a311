/**
 * Processes the harness started, named by PID plus the kernel's start time.
 * A bare PID in a state file may belong to an unrelated process by the time
 * `stop` or the watchdog reads it (PIDs are reused), so every signal is sent
 * only after the start time still matches. Nothing is ever found by name.
 *
 * Linux only (it reads /proc), as is the Debian RabbitMQ the harness runs.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcessRef {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot at which the process started. */
  startTicks: number;
}

export interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  startTicks: number;
  /** utime + stime in clock ticks (USER_HZ, 1/100 s): CPU used so far. */
  cpuTicks: number;
}

export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces or ")".
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const [state, ppid, pgrp] = fields;
  const startTicks = Number(fields[19]);
  if (state === undefined || !Number.isFinite(startTicks)) return undefined;
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  return { state, ppid: Number(ppid), pgrp: Number(pgrp), startTicks, cpuTicks };
}

/** Captures a process's identity right after it was spawned. */
export function processRef(pid: number | undefined): ProcessRef | undefined {
  if (pid === undefined) return undefined;
  const stat = readProcStat(pid);
  return stat === undefined ? undefined : { pid, startTicks: stat.startTicks };
}

/** Zombies count as gone: they hold no ports or files, and in containers nobody may ever reap them. */
export function isRunning(ref: ProcessRef | null | undefined): boolean {
  if (!ref) return false;
  const stat = readProcStat(ref.pid);
  return stat !== undefined && stat.startTicks === ref.startTicks && stat.state !== 'Z' && stat.state !== 'X';
}

export function signalProcess(ref: ProcessRef | null | undefined, signal: NodeJS.Signals): boolean {
  if (!ref || !isRunning(ref)) return false;
  try {
    process.kill(ref.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Signals a whole process group (the server script, beam.smp and its port
 * programs share one, since the script was spawned with setsid). The group id
 * is trusted only while its leader, or a member we recorded in that group, is
 * still the process we started.
 */
export function signalGroup(
  leader: ProcessRef | null | undefined,
  members: ReadonlyArray<ProcessRef | null | undefined>,
  signal: NodeJS.Signals,
): boolean {
  if (!leader) return false;
  const vouched =
    isRunning(leader) ||
    members.some((member) => member && isRunning(member) && readProcStat(member.pid)?.pgrp === leader.pid);
  if (!vouched) return false;
  try {
    process.kill(-leader.pid, signal);
    return true;
  } catch {
    return false;
  }
}

export async function waitForExit(
  refs: ReadonlyArray<ProcessRef | null | undefined>,
  timeoutMs: number,
  pollMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!refs.some(isRunning)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(pollMs);
  }
}
