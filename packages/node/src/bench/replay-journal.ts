/**
 * What the durable replay memory costs (docs/decisions/0030): the guard's
 * check per accepted id in memory only (the baseline, measured in the same
 * run) and with its ReplayJournal, flushed the way the router flushes it
 * (one write per synchronous burst of `burst` ids, then an await); one
 * fdatasync (what a per-message sync would add); and a restart with a full
 * window: the time to load N ids and restore them into a new guard. A
 * benchmark, not a test: it prints figures and asserts nothing.
 *
 *   npm run bench -- replay-journal [N] [BURST]   N ids (default 1 000 000), BURST ids per flush (default 16)
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ReplayGuard } from '../message/replay.js';
import { ReplayJournal } from '../message/replay-journal.js';

const WINDOW_MS = 24 * 3_600_000 + 5 * 60_000;

/** CPU time (user + system, ms) of this process: on a shared machine wall time measures the neighbours too. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Wall and CPU ms of `run`. */
async function timed<T>(run: () => Promise<T> | T): Promise<{ wall: number; cpu: number; value: T }> {
  const wall = performance.now();
  const cpu = cpuMs();
  const value = await run();
  return { wall: performance.now() - wall, cpu: cpuMs() - cpu, value };
}

/** Accepts `ids` in bursts of `burst`, awaiting (so a queued flush runs) between bursts. */
async function accept(guard: ReplayGuard, ids: readonly string[], burst: number, now: number): Promise<void> {
  for (let i = 0; i < ids.length; i += burst) {
    for (let j = i; j < Math.min(ids.length, i + burst); j += 1) guard.check(ids[j] as string, now, `bot-${j % 50}`);
    await Promise.resolve();
  }
}

function perId(ms: number, n: number): string {
  return ((ms * 1e6) / n).toFixed(0);
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 1_000_000);
  const burst = Number(process.argv[3] ?? 16);
  const dir = mkdtempSync(join(tmpdir(), 'dmr-bench-replay-'));
  try {
    const ids = Array.from({ length: n }, () => randomUUID());
    const now = Date.now();
    const rows: Array<[string, string]> = [];

    // Baseline first and last: the machine's drift shows as a difference between the two.
    const memory = () => accept(new ReplayGuard({ windowMs: WINDOW_MS, maxEntries: n }), ids, burst, now);
    const before = await timed(memory);
    const journal = ReplayJournal.open({ dir: join(dir, 'shard-0') });
    const durable = await timed(() =>
      accept(new ReplayGuard({ windowMs: WINDOW_MS, maxEntries: n, journal }), ids, burst, now),
    );
    journal.close();
    const after = await timed(memory);
    const baseCpu = (before.cpu + after.cpu) / 2;
    rows.push([
      'check, memory only (baseline, before / after)',
      `${perId(before.cpu, n)} / ${perId(after.cpu, n)} ns/id CPU (wall ${perId(before.wall, n)} / ${perId(after.wall, n)})`,
    ]);
    rows.push([
      `check + journal (one write per ${burst} ids)`,
      `${perId(durable.cpu, n)} ns/id CPU (wall ${perId(durable.wall, n)})`,
    ]);
    rows.push(['journal overhead', `${perId(durable.cpu - baseCpu, n)} ns/id CPU`]);

    const fd = openSync(join(dir, 'sync-probe'), 'a');
    const syncs = 50;
    const synced = await timed(() => {
      for (let i = 0; i < syncs; i += 1) {
        writeSync(fd, `+${now} ${ids[i] ?? ''} bot\n`);
        fdatasyncSync(fd);
      }
    });
    rows.push(['one write + fdatasync (a per-message sync)', `${(synced.wall / syncs).toFixed(2)} ms wall`]);
    closeSync(fd);

    const loaded = await timed(() => ReplayJournal.open({ dir: join(dir, 'shard-0') }));
    const reopened = loaded.value;
    const restored = await timed(() =>
      new ReplayGuard({ windowMs: WINDOW_MS, maxEntries: n, journal: reopened }).restore(reopened.takeLoaded(), now),
    );
    reopened.close();
    rows.push([
      `restart: read ${reopened.load.lines} lines`,
      `${loaded.cpu.toFixed(0)} ms CPU, ${Math.round((n / loaded.cpu) * 1000)} ids/s (wall ${loaded.wall.toFixed(0)} ms)`,
    ]);
    rows.push([
      `restart: restore ${restored.value} ids into the guard`,
      `${restored.cpu.toFixed(0)} ms CPU (wall ${restored.wall.toFixed(0)} ms)`,
    ]);

    const width = Math.max(...rows.map(([what]) => what.length));
    process.stdout.write(`replay journal — ${n} ids, node ${process.version}\n\n`);
    for (const [what, value] of rows) process.stdout.write(`${what.padEnd(width)}  ${value}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
