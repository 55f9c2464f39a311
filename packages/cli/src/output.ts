import { stringify as toYaml } from 'yaml';
import { DmrError, isDmrError } from '@dmr/core';

/**
 * `text` is every command's own rendering for people; `table` is accepted as
 * its alias (the kubectl habit of `dmr ctl get … -o table`); `yaml` is the
 * same data as `json` for people who edit it and feed it back.
 */
export const OUTPUT_FORMATS = ['text', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
/** What `-o` accepts: the formats plus the alias. */
export const OUTPUT_CHOICES = ['text', 'table', 'json', 'yaml'] as const;

export function parseOutputFormat(value: string): OutputFormat {
  if (value === 'table') return 'text';
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new DmrError('INVALID_ARGUMENT', `output format "${value}" is not one of ${OUTPUT_CHOICES.join(', ')}`);
}

/** YAML of what JSON would show: a JSON round trip first, so Dates and class instances look the same in both. */
export function yamlOf(value: unknown): string {
  return toYaml(JSON.parse(JSON.stringify(value)) as unknown, { lineWidth: 0 });
}

/** What a command writes to: text only, as the process streams take it. */
export interface CliStreams {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

const PROCESS_STREAMS: CliStreams = { stdout: process.stdout, stderr: process.stderr };
let streams: CliStreams = PROCESS_STREAMS;

/**
 * Where every command writes: the process's own streams, except while the
 * CLI's tests run a command in process (`runDmrInProcess` in test-support.ts),
 * which saves them a Node start and the group's imports per run (about 1 s of
 * CPU each: docs/decisions/0038-ci-time.md).
 */
export function cliStreams(): CliStreams {
  return streams;
}

/** Tests only: capture what commands write; undefined restores the process's streams. */
export function setCliStreams(next: CliStreams | undefined): void {
  streams = next ?? PROCESS_STREAMS;
}

/** Prints a command's result: JSON or YAML for scripts, or the command's own text rendering for people. */
export function printResult<T>(format: OutputFormat, value: T, renderText: (value: T) => string): void {
  if (format === 'json') {
    cliStreams().stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  } else if (format === 'yaml') {
    cliStreams().stdout.write(yamlOf(value));
  } else {
    const text = renderText(value);
    cliStreams().stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

/** Aligned `key: value` lines for text output. */
export function renderFields(fields: ReadonlyArray<readonly [string, string | number | undefined]>): string {
  const present = fields.filter((field): field is readonly [string, string | number] => field[1] !== undefined);
  const width = Math.max(0, ...present.map(([key]) => key.length));
  return present.map(([key, value]) => `${`${key}:`.padEnd(width + 2)}${value}`).join('\n');
}

/** Left-aligned columns separated by three spaces (kubectl's look); no trailing blanks. */
export function renderTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** Progress for long operations goes to stderr so stdout stays parseable. */
export function progress(message: string): void {
  cliStreams().stderr.write(`… ${message}\n`);
}

/** `details.problems` as the API and the store report them: every problem with its path. */
function problemsOf(error: DmrError): Array<{ path: string; message: string }> {
  const problems = error.details.problems;
  if (!Array.isArray(problems)) return [];
  return problems.flatMap((problem: unknown) => {
    if (typeof problem !== 'object' || problem === null) return [];
    const { path, message } = problem as { path?: unknown; message?: unknown };
    return [{ path: typeof path === 'string' ? path : '', message: typeof message === 'string' ? message : '' }];
  });
}

/** Prints an error with its catalogue code and what to do next; returns the exit code. */
export function reportError(error: unknown, format: OutputFormat): number {
  const dmrError = isDmrError(error)
    ? error
    : new DmrError('INTERNAL', error instanceof Error ? error.message : String(error), { cause: error });
  if (format === 'json') {
    cliStreams().stderr.write(`${JSON.stringify(dmrError.toJSON())}\n`);
  } else {
    cliStreams().stderr.write(`error[${dmrError.code}]: ${dmrError.message}\n`);
    // A refused change is only fixable when every problem is visible at once, not the first.
    for (const problem of problemsOf(dmrError)) {
      cliStreams().stderr.write(`  - ${problem.path === '' ? '' : `${problem.path}: `}${problem.message}\n`);
    }
    if (dmrError.hint !== undefined) cliStreams().stderr.write(`  hint: ${dmrError.hint}\n`);
    if (dmrError.code === 'INTERNAL' && error instanceof Error && error.stack && process.env.DMR_DEBUG) {
      cliStreams().stderr.write(`${error.stack}\n`);
    }
  }
  return dmrError.exitCode;
}
