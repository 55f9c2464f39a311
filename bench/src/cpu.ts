/**
 * CPU time of the processes in a point, read from /proc over the measured
 * window: with 2 cores shared by broker, router and load generator, "who was
 * busy" explains a throughput figure better than the figure alone.
 */
import { performance } from 'node:perf_hooks';
import { readProcStat } from '@dmr/broker-harness';

/** Linux USER_HZ: /proc/<pid>/stat counts in 1/100 s on every architecture Node runs on. */
const TICKS_PER_SECOND = 100;

/** utime + stime of `pid` in seconds, or undefined when it is gone (or not Linux). */
export function cpuSeconds(pid: number): number | undefined {
  const stat = readProcStat(pid);
  return stat === undefined || !Number.isFinite(stat.cpuTicks) ? undefined : stat.cpuTicks / TICKS_PER_SECOND;
}

export type CpuShares = Record<string, number | null>;

/** Starts measuring `pids` (name → pid); the returned function gives each one's CPU in % of one core. */
export function startCpuSample(pids: Readonly<Record<string, number | undefined>>): () => CpuShares {
  const startedAt = performance.now();
  const before = Object.entries(pids).map(([name, pid]) => ({
    name,
    pid,
    seconds: pid === undefined ? undefined : cpuSeconds(pid),
  }));
  return () => {
    const elapsed = (performance.now() - startedAt) / 1000;
    const shares: CpuShares = {};
    for (const { name, pid, seconds } of before) {
      const after = pid === undefined ? undefined : cpuSeconds(pid);
      shares[name] =
        seconds === undefined || after === undefined || elapsed <= 0
          ? null
          : Math.round(((after - seconds) / elapsed) * 100);
    }
    return shares;
  };
}

/**
 * Sums the shares named `<group>.<n>` into one per group (two brokers of a
 * mesh row make one "broker" figure); a group with no process measured is null.
 */
export function sumShares(shares: CpuShares, groups: readonly string[]): CpuShares {
  const summed: CpuShares = {};
  for (const group of groups) {
    const values = Object.entries(shares)
      .filter(([name]) => name === group || name.startsWith(`${group}.`))
      .map(([, value]) => value)
      .filter((value): value is number => value !== null);
    summed[group] = values.length === 0 ? null : values.reduce((sum, value) => sum + value, 0);
  }
  return summed;
}
