/** The store a CentOps benchmark runs against: SQLite, or a throw-away PostgreSQL database dropped afterwards. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface StoreTarget {
  name: string;
  database: string;
  cleanup(): Promise<void>;
}

async function postgresTarget(adminUrl: string): Promise<StoreTarget> {
  const name = `dmr_bench_${randomBytes(6).toString('hex')}`;
  const admin = async (statement: string) => {
    const connection = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
    await connection.connect();
    try {
      await connection.query(statement);
    } finally {
      await connection.end();
    }
  };
  await admin(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { name: 'PostgreSQL', database: url.toString(), cleanup: () => admin(`drop database ${name} with (force)`) };
}

/** The `--stores` and `--postgres` options every CentOps benchmark takes (node:util parseArgs). */
export const STORE_OPTIONS = {
  stores: { type: 'string', default: 'sqlite,postgres' },
  postgres: {
    type: 'string',
    default: process.env.DMR_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  },
} as const;

/** The store called `name` in `--stores`: SQLite in the CentOps directory, or a fresh PostgreSQL database. */
export async function storeTarget(name: string, postgresUrl: string): Promise<StoreTarget> {
  if (name === 'postgres') return postgresTarget(postgresUrl);
  if (name === 'sqlite') return { name: 'SQLite', database: 'centops.db', cleanup: () => Promise.resolve() };
  throw new Error(`unknown store ${name}: use sqlite and/or postgres`);
}
