/**
 * The one percentile/summary implementation for the repository's benchmarks
 * (`npm run bench`: the DMR path, policy, feed, api). It lives in core
 * because every package's benchmark can depend on core without a cycle.
 *
 * Percentiles use the nearest-rank method: p is the smallest sample with at
 * least p % of the samples at or below it. It never interpolates, so every
 * reported figure is a latency that was actually observed, and p100 is the max.
 */

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of ascending `sorted` (p in 0..100); NaN for no samples. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, not ${p}`);
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * n));
  return sorted[Math.min(n, rank) - 1] as number;
}

function isIterable(value: ArrayLike<number> | Iterable<number>): value is Iterable<number> {
  return typeof (value as Partial<Iterable<number>>)[Symbol.iterator] === 'function';
}

/**
 * Ascending copy as a Float64Array: its sort is numeric by default (Array's
 * is lexicographic) and a 100k-sample run sorts without boxing.
 */
export function sortedSamples(samples: ArrayLike<number> | Iterable<number>): Float64Array {
  const copy = isIterable(samples) ? Float64Array.from(samples) : Float64Array.from(samples);
  copy.sort();
  return copy;
}

/** n, min, p50, p90, p99, max and mean of `samples` (any order; NaN figures when empty). */
export function summarize(samples: ArrayLike<number> | Iterable<number>): Summary {
  const sorted = sortedSamples(samples);
  const n = sorted.length;
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    n,
    min: n === 0 ? Number.NaN : (sorted[0] as number),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: n === 0 ? Number.NaN : (sorted[n - 1] as number),
    mean: n === 0 ? Number.NaN : sum / n,
  };
}

/**
 * A Markdown table of benchmark results: the first `leftColumns` columns
 * (names) left-aligned, the rest (figures) right-aligned, every column as wide
 * as its widest cell so the text reads as a table too.
 */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  leftColumns = 2,
): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((value, column) => (column < leftColumns ? value.padEnd(widths[column] ?? 0) : value.padStart(widths[column] ?? 0))).join(' | ')} |`;
  const rule = widths.map((width, column) =>
    column < leftColumns ? `:${'-'.repeat(width + 1)}` : `${'-'.repeat(width + 1)}:`,
  );
  return [line(header), `|${rule.join('|')}|`, ...rows.map(line)].join('\n');
}
