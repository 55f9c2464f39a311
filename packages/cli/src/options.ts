/**
 * Option and input helpers every command group shares: a required option, a
 * bounded whole number, a repeated option, and an input file (`-` is stdin)
 * whose absence is reported by name.
 */
import { readFile } from 'node:fs/promises';
import { DmrError } from '@dmr/core';

export function required(value: string | undefined, flag: string, example: string): string {
  if (value === undefined || value.trim() === '') {
    throw new DmrError('INVALID_ARGUMENT', `${flag} is required`, { hint: `e.g. ${flag} ${example}` });
  }
  return value;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/** A file's text, or stdin for `-`; a missing file is NOT_FOUND naming it. */
export async function readInput(path: string, what: string): Promise<string> {
  if (path === '-') return readStdin();
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const missing = error instanceof Error && 'code' in error && error.code === 'ENOENT';
    throw new DmrError(
      missing ? 'NOT_FOUND' : 'INVALID_ARGUMENT',
      `cannot read ${what} ${path}${missing ? ': no such file' : ''}`,
      {
        details: { path },
        cause: error,
      },
    );
  }
}

/** A positive integer option (`--limit 50`). */
export function positiveInt(value: string | undefined, flag: string, max: number): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1 || number > max) {
    throw new DmrError('INVALID_ARGUMENT', `${flag} must be a whole number from 1 to ${max}, not "${value}"`);
  }
  return number;
}

/** Commander collector for options given several times (--label a=b --label c=d). */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
