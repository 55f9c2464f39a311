import { DmrError, isDmrError } from '@dmr/core';

export const OUTPUT_FORMATS = ['text', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function parseOutputFormat(value: string): OutputFormat {
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new DmrError('INVALID_ARGUMENT', `output format "${value}" is not one of ${OUTPUT_FORMATS.join(', ')}`);
}

/** Prints a command's result: JSON for scripts, or the command's own text rendering for people. */
export function printResult<T>(format: OutputFormat, value: T, renderText: (value: T) => string): void {
  if (format === 'json') {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  } else {
    const text = renderText(value);
    process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

/** Aligned `key: value` lines for text output. */
export function renderFields(fields: ReadonlyArray<readonly [string, string | number | undefined]>): string {
  const present = fields.filter((field): field is readonly [string, string | number] => field[1] !== undefined);
  const width = Math.max(0, ...present.map(([key]) => key.length));
  return present.map(([key, value]) => `${`${key}:`.padEnd(width + 2)}${value}`).join('\n');
}

/** Progress for long operations goes to stderr so stdout stays parseable. */
export function progress(message: string): void {
  process.stderr.write(`… ${message}\n`);
}

/** Prints an error with its catalogue code and what to do next; returns the exit code. */
export function reportError(error: unknown, format: OutputFormat): number {
  const dmrError = isDmrError(error)
    ? error
    : new DmrError('INTERNAL', error instanceof Error ? error.message : String(error), { cause: error });
  if (format === 'json') {
    process.stderr.write(`${JSON.stringify(dmrError.toJSON())}\n`);
  } else {
    process.stderr.write(`error[${dmrError.code}]: ${dmrError.message}\n`);
    if (dmrError.hint !== undefined) process.stderr.write(`  hint: ${dmrError.hint}\n`);
    if (dmrError.code === 'INTERNAL' && error instanceof Error && error.stack && process.env.DMR_DEBUG) {
      process.stderr.write(`${error.stack}\n`);
    }
  }
  return dmrError.exitCode;
}
