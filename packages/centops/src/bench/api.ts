/**
 * Benchmark (not a test): CentOps API requests per second and latency over
 * real mutual TLS on loopback, on SQLite and PostgreSQL.
 *
 *   npm run bench -- api [--seconds 5 --stores sqlite,postgres --clients 100 --postgres URL]
 *
 * Per store: a fresh CentOps (`initCentOps --dev`; SQLite in a temp
 * directory, PostgreSQL in a `dmr_bench_<random>` database dropped at the
 * end), seeded with one organisation, two nodes and --clients clients. Then,
 * for each operation and concurrency 1/8/32, a worker thread keeps that many
 * requests in flight over keep-alive connections for --seconds (after a
 * short warm-up that pays the TLS handshakes) and reports every latency.
 *
 * The load runs in a worker thread so it does not share the server's event
 * loop: otherwise the figures would measure the client as much as the API.
 * Both still share the machine's cores, as they would not in production.
 *
 * Operations (the admin certificate, so every request is authenticated and
 * authorised like any other):
 *   get     GET  /v1/clients/{id}              one client, ETag
 *   list    GET  /v1/clients?limit=100         one page of 100 clients
 *   put     PUT  /v1/clients/{id}              a real change (a label), new revision
 *   apply   POST /v1/apply [one Client upsert] a real change through the batch path
 * Writers each change their own client, so they contend only where the
 * store serialises every writer (the registry_state row lock), as in use.
 */
import { Agent, request } from 'node:https';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { markdownTable, percentile } from '@dmr/core';
import { STORE_OPTIONS, storeTarget, type StoreTarget } from './store-target.js';
import { startEmptyCentOps } from '../server/test-support/empty-centops.js';
import type { Change, Client, DmrNode } from '../index.js';

const OPERATIONS = ['get', 'list', 'put', 'apply'] as const;
type Operation = (typeof OPERATIONS)[number];
const CONCURRENCY = [1, 8, 32] as const;
const MAX_CONCURRENCY = 32;
const WARMUP_MS = 500;

interface CellRequest {
  apiUrl: string;
  ca: string;
  cert: string;
  key: string;
  operation: Operation;
  concurrency: number;
  seconds: number;
  clients: number;
}

interface CellResult {
  latenciesMs: number[];
  errors: number;
  elapsedMs: number;
  firstError?: string;
}

const clientId = (index: number) => `bench-client-${index}`;

function clientSpec(index: number, label: string): Client {
  return {
    id: clientId(index),
    organisation: 'bench-org',
    homeNode: index % 2 === 0 ? 'dmr-bench-a' : 'dmr-bench-b',
    roles: ['chatbot'],
    labels: { seq: label },
    status: 'active',
    certificateProfile: { keyAlgorithm: 'ecdsa-p256', lifetime: '7d', extraDns: [], extraIps: [] },
  };
}

function nodeSpec(id: string): DmrNode {
  return {
    id,
    amqpsEndpoint: `amqps://${id}.bench.example:5671`,
    managementEndpoint: `https://${id}.bench.example:15671`,
    labels: {},
    certificateProfile: { keyAlgorithm: 'ecdsa-p256', lifetime: '7d', extraDns: [`${id}.bench.example`], extraIps: [] },
  };
}

// ---------------------------------------------------------------- load (worker thread)

function send(agent: Agent, url: string, method: string, body: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      url,
      {
        method,
        agent,
        headers: payload === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

function requestFor(
  cell: CellRequest,
  lane: number,
  sequence: number,
): { method: string; path: string; body?: unknown } {
  switch (cell.operation) {
    case 'get':
      return { method: 'GET', path: `/v1/clients/${clientId((lane * 7 + sequence) % cell.clients)}` };
    case 'list':
      return { method: 'GET', path: '/v1/clients?limit=100' };
    case 'put':
      return { method: 'PUT', path: `/v1/clients/${clientId(lane)}`, body: clientSpec(lane, `put-${sequence}`) };
    case 'apply':
      return {
        method: 'POST',
        path: '/v1/apply',
        body: [{ kind: 'Client', spec: clientSpec(lane, `apply-${sequence}`) }],
      };
  }
}

async function runCell(cell: CellRequest): Promise<CellResult> {
  const agent = new Agent({
    keepAlive: true,
    maxSockets: cell.concurrency,
    ca: cell.ca,
    cert: cell.cert,
    key: cell.key,
  });
  const latenciesMs: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let sequence = 0;
  const start = performance.now();
  const measureFrom = start + WARMUP_MS;
  const deadline = measureFrom + cell.seconds * 1000;
  async function lane(index: number): Promise<void> {
    for (;;) {
      const sentAt = performance.now();
      if (sentAt >= deadline) return;
      const { method, path, body } = requestFor(cell, index, (sequence += 1));
      let ok = false;
      try {
        const response = await send(agent, `${cell.apiUrl}${path}`, method, body);
        ok = response.status === 200;
        if (!ok) firstError ??= `${method} ${path}: ${response.status} ${response.text.slice(0, 200)}`;
      } catch (error) {
        firstError ??= `${method} ${path}: ${error instanceof Error ? error.message : String(error)}`;
      }
      if (sentAt < measureFrom) continue;
      if (ok) latenciesMs.push(performance.now() - sentAt);
      else errors += 1;
    }
  }
  await Promise.all(Array.from({ length: cell.concurrency }, (_, index) => lane(index)));
  agent.destroy();
  return { latenciesMs, errors, elapsedMs: performance.now() - measureFrom, firstError };
}

if (!isMainThread) {
  const result = await runCell(workerData as CellRequest);
  parentPort?.postMessage(result);
}

// ---------------------------------------------------------------- orchestration (main thread)

function runInWorker(cell: CellRequest): Promise<CellResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: cell });
    worker.once('message', (result: CellResult) => resolve(result));
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`benchmark worker exited with ${code}`));
    });
  });
}

interface Row {
  store: string;
  operation: Operation;
  concurrency: number;
  requests: number;
  perSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

async function benchStore(target: StoreTarget, options: { seconds: number; clients: number }): Promise<Row[]> {
  try {
    const centops = await startEmptyCentOps({
      label: 'bench-api',
      trustDomain: 'dmr.bench',
      database: target.database,
      server: { logger: false },
    });
    try {
      const { server } = centops;
      const seed: Change[] = [
        { op: 'create', kind: 'Organisation', spec: { id: 'bench-org', name: 'Bench', labels: {} } },
        { op: 'create', kind: 'Node', spec: nodeSpec('dmr-bench-a') },
        { op: 'create', kind: 'Node', spec: nodeSpec('dmr-bench-b') },
        ...Array.from({ length: options.clients }, (_, index): Change => ({
          op: 'create',
          kind: 'Client',
          spec: clientSpec(index, 'seed'),
        })),
      ];
      await server.store.applyChanges(seed, 'local:bench');
      const credentials = { ca: centops.rootPem, ...centops.admin };
      const rows: Row[] = [];
      for (const operation of OPERATIONS) {
        for (const concurrency of CONCURRENCY) {
          const result = await runInWorker({
            apiUrl: server.apiUrl,
            ...credentials,
            operation,
            concurrency,
            seconds: options.seconds,
            clients: options.clients,
          });
          if (result.firstError !== undefined)
            process.stderr.write(`${target.name} ${operation}: ${result.firstError}\n`);
          const sorted = [...result.latenciesMs].sort((a, b) => a - b);
          rows.push({
            store: target.name,
            operation,
            concurrency,
            requests: sorted.length,
            perSecond: sorted.length / (result.elapsedMs / 1000),
            p50: percentile(sorted, 50),
            p99: percentile(sorted, 99),
            errors: result.errors,
          });
          process.stderr.write(`  ${target.name} ${operation} c=${concurrency}: ${sorted.length} requests\n`);
        }
      }
      return rows;
    } finally {
      await centops.close();
    }
  } finally {
    await target.cleanup();
  }
}

function table(rows: readonly Row[]): string {
  const header = ['store', 'operation', 'conc', 'requests', 'req/s', 'p50 ms', 'p99 ms', 'errors'];
  const cells = rows.map((row) => [
    row.store,
    row.operation,
    String(row.concurrency),
    String(row.requests),
    row.perSecond.toFixed(0),
    row.p50.toFixed(2),
    row.p99.toFixed(2),
    String(row.errors),
  ]);
  return markdownTable(header, cells);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      clients: { type: 'string', default: '100' },
      ...STORE_OPTIONS,
    },
  });
  const seconds = Number(values.seconds);
  const clients = Number(values.clients);
  if (!(seconds > 0) || !Number.isInteger(clients) || clients < MAX_CONCURRENCY) {
    throw new Error(`--seconds must be > 0 and --clients at least ${MAX_CONCURRENCY} (one per writer)`);
  }
  const stores = values.stores.split(',').map((name) => name.trim());
  const rows: Row[] = [];
  for (const store of stores) {
    process.stderr.write(`${store}: ${OPERATIONS.length * CONCURRENCY.length} cells of ${seconds} s\n`);
    const target = await storeTarget(store, values.postgres);
    rows.push(...(await benchStore(target, { seconds, clients })));
  }
  console.log(
    `CentOps API over mTLS on loopback, keep-alive; ${seconds} s per cell; ${clients} clients; ` +
      `node ${process.version}, ${availableParallelism()} CPUs`,
  );
  console.log(table(rows));
}

if (isMainThread) await main();
