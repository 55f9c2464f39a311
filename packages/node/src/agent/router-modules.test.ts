import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROUTER_ENTRY } from './supervisor.js';

// The router is the data plane: it must not carry the control plane's HTTP server, query builder or SQL drivers.
const FORBIDDEN = ['fastify', 'kysely', 'better-sqlite3', 'pg', '@dmr/centops'];
const TRACE_HOOK = new URL('../testing/trace-modules.js', import.meta.url).href;

/** The package a resolved module URL belongs to (`@dmr/<dir>` for the workspace's own packages). */
function packageOf(url: string): string | undefined {
  const path = decodeURIComponent(url);
  const dependency = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*\/node_modules\/)/.exec(path);
  if (dependency !== null) return dependency[1];
  const workspace = /\/packages\/([^/]+)\/dist\//.exec(path);
  return workspace === null ? undefined : `@dmr/${workspace[1]}`;
}

describe('a router process', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-router-modules-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads neither Fastify nor Kysely nor a SQL driver nor CentOps', async () => {
    const configFile = join(dir, 'node.json');
    const traceFile = join(dir, 'modules.txt');
    await writeFile(traceFile, '');
    await writeFile(
      configFile,
      JSON.stringify({
        node: 'node-a',
        dataDir: './data',
        centops: {
          url: 'https://127.0.0.1:1',
          enrolUrl: 'https://127.0.0.1:1',
          caFile: 'ca.pem',
          trustDomain: 'dmr.test',
        },
        broker: {
          amqpsUrl: 'amqps://127.0.0.1:1',
          management: { url: 'http://127.0.0.1:1', username: 'admin', passwordFile: 'password' },
        },
      }),
    );
    // The production entry, as the supervisor spawns it. With no identity in the data dir it stops with
    // NOT_FOUND right after start: by then ES module linking has loaded its whole static import graph.
    const child = spawn(process.execPath, ['--import', TRACE_HOOK, ROUTER_ENTRY, '--config', configFile], {
      env: { ...process.env, DMR_TRACE_MODULES_FILE: traceFile },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.notEqual(code, 0);
    assert.match(stderr, /NOT_FOUND/, 'the router ran its own code (it found no identity)');

    const packages = new Set(
      (await readFile(traceFile, 'utf8'))
        .split('\n')
        .map(packageOf)
        .filter((name) => name !== undefined),
    );
    // The trace works: what a router needs is in it.
    for (const needed of ['amqplib', 'pino', '@dmr/policy', '@dmr/contract']) {
      assert.ok(packages.has(needed), `${needed} is among the router's modules`);
    }
    const loaded = FORBIDDEN.filter((name) => packages.has(name));
    assert.deepEqual(loaded, [], `a router process loaded ${loaded.join(', ')}`);
  });
});
