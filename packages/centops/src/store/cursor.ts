/**
 * Keyset pagination: a cursor is the last key of the previous page, wrapped
 * so callers treat it as opaque (we may change what is inside). Keyset, not
 * offset, so a page boundary does not shift when rows are added meanwhile.
 */
import { DmrError } from '@dmr/core';
import type { Page, PageOptions } from './types.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

/** Each listing has its own scope so a cursor from one cannot be replayed against another. */
export type CursorScope = string;

export function pageLimit(options: PageOptions): number {
  const limit = options.limit ?? DEFAULT_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new DmrError('INVALID_ARGUMENT', `limit ${String(limit)} must be an integer from 1 to ${MAX_LIMIT}`);
  }
  return limit;
}

export function encodeCursor<T extends string | number>(scope: CursorScope, after: T): string {
  return Buffer.from(JSON.stringify({ s: scope, a: after })).toString('base64url');
}

export function decodeCursor(scope: CursorScope, cursor: string, type: 'string'): string;
export function decodeCursor(scope: CursorScope, cursor: string, type: 'number'): number;
export function decodeCursor(scope: CursorScope, cursor: string, type: 'string' | 'number'): string | number {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const after = (parsed as { s?: unknown; a?: unknown } | undefined)?.a;
  if ((parsed as { s?: unknown } | undefined)?.s !== scope || typeof after !== type) {
    throw new DmrError('INVALID_ARGUMENT', 'the cursor is not valid for this listing', {
      hint: 'pass nextCursor from the previous page of the same listing unchanged',
    });
  }
  return after as string | number;
}

/** Cuts a `limit + 1` query result into a page; the extra row only says that there is more. */
export function toPage<Row, Item, Key extends string | number>(
  rows: readonly Row[],
  limit: number,
  scope: CursorScope,
  map: (row: Row) => Item,
  key: (row: Row) => Key,
): Page<Item> {
  const pageRows = rows.slice(0, limit);
  const last = pageRows.at(-1);
  const page: Page<Item> = { items: pageRows.map(map) };
  if (rows.length > limit && last !== undefined) page.nextCursor = encodeCursor(scope, key(last));
  return page;
}
