/**
 * Benchmark (not a test): time from an accepted change to the arrival of the
 * new signed document at every one of N nodes subscribed over server-sent
 * events, through the real CentOps server (mutual TLS on both listeners).
 *
 *   npm run bench -- feed [--nodes 100 --changes 30 --warmup 3 --stores sqlite,postgres --postgres URL --max-seconds 600]
 *
 * Per store: a fresh CentOps (`initCentOps --dev`; SQLite in a temp
 * directory, PostgreSQL in a `dmr_bench_<random>` database dropped at the
 * end), seeded with N nodes (a ring plus chords, so routes have a few hops)
 * and two clients per node. Each node is enrolled as a real node would be:
 * an operator's bootstrap token, a CSR for a key made here, POST /v1/enroll
 * on the enrolment listener. Every node then opens
 * GET /v1/nodes/{id}/config/stream with its own certificate (N TLS
 * connections) and verifies its first document with verifyNodeConfig.
 *
 * After --warmup unmeasured changes (the first store of a run otherwise pays
 * for JIT compilation), a round: the admin creates a client through the API (POST /v1/clients,
 * a new revision, so every node's document changes: the directory has every
 * client). Latency = from sending that request to the arrival of the event
 * carrying the new revision, per node; "all nodes" is the last node's. The
 * API's own answer time is shown beside it. Arrivals are timed as the event's
 * last byte is parsed.
 *
 * The nodes and the operator run in a worker thread so they do not share the
 * server's event loop (they still share the machine's cores; real nodes
 * would not). Bounded: a round waits at most --round-timeout seconds, the
 * whole run at most --max-seconds; what was measured until then is printed.
 */
import { Agent } from 'node:https';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { configSignerSpiffeId, verifyNodeConfig } from '../feed/signing.js';
import { openSse, type SseClient } from '../feed/sse-client.js';
import { startEmptyCentOps } from '../server/test-support/empty-centops.js';
import { call } from '../server/test-support/https.js';
import type { Change } from '../store/types.js';
import { client, link, node, organisation } from '../store/test-support/fixtures.js';
import { markdownTable, percentile } from '@dmr/core';
import { STORE_OPTIONS, storeTarget, type StoreTarget } from './store-target.js';

const TD = 'dmr.bench';

interface Credentials {
  cert: string;
  key: string;
}

interface WorkerInput {
  apiUrl: string;
  ca: string;
  admin: Credentials;
  nodes: Array<{ id: string } & Credentials>;
  changes: number;
  /** Changes made first and not measured (JIT, TLS buffers and pools warm up). */
  warmup: number;
  roundTimeoutMs: number;
  gapMs: number;
  deadline: number;
}

interface WorkerResult {
  /** Per node and round, ms from sending the change to the event's arrival. */
  perNode: number[];
  /** Per round, the last node's arrival. */
  allNodes: number[];
  /** Per round, the API's answer time. */
  api: number[];
  rounds: number;
  /** Arrivals missing when a round timed out. */
  missing: number;
  documentBytes: number;
  setupMs: number;
  problems: string[];
}

// ---------------------------------------------------------------- HTTPS

async function inBatches<T, R>(items: readonly T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let start = 0; start < items.length; start += size) {
    results.push(...(await Promise.all(items.slice(start, start + size).map(work))));
  }
  return results;
}

// ---------------------------------------------------------------- nodes and operator (worker thread)

async function runNodes(input: WorkerInput): Promise<WorkerResult> {
  const setupStart = performance.now();
  const problems: string[] = [];
  const streams: SseClient[] = [];
  const agents: Agent[] = [];
  /** Per stream: the newest revision it received. */
  const latest = new Map<string, number>();
  let round: { base: number; sentAt: number; arrivals: number[]; done: () => void } | undefined;
  let documentBytes = 0;

  await inBatches(input.nodes, 20, async (entry) => {
    const agent = new Agent({ ca: input.ca, cert: entry.cert, key: entry.key, keepAlive: true });
    agents.push(agent);
    const stream = await openSse(`${input.apiUrl}/v1/nodes/${entry.id}/config/stream`, {}, agent);
    if (stream.status !== 200) throw new Error(`${entry.id}: stream answered ${stream.status}`);
    streams.push(stream);
    const first = await stream.next(30_000);
    const verified = await verifyNodeConfig(first.data, {
      trustBundlePem: input.ca,
      expectedSigner: configSignerSpiffeId(TD),
      expectedNodeId: entry.id,
    });
    documentBytes = Math.max(documentBytes, first.data.length);
    latest.set(entry.id, verified.config.revision);
    stream.onEvent = (event) => {
      const arrivedAt = performance.now();
      if (event.event === 'error') {
        problems.push(`${entry.id}: ${event.data.slice(0, 200)}`);
        return;
      }
      if (event.event !== 'config') return;
      const revision = Number(event.id);
      const before = latest.get(entry.id) ?? -1;
      latest.set(entry.id, Math.max(before, revision));
      if (round !== undefined && before <= round.base && revision > round.base) {
        round.arrivals.push(arrivedAt - round.sentAt);
        if (round.arrivals.length === input.nodes.length) round.done();
      }
    };
  });
  // Events queued while verifying the first document are drained; every stream is now live.
  const setupMs = performance.now() - setupStart;

  const adminAgent = new Agent({ ca: input.ca, cert: input.admin.cert, key: input.admin.key, keepAlive: true });
  const result: WorkerResult = {
    perNode: [],
    allNodes: [],
    api: [],
    rounds: 0,
    missing: 0,
    documentBytes,
    setupMs,
    problems,
  };
  for (let index = 0; index < input.warmup + input.changes && Date.now() < input.deadline; index++) {
    const measured = index >= input.warmup;
    const base = Math.max(...latest.values());
    const arrivals: number[] = [];
    let done: () => void = () => undefined;
    const complete = new Promise<void>((resolve) => (done = resolve));
    const sentAt = performance.now();
    round = { base, sentAt, arrivals, done };
    const home = input.nodes[index % input.nodes.length]?.id as string;
    const response = await call(`${input.apiUrl}/v1/clients`, {
      agent: adminAgent,
      ca: input.ca,
      method: 'POST',
      body: client(`bench-extra-${index}`, 'bench', home),
    });
    const answeredAt = performance.now();
    if (response.status !== 201) {
      problems.push(`change ${index}: ${response.status} ${response.text.slice(0, 200)}`);
      break;
    }
    const revision = (response.json as { revision: number }).revision;
    if (revision !== base + 1) problems.push(`change ${index}: revision ${revision}, expected ${base + 1}`);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([complete, new Promise<void>((resolve) => (timer = setTimeout(resolve, input.roundTimeoutMs)))]);
    clearTimeout(timer);
    round = undefined;
    if (!measured) continue;
    result.rounds += 1;
    result.api.push(answeredAt - sentAt);
    result.perNode.push(...arrivals);
    if (arrivals.length === input.nodes.length) result.allNodes.push(Math.max(...arrivals));
    else result.missing += input.nodes.length - arrivals.length;
    await new Promise((resolve) => setTimeout(resolve, input.gapMs));
  }
  for (const stream of streams) stream.close();
  for (const agent of [...agents, adminAgent]) agent.destroy();
  return result;
}

if (!isMainThread) {
  parentPort?.postMessage(await runNodes(workerData as WorkerInput));
}

// ---------------------------------------------------------------- orchestration (main thread)

function runInWorker(input: WorkerInput): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: input });
    // The worker bounds itself; this is the backstop if a stream hangs during setup.
    const backstop = setTimeout(
      () => void worker.terminate().then(() => reject(new Error('the benchmark worker overran --max-seconds'))),
      Math.max(0, input.deadline - Date.now()) + 60_000,
    );
    worker.once('message', (result: WorkerResult) => {
      clearTimeout(backstop);
      resolve(result);
    });
    worker.once('error', (error) => {
      clearTimeout(backstop);
      reject(error);
    });
  });
}

function seedChanges(ids: readonly string[]): Change[] {
  const seed: Change[] = [{ op: 'create', kind: 'Organisation', spec: organisation('bench') }];
  for (const id of ids) seed.push({ op: 'create', kind: 'Node', spec: node(id) });
  // A ring plus chords: every node reachable, routes of a few hops.
  const links = new Map<string, Change>();
  for (const [index, id] of ids.entries()) {
    for (const [step, cost] of [
      [1, 10],
      [7, 35],
    ] as const) {
      const other = ids[(index + step) % ids.length] as string;
      if (other === id) continue;
      const spec = link(id, other, cost);
      links.set(spec.id, { op: 'create', kind: 'Link', spec });
    }
  }
  seed.push(...links.values());
  for (const [index, id] of ids.entries()) {
    for (const n of [0, 1]) seed.push({ op: 'create', kind: 'Client', spec: client(`bot-${index}-${n}`, 'bench', id) });
  }
  return seed;
}

interface Row {
  store: string;
  result: WorkerResult;
  enrolMs: number;
}

async function benchStore(
  target: StoreTarget,
  options: { nodes: number; changes: number; warmup: number; roundTimeoutMs: number; gapMs: number; deadline: number },
): Promise<Row> {
  try {
    const centops = await startEmptyCentOps({
      label: 'bench-feed',
      trustDomain: TD,
      database: target.database,
      server: { logger: false },
    });
    try {
      const { server, rootPem: ca, admin } = centops;
      const ids = Array.from({ length: options.nodes }, (_, index) => `bench-node-${String(index).padStart(3, '0')}`);
      await server.store.applyChanges(seedChanges(ids), 'local:bench');

      const enrolStart = performance.now();
      const nodes = await inBatches(ids, 10, async (id) => ({
        id,
        ...(await centops.enrol(id, { kind: 'node', dns: [`${id}.dmr.example.ee`] })),
      }));
      const enrolMs = performance.now() - enrolStart;
      process.stderr.write(`  ${target.name}: ${nodes.length} nodes enrolled in ${(enrolMs / 1000).toFixed(1)} s\n`);

      const result = await runInWorker({
        apiUrl: server.apiUrl,
        ca,
        admin,
        nodes,
        changes: options.changes,
        warmup: options.warmup,
        roundTimeoutMs: options.roundTimeoutMs,
        gapMs: options.gapMs,
        deadline: options.deadline,
      });
      for (const problem of result.problems.slice(0, 5)) process.stderr.write(`  ${target.name}: ${problem}\n`);
      return { store: target.name, result, enrolMs };
    } finally {
      await centops.close();
    }
  } finally {
    await target.cleanup();
  }
}

function table(rows: readonly Row[]): string {
  const header = ['store', 'measure', 'samples', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'];
  const cells: string[][] = [];
  for (const row of rows) {
    const measures: Array<[string, number[]]> = [
      ['change → each node', row.result.perNode],
      ['change → all nodes', row.result.allNodes],
      ['API answer (POST /v1/clients)', row.result.api],
    ];
    for (const [name, data] of measures) {
      const sorted = [...data].sort((a, b) => a - b);
      cells.push([
        row.store,
        name,
        String(sorted.length),
        ...[50, 95, 99].map((p) => percentile(sorted, p).toFixed(1)),
        (sorted[sorted.length - 1] ?? NaN).toFixed(1),
      ]);
    }
  }
  return markdownTable(header, cells);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '100' },
      changes: { type: 'string', default: '30' },
      warmup: { type: 'string', default: '3' },
      ...STORE_OPTIONS,
      'round-timeout': { type: 'string', default: '10' },
      'gap-ms': { type: 'string', default: '100' },
      'max-seconds': { type: 'string', default: '600' },
    },
  });
  const nodes = Number(values.nodes);
  const changes = Number(values.changes);
  const warmup = Number(values.warmup);
  const roundTimeoutMs = Number(values['round-timeout']) * 1000;
  const gapMs = Number(values['gap-ms']);
  const maxSeconds = Number(values['max-seconds']);
  if (
    ![nodes, changes].every((n) => Number.isInteger(n) && n >= 1) ||
    !(Number.isInteger(warmup) && warmup >= 0) ||
    !(roundTimeoutMs > 0) ||
    !(maxSeconds > 0)
  ) {
    throw new Error('--nodes, --changes ≥ 1 and --warmup ≥ 0 must be integers; --round-timeout and --max-seconds > 0');
  }
  const stores = values.stores.split(',').map((name) => name.trim());
  const started = Date.now();
  const rows: Row[] = [];
  for (const [index, store] of stores.entries()) {
    const target = await storeTarget(store, values.postgres);
    // Each store gets an equal share of what is left of --max-seconds.
    const share = (started + maxSeconds * 1000 - Date.now()) / (stores.length - index);
    process.stderr.write(`${target.name}: ${nodes} nodes, ${warmup} warm-up + ${changes} measured changes\n`);
    rows.push(
      await benchStore(target, {
        nodes,
        changes,
        warmup,
        roundTimeoutMs,
        gapMs,
        deadline: Date.now() + Math.max(0, share),
      }),
    );
  }
  console.log(
    `CentOps config feed over mTLS on loopback: change via the API → SSE arrival at ${nodes} nodes, each with ` +
      `its own certificate; node ${process.version}, ${availableParallelism()} CPUs`,
  );
  for (const row of rows) {
    const r = row.result;
    console.log(
      `${row.store}: ${r.rounds} changes, ${r.missing} arrivals missing, document ≈ ${(r.documentBytes / 1024).toFixed(0)} KiB ` +
        `(JWS), enrolment ${(row.enrolMs / 1000).toFixed(1)} s, streams open + first documents verified in ${(r.setupMs / 1000).toFixed(1)} s`,
    );
  }
  console.log('');
  console.log(table(rows));
}

if (isMainThread) await main();
