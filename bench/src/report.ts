/**
 * The result model of one bench run and its rendering: the table, the ratios
 * and the verdicts against the project's goals. Pure, so the arithmetic of the
 * verdicts is unit-tested without a broker.
 *
 * Goals (what the DMR path may cost over raw RabbitMQ, and what policy may cost):
 *   - c ≥ 75 % of b's throughput (at "max");
 *   - c's p99 at 1,000 msg/s ≤ 1.5 × b's;
 *   - router throughput with policy ≥ 90 % of without: c ≥ 90 % of d (at "max");
 *   - across one link: e ≥ 75 % of the raw shovel s (at "max"), e's p99 at 1,000 msg/s ≤ 1.5 × s's.
 * A goal whose inputs were not measured is "n/a", never PASS.
 */
import type { Load, RowId } from './options.js';
import type { Summary } from '@dmr/core';

export const ROW_LABELS: Record<RowId, string> = {
  a: 'raw one hop',
  b: 'raw relay (2 hops)',
  c: 'DMR path',
  d: 'DMR path, allow-all policy',
  s: 'raw shovel A→B (1 link)',
  e: 'DMR mesh, 1 link (A→B)',
  f: 'DMR mesh, 2 hops (A→B→C)',
};

export interface PointResult {
  load: Load;
  /** msg/s offered; null for 'max'. */
  offered: number | null;
  /** Messages published during the measured window. */
  sent: number;
  /** Messages that reached the final consumer during the measured window (any publish time). */
  received: number;
  /** received / measured seconds: the throughput. */
  achieved: number;
  /** Publish → final consumer, in ms, of the messages published during the measured window. */
  latencyMs: Summary;
  /** Publishes the broker refused (nack, e.g. a full queue with reject-publish). */
  nacked: number;
  /** Messages of the window still missing when the drain gave up. */
  missing: number;
  /** Publishes skipped because the backlog cap was reached (the path fell behind an open-loop load). */
  skipped: number;
  measuredMs: number;
  /** CPU of the broker, the relay/router process and the bench process over the measured window, % of one core. */
  cpu?: Record<string, number | null>;
}

export interface RowResult {
  row: RowId;
  label: string;
  /** Why the row was not measured; undefined when it was. */
  unavailable?: string;
  points: PointResult[];
}

export interface RunInfo {
  startedAt: string;
  node: string;
  rabbitmq: string;
  cpus: number;
  loadAverage: [number, number, number];
  /** The same after the last point: a run on a busy machine shows it here. */
  loadAverageEnd: [number, number, number];
  durationS: number;
  warmupS: number;
  sizeBytes: number;
  window: number;
  settings: string;
}

export interface BenchReport {
  info: RunInfo;
  rows: RowResult[];
  ratios: Ratio[];
  goals: Goal[];
}

export interface Ratio {
  name: string;
  load: Load;
  /** Throughput ratio numerator/denominator (achieved msg/s). */
  throughput: number | null;
  /** p99 ratio numerator/denominator. */
  p99: number | null;
}

export type Verdict = 'PASS' | 'MISS' | 'n/a';

export interface Goal {
  name: string;
  verdict: Verdict;
  detail: string;
}

function point(rows: readonly RowResult[], row: RowId, load: Load): PointResult | undefined {
  const found = rows.find((candidate) => candidate.row === row);
  if (found === undefined || found.unavailable !== undefined) return undefined;
  return found.points.find((candidate) => candidate.load === load);
}

function ratio(x: number | undefined, y: number | undefined): number | null {
  if (x === undefined || y === undefined || !Number.isFinite(x) || !Number.isFinite(y) || y <= 0) return null;
  return x / y;
}

const RATIO_PAIRS: ReadonlyArray<[RowId, RowId]> = [
  ['c', 'b'],
  ['c', 'a'],
  ['c', 'd'],
  ['e', 's'],
  ['f', 's'],
  ['f', 'e'],
];

export function computeRatios(rows: readonly RowResult[], loads: readonly Load[]): Ratio[] {
  const ratios: Ratio[] = [];
  const present = new Set(rows.map((row) => row.row));
  for (const [x, y] of RATIO_PAIRS) {
    // Only pairs that concern the run: `--rows s,e,f` shows the mesh ratios alone.
    if (!present.has(x) && !present.has(y)) continue;
    for (const load of loads) {
      const px = point(rows, x, load);
      const py = point(rows, y, load);
      ratios.push({
        name: `${x}/${y}`,
        load,
        throughput: ratio(px?.achieved, py?.achieved),
        p99: ratio(px?.latencyMs.p99, py?.latencyMs.p99),
      });
    }
  }
  return ratios;
}

function missingInputs(rows: readonly RowResult[], needed: readonly [RowId, Load][]): string | undefined {
  const absent = needed.filter(([row, load]) => {
    const p = point(rows, row, load);
    return p === undefined || p.latencyMs.n === 0;
  });
  if (absent.length === 0) return undefined;
  return `not measured: ${absent.map(([row, load]) => `${row}@${load}`).join(', ')}`;
}

function pct(value: number): string {
  return `${(value * 100).toFixed(0)} %`;
}

/** x's throughput at max is at least `fraction` of y's. */
function throughputGoal(rows: readonly RowResult[], x: RowId, y: RowId, fraction: number): Goal {
  const name = `${x} throughput ≥ ${pct(fraction)} of ${y}'s (max)`;
  const absent = missingInputs(rows, [
    [x, 'max'],
    [y, 'max'],
  ]);
  const px = point(rows, x, 'max');
  const py = point(rows, y, 'max');
  if (absent !== undefined || px === undefined || py === undefined)
    return { name, verdict: 'n/a', detail: absent ?? '' };
  const r = px.achieved / py.achieved;
  return {
    name,
    verdict: r >= fraction ? 'PASS' : 'MISS',
    detail: `${x} ${px.achieved.toFixed(0)} / ${y} ${py.achieved.toFixed(0)} msg/s = ${pct(r)}`,
  };
}

/** x's p99 at 1,000 msg/s is at most `factor` × y's. */
function p99Goal(rows: readonly RowResult[], x: RowId, y: RowId, factor: number): Goal {
  const name = `${x} p99 at 1000 msg/s ≤ ${factor} × ${y}'s`;
  const absent = missingInputs(rows, [
    [x, 1000],
    [y, 1000],
  ]);
  const px = point(rows, x, 1000);
  const py = point(rows, y, 1000);
  if (absent !== undefined || px === undefined || py === undefined)
    return { name, verdict: 'n/a', detail: absent ?? '' };
  const limit = factor * py.latencyMs.p99;
  return {
    name,
    verdict: px.latencyMs.p99 <= limit ? 'PASS' : 'MISS',
    detail: `${x} ${px.latencyMs.p99.toFixed(2)} ms vs ${factor} × ${y} ${py.latencyMs.p99.toFixed(2)} = ${limit.toFixed(2)} ms`,
  };
}

/**
 * The goals whose rows are part of the run (measured or not available):
 * `--rows s,e,f` shows the mesh goals only, the default run all of them.
 */
export function evaluateGoals(rows: readonly RowResult[]): Goal[] {
  const present = new Set(rows.map((row) => row.row));
  const goals: Goal[] = [];
  if (present.has('b') || present.has('c')) {
    goals.push(throughputGoal(rows, 'c', 'b', 0.75), p99Goal(rows, 'c', 'b', 1.5));
  }
  if (present.has('c') || present.has('d')) {
    const goal = throughputGoal(rows, 'c', 'd', 0.9);
    goals.push({ ...goal, name: 'with policy ≥ 90 % of without: c vs d (max)' });
  }
  if (present.has('s') || present.has('e')) {
    goals.push(throughputGoal(rows, 'e', 's', 0.75), p99Goal(rows, 'e', 's', 1.5));
  }
  return goals;
}

function loadLabel(load: Load): string {
  return load === 'max' ? 'max' : String(load);
}

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

/** CPU shares as "broker/worker/bench" in % of one core; "-" for a process that was not there. */
function cpuLabel(cpu: Record<string, number | null> | undefined): string {
  if (cpu === undefined) return '';
  return ['broker', 'worker', 'bench'].map((name) => fixed(cpu[name], 0)).join('/');
}

/**
 * CPU µs each process spent per delivered message over the measured window:
 * its share of a core divided by the throughput. Unlike msg/s, this barely
 * moves when other work shares the machine, so it is the figure to compare
 * between runs of a busy machine (decision 0036). Null without either input.
 */
export function cpuMicrosPerMessage(share: number | null | undefined, achieved: number): number | null {
  if (share === null || share === undefined || !(achieved > 0)) return null;
  return (share / 100 / achieved) * 1e6;
}

/** "broker/worker" CPU µs per delivered message; "-" for a process that was not there. */
function cpuPerMessageLabel(p: PointResult): string {
  if (p.cpu === undefined) return '';
  return ['broker', 'worker'].map((name) => fixed(cpuMicrosPerMessage(p.cpu?.[name], p.achieved), 0)).join('/');
}

function renderGrid(header: string[], lines: string[][], leftColumns: number): string[] {
  const widths = header.map((cell, i) => Math.max(cell.length, ...lines.map((line) => (line[i] ?? '').length)));
  const format = (cells: string[]): string =>
    cells
      .map((cell, i) => (i < leftColumns ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [format(header), ...lines.map(format)];
}

/** The text printed on stdout. */
export function renderReport(report: BenchReport): string {
  const { info } = report;
  const out: string[] = [];
  out.push(
    `DMR bench — ${info.startedAt}, node ${info.node}, RabbitMQ ${info.rabbitmq}, ${info.cpus} CPUs, ` +
      `load average ${info.loadAverage.map((v) => v.toFixed(2)).join(' ')} at start, ` +
      `${info.loadAverageEnd.map((v) => v.toFixed(2)).join(' ')} at end`,
  );
  out.push(
    `${info.settings}; ${info.sizeBytes} B bodies; ${info.durationS} s per point after ${info.warmupS} s warm-up; ` +
      `max = closed loop, ${info.window} in flight`,
  );
  out.push('');
  const lines: string[][] = [];
  for (const row of report.rows) {
    if (row.unavailable !== undefined) {
      lines.push([row.row, row.label, '-', 'not available', '', '', '', '', '', row.unavailable]);
      continue;
    }
    for (const p of row.points) {
      const notes: string[] = [];
      if (p.nacked > 0) notes.push(`${p.nacked} nacked`);
      if (p.skipped > 0) notes.push(`${p.skipped} not sent (backlog cap)`);
      if (p.missing > 0) notes.push(`${p.missing} missing`);
      lines.push([
        row.row,
        row.label,
        loadLabel(p.load),
        fixed(p.achieved, 0),
        fixed(p.latencyMs.p50, 2),
        fixed(p.latencyMs.p99, 2),
        fixed(p.latencyMs.max, 1),
        cpuLabel(p.cpu),
        cpuPerMessageLabel(p),
        notes.join(', '),
      ]);
    }
  }
  out.push(
    ...renderGrid(
      [
        'row',
        'path',
        'offered',
        'msg/s',
        'p50 ms',
        'p99 ms',
        'max ms',
        'CPU % broker/worker/bench',
        'CPU µs/msg broker/worker',
        'notes',
      ],
      lines,
      2,
    ),
  );
  out.push('');
  const ratioLines = report.ratios.map((r) => [r.name, loadLabel(r.load), fixed(r.throughput, 2), fixed(r.p99, 2)]);
  out.push(...renderGrid(['ratio', 'offered', 'msg/s ratio', 'p99 ratio'], ratioLines, 1));
  out.push('');
  const goalLines = report.goals.map((g) => [g.verdict, g.name, g.detail]);
  out.push(...renderGrid(['goal', 'what', 'measured'], goalLines, 3));
  return `${out.join('\n')}\n`;
}
