/**
 * Opens a Kysely connection for a store location. This is the only file
 * that knows about better-sqlite3 and pg; everything above it is one code
 * path over `Kysely<Database>`.
 */
import Sqlite from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { DmrError } from '@dmr/core';
import { describeLocation, type StoreLocation } from './location.js';
import type { Database } from './schema.js';

/** How long a SQLite writer waits for another process's write lock before failing. */
const SQLITE_BUSY_TIMEOUT_MS = 5000;

const PG_INT8 = 20;
const PG_JSON = 114;
const PG_TIMESTAMP = 1114;
const PG_TIMESTAMPTZ = 1184;
const PG_JSONB = 3802;

/**
 * Make pg return what better-sqlite3 returns, so row mapping is shared:
 * int8 → number (our revisions and sequence numbers stay far below 2^53),
 * timestamptz → ISO string, json/jsonb → the JSON text.
 * Per pool, not via the global `pg.types`, so nothing else in the process changes.
 */
const pgTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    switch (oid) {
      case PG_INT8:
        return (value: string) => {
          const n = Number(value);
          if (!Number.isSafeInteger(n)) throw new Error(`int8 value ${value} does not fit a JavaScript number`);
          return n;
        };
      case PG_TIMESTAMP:
      case PG_TIMESTAMPTZ: {
        const toDate = pg.types.getTypeParser(oid, 'text') as (value: string) => Date;
        return (value: string) => toDate(value).toISOString();
      }
      case PG_JSON:
      case PG_JSONB:
        return (value: string) => value;
      default:
        return pg.types.getTypeParser(oid, format);
    }
  }) as pg.CustomTypesConfig['getTypeParser'],
};

export async function connect(location: StoreLocation): Promise<Kysely<Database>> {
  return location.dialect === 'sqlite' ? connectSqlite(location.path) : connectPostgres(location.url, location);
}

function unavailable(location: StoreLocation, cause: unknown, hint: string): DmrError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new DmrError('STORE_UNAVAILABLE', `cannot open ${describeLocation(location)}: ${reason}`, { hint, cause });
}

function connectSqlite(path: string): Kysely<Database> {
  const location: StoreLocation = { dialect: 'sqlite', path };
  let database: Sqlite.Database;
  try {
    database = new Sqlite(path, { timeout: SQLITE_BUSY_TIMEOUT_MS });
  } catch (error) {
    throw unavailable(location, error, 'check that the directory exists and is writable');
  }
  try {
    // WAL lets readers (the config feed) run while a writer commits; NORMAL
    // sync is durable across process crashes in WAL mode. Foreign keys are
    // off by default in SQLite and must be switched on per connection.
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = NORMAL');
    database.pragma('foreign_keys = ON');
    database.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  } catch (error) {
    database.close();
    throw unavailable(location, error, 'is the file a SQLite database written by CentOps?');
  }
  return new Kysely<Database>({ dialect: new SqliteDialect({ database }) });
}

async function connectPostgres(url: string, location: StoreLocation): Promise<Kysely<Database>> {
  const pool = new pg.Pool({ connectionString: url, types: pgTypes, application_name: 'dmr-centops', max: 10 });
  // An idle pooled connection that the server drops emits 'error' on the
  // pool; unhandled, that would crash the process. The next query reports it.
  pool.on('error', () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await sql`select 1`.execute(db);
  } catch (error) {
    await db.destroy();
    throw unavailable(
      location,
      error,
      'check the postgres:// URL (host, port, user, database) and that the server accepts connections',
    );
  }
  return db;
}
