/** Command-line options of `npm run bench` (pure: parsing only, no I/O). */
import { parseArgs } from 'node:util';
import { DmrError } from '@dmr/core';

/** An offered load: a fixed rate in msg/s (open loop) or 'max' (closed loop). */
export type Load = number | 'max';

export const ROW_IDS = ['a', 'b', 'c', 'd', 's', 'e', 'f'] as const;
export type RowId = (typeof ROW_IDS)[number];

export interface BenchOptions {
  /** Measured seconds per point. */
  durationS: number;
  /** Unmeasured seconds before each point (JIT, connection buffers, queue leaders warm). */
  warmupS: number;
  loads: Load[];
  /** Body size in bytes. */
  sizeBytes: number;
  /** Closed-loop window for 'max': messages published but not yet both confirmed and delivered. */
  window: number;
  rows: RowId[];
  /** The Router's prefetch; undefined keeps the product default. */
  routerPrefetch: number | undefined;
  /** Experiment only: run the Router without its audit sink, to see what the audit step costs. */
  noAudit: boolean;
  /** Experiment only: the Router's replay memory in memory only, without its journal on disk (as before 0030). */
  noReplayJournal: boolean;
  /**
   * Experiment only: the queue type of rows a/b's first queue (bench.a, bench.b1: what a DMR ingress shard is), to
   * weigh classic ingress shards (decision 0041). The last queue (a client queue) stays quorum.
   */
  rawFirstQueue: 'quorum' | 'classic';
  /** Where to write the raw numbers as JSON. */
  jsonFile: string | undefined;
  /** Keep the temporary directory (broker logs, router log) for inspection. */
  keep: boolean;
  help: boolean;
}

export const USAGE = `npm run bench [-- options]

  --duration S           measured seconds per point (default 5)
  --warmup S             unmeasured warm-up seconds before each point (default 1)
  --loads LIST           offered loads, msg/s or "max" (default 1000,2000,4000,max)
  --size BYTES           body size (default 1024)
  --window N             in-flight window of the "max" points (default 1000)
  --rows LIST            rows to run among a,b,c,d,s,e,f (default all)
  --router-prefetch N    the router's prefetch (default: the Router's own default)
  --no-audit             experiment: the router without its audit stream (not the product path)
  --no-replay-journal    experiment: the router's replay memory not written to disk (not the product path)
  --raw-first-queue T    experiment: rows a/b's first queue quorum (default) or classic (what an ingress shard would be)
  --json FILE            also write the raw numbers to FILE
  --keep                 keep the temporary directory (broker and router logs)
  --help                 this text

The table goes to stdout, progress to stderr.`;

function invalid(message: string): DmrError {
  return new DmrError('INVALID_ARGUMENT', message, { hint: 'npm run bench -- --help' });
}

function positiveNumber(flag: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw invalid(`--${flag} wants a positive ${integer ? 'whole ' : ''}number, not "${text}"`);
  }
  return value;
}

export function parseLoads(text: string): Load[] {
  const loads: Load[] = [];
  for (const part of text.split(',').map((item) => item.trim())) {
    const load: Load = part === 'max' ? 'max' : positiveNumber('loads', part, true);
    if (loads.includes(load)) throw invalid(`--loads lists ${load} twice`);
    loads.push(load);
  }
  // Fixed rates ascending, max last: each point then starts from a broker no busier than the one before.
  return loads.sort((x, y) => (x === 'max' ? 1 : y === 'max' ? -1 : x - y));
}

/**
 * The brokers a run needs. Rows a–d use the first; rows s, e and f the
 * brokers from `meshBroker` on (two for s and e, three with f), which are
 * others than c/d's: a DMR node's reconciler owns the users of its broker,
 * so a mesh node on c/d's broker would delete c/d's clients. s shares e's
 * two brokers, so the link and its baseline run on the same pair.
 */
export function brokerPlan(rows: readonly RowId[]): { brokers: number; meshBroker: number } {
  const meshBroker = rows.includes('c') || rows.includes('d') ? 1 : 0;
  const mesh = rows.includes('f') ? 3 : rows.includes('s') || rows.includes('e') ? 2 : 0;
  return { brokers: Math.max(1, meshBroker + mesh), meshBroker };
}

export function parseRows(text: string): RowId[] {
  const rows = new Set<RowId>();
  for (const part of text.split(',').map((item) => item.trim())) {
    const row = ROW_IDS.find((id) => id === part);
    if (row === undefined) throw invalid(`--rows takes ${ROW_IDS.join(',')}, not "${part}"`);
    rows.add(row);
  }
  return ROW_IDS.filter((id) => rows.has(id));
}

export function parseOptions(argv: readonly string[]): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        duration: { type: 'string', default: '5' },
        warmup: { type: 'string', default: '1' },
        loads: { type: 'string', default: '1000,2000,4000,max' },
        size: { type: 'string', default: '1024' },
        window: { type: 'string', default: '1000' },
        rows: { type: 'string', default: ROW_IDS.join(',') },
        'router-prefetch': { type: 'string' },
        'no-audit': { type: 'boolean', default: false },
        'no-replay-journal': { type: 'boolean', default: false },
        'raw-first-queue': { type: 'string', default: 'quorum' },
        json: { type: 'string' },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (error) {
    throw invalid(error instanceof Error ? error.message : String(error));
  }
  const { values } = parsed;
  const warmupText = values.warmup;
  const warmupS = Number(warmupText);
  // Zero warm-up is legitimate (quick runs); a negative or non-number one is not.
  if (warmupText.trim() === '' || !Number.isFinite(warmupS) || warmupS < 0) {
    throw invalid(`--warmup wants a number ≥ 0, not "${warmupText}"`);
  }
  const rawFirstQueue = values['raw-first-queue'];
  if (rawFirstQueue !== 'quorum' && rawFirstQueue !== 'classic') {
    throw invalid(`--raw-first-queue takes quorum or classic, not "${rawFirstQueue}"`);
  }
  return {
    durationS: positiveNumber('duration', values.duration, false),
    warmupS,
    loads: parseLoads(values.loads),
    sizeBytes: positiveNumber('size', values.size, true),
    window: positiveNumber('window', values.window, true),
    rows: parseRows(values.rows),
    routerPrefetch:
      values['router-prefetch'] === undefined
        ? undefined
        : positiveNumber('router-prefetch', values['router-prefetch'], true),
    noAudit: values['no-audit'],
    noReplayJournal: values['no-replay-journal'],
    rawFirstQueue,
    jsonFile: values.json,
    keep: values.keep,
    help: values.help,
  };
}
