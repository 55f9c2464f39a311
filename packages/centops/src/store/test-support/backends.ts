/**
 * The databases the store's integration suite runs against: SQLite in a
 * temporary directory, and PostgreSQL in a database created for the run
 * (`dmr_test_<random>`, dropped at the end). `fresh()` hands out an empty
 * database for each test.
 *
 * PostgreSQL: DMR_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres)
 * is the maintenance database used to create and drop the test database.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface Backend {
  name: string;
  /** Set when the backend cannot run here, saying why. */
  skip: string | false;
  setup(): Promise<void>;
  /** The location of an empty database. */
  fresh(): Promise<string>;
  teardown(): Promise<void>;
}

export function sqliteBackend(): Backend {
  let dir = '';
  let count = 0;
  return {
    name: 'SQLite',
    skip: false,
    async setup() {
      dir = await mkdtemp(join(tmpdir(), 'dmr-centops-store-'));
    },
    fresh() {
      count += 1;
      return Promise.resolve(join(dir, `test-${count}.db`));
    },
    async teardown() {
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    },
  };
}

const ADMIN_URL = process.env.DMR_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Checks the server is there before the suite is declared, so an absent server is a visible skip. */
export async function postgresBackend(): Promise<Backend> {
  let skip: string | false = false;
  try {
    await withClient(ADMIN_URL, (client) => client.query('select 1'));
  } catch (error) {
    skip = `PostgreSQL not reachable at ${ADMIN_URL} (${error instanceof Error ? error.message : String(error)}); set DMR_TEST_POSTGRES`;
  }
  // CI sets DMR_REQUIRE_POSTGRES=1: there a missing server must fail the run, not hide half the suite.
  if (skip !== false && process.env.DMR_REQUIRE_POSTGRES === '1') throw new Error(skip);
  const database = `dmr_test_${randomBytes(6).toString('hex')}`;
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  const testUrl = url.toString();
  let created = false;
  return {
    name: 'PostgreSQL',
    skip,
    async setup() {
      await withClient(ADMIN_URL, (client) => client.query(`create database ${database}`));
      created = true;
    },
    async fresh() {
      // A new schema is as empty as a new database, and much faster to make.
      await withClient(testUrl, (client) => client.query('drop schema public cascade; create schema public'));
      return testUrl;
    },
    async teardown() {
      if (created) await withClient(ADMIN_URL, (client) => client.query(`drop database ${database} with (force)`));
    },
  };
}
