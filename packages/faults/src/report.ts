/**
 * The suite's output: one row per scenario, as a Markdown table on stdout
 * (pasted as is into docs/faults.md) or as JSON (`--json`).
 */
import type { LedgerCounts } from './ledger.js';

export interface Row extends LedgerCounts {
  scenario: string;
  /** How the application receives: the SDK handler (dedups itself), or an endpoint behind the bridge (POSTs). */
  via: 'sdk' | 'bridge';
  title: string;
  /** From the fault's end until the stream was whole again; null when it never was (or nothing to measure). */
  recoveryMs: number | null;
  note: string;
  /** The scenario could not run to its end: what failed. */
  error?: string;
}

const COLUMNS = [
  'scenario',
  'sent',
  'confirmed',
  'delivered',
  'reported',
  'lost',
  'duplicate POSTs',
  'duplicates at the application',
  'recovery',
  'note',
] as const;

function seconds(ms: number | null): string {
  return ms === null ? '—' : `${(ms / 1000).toFixed(1)} s`;
}

function cellsOf(row: Row): string[] {
  const note = row.error === undefined ? row.note : `FAILED: ${row.error}${row.note === '' ? '' : `; ${row.note}`}`;
  return [
    `${row.title} (\`${row.scenario}\`)`,
    String(row.sent),
    String(row.confirmed),
    String(row.delivered),
    String(row.reported),
    String(row.lost),
    // At least once to an HTTP endpoint: repeats are expected there; the SDK's own dedup hides them.
    row.via === 'bridge' ? String(row.redeliveries) : '—',
    String(row.duplicates),
    seconds(row.recoveryMs),
    note.replace(/\|/g, '\\|').replace(/\n/g, ' '),
  ];
}

/** A Markdown table, columns padded so it reads in a terminal too. */
export function renderTable(rows: readonly Row[]): string {
  const body = rows.map(cellsOf);
  const widths = COLUMNS.map((column, index) =>
    Math.max(column.length, ...body.map((cells) => cells[index]?.length ?? 0)),
  );
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((cell, index) => cell.padEnd(widths[index] ?? 0)).join(' | ')} |`;
  return [line(COLUMNS), line(widths.map((width) => '-'.repeat(width))), ...body.map(line)].join('\n');
}

/** True when a row shows what must never happen: a loss, a duplicate at the application, or a scenario that failed. */
export function isBad(row: Row): boolean {
  return row.lost > 0 || row.duplicates > 0 || row.error !== undefined;
}
