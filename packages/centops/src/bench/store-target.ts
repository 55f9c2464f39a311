/** The store a CentOps benchmark runs against: a throw-away PostgreSQL database, dropped afterwards. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface StoreTarget {
  name: string;
  database: string;
  cleanup(): Promise<void>;
}

export async function postgresTarget(adminUrl: string): Promise<StoreTarget> {
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
