import { DmrError } from './errors.js';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Parses durations such as `90s`, `15m`, `24h`, `30d` or `1h30m` into
 * milliseconds. A bare number is refused: "24" could mean hours or seconds.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  const part = /(\d+)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = part.exec(trimmed); match; match = part.exec(trimmed)) {
    total += Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
    consumed = part.lastIndex;
  }
  if (trimmed.length === 0 || consumed !== trimmed.length || total <= 0) {
    throw new DmrError('INVALID_ARGUMENT', `duration "${text}" is not valid`, {
      hint: 'write a positive duration with a unit, e.g. 90s, 15m, 24h, 30d or 1h30m',
    });
  }
  return total;
}

export function formatDuration(ms: number): string {
  if (ms % UNIT_MS.d === 0) return `${ms / UNIT_MS.d}d`;
  if (ms % UNIT_MS.h === 0) return `${ms / UNIT_MS.h}h`;
  if (ms % UNIT_MS.m === 0) return `${ms / UNIT_MS.m}m`;
  if (ms % UNIT_MS.s === 0) return `${ms / UNIT_MS.s}s`;
  return `${ms}ms`;
}
