/**
 * Where a store lives, parsed from the one string operators configure:
 * a SQLite file by default (nothing to set up), PostgreSQL in production.
 */
import { DmrError } from '@dmr/core';

export type StoreLocation = { dialect: 'sqlite'; path: string } | { dialect: 'postgres'; url: string };

export type Dialect = StoreLocation['dialect'];

/** The in-memory SQLite path; each open gets a private, empty database. */
export const MEMORY = ':memory:';

export function parseLocation(location: string): StoreLocation {
  const text = location.trim();
  if (text === '') {
    throw new DmrError('INVALID_ARGUMENT', 'the store location is empty', {
      hint: 'give a SQLite file path (e.g. centops.db), sqlite:PATH, :memory: or a postgres:// URL',
    });
  }
  if (/^postgres(ql)?:\/\//i.test(text)) return { dialect: 'postgres', url: text };
  if (/^sqlite:/i.test(text)) {
    const path = text.slice('sqlite:'.length);
    if (path === '') throw new DmrError('INVALID_ARGUMENT', '"sqlite:" needs a file path after the colon');
    return { dialect: 'sqlite', path };
  }
  // A scheme we do not speak (mysql://, file://…) is a mistake, not a relative file name. Two letters
  // at least so that a Windows drive ("C:\…") is not taken for one.
  const scheme = /^([a-z][a-z0-9+.-]+):\/\//i.exec(text);
  if (scheme) {
    throw new DmrError('INVALID_ARGUMENT', `store location scheme "${scheme[1]}" is not supported`, {
      hint: 'use a SQLite file path, sqlite:PATH, :memory: or a postgres:// URL',
    });
  }
  return { dialect: 'sqlite', path: text };
}

/** The location with any password removed, for messages and logs. */
export function describeLocation(location: StoreLocation): string {
  if (location.dialect === 'sqlite') return location.path === MEMORY ? 'SQLite in memory' : `SQLite ${location.path}`;
  try {
    const url = new URL(location.url);
    if (url.password !== '') url.password = '***';
    return `PostgreSQL ${url.toString()}`;
  } catch {
    return 'PostgreSQL (unparseable URL)';
  }
}
