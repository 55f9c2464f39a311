/**
 * Bridge benchmark (a measurement, not a test): delivered messages per second
 * and p50/p99 end-to-end latency, closed loop (each sender waits for its
 * message to arrive before sending the next), at concurrency 1, 8 and 32,
 * from `POST /v1/messages` on ria-bot's bridge to arrival at rik-bot's
 * bridge's endpoint. Real NodeFixture (TLS broker, policy, audit); the router
 * and both bridges (`dmr bridge run`, configured by environment variables)
 * run as child processes, as in production, so the load generator and the
 * endpoint (this process) do not share their thread.
 *
 * In the same run, level by level, the raw baseline (support/raw-bridge.ts): the same
 * generator and endpoint through a bare HTTP → quorum queue → HTTP pair of
 * child processes on the same broker — what any bridge pair could do on this
 * machine right now, so a run on a busy machine still says something
 * (DMR/raw), and the load average is printed with it.
 * Run: `npm run bench -- bridge --help`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { percentile, sortedSamples, spiffeId } from '@dmr/core';
import { readProcStat } from '@dmr/broker-harness';
import { NodeFixture, freePort } from '@dmr/testkit';
import type { V1Delivered, V1Message } from '../v1.js';
import type { RawBridgeConfig } from './support/raw-bridge.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** packages/cli/bin/dmr.js, from packages/bridge/dist/bench. */
const DMR = join(HERE, '..', '..', '..', 'cli', 'bin', 'dmr.js');
const RAW_BRIDGE = join(HERE, 'support', 'raw-bridge.js');

const USAGE = `npm run bench -- bridge [-- options]

  --seconds S                measured seconds per level and path (default 10)
  --levels LIST              concurrent senders, closed loop (default 1,8,32)
  --delivery-concurrency N   the receiving bridge's delivery.concurrency (default: the product default)
  --loop arrival|accepted    a sender's next message goes once the last one arrived (default), or once it was
                             answered 202 (issue 14's generator: a receiving side that cannot keep up shows as latency)
  --no-raw                   skip the raw baseline (HTTP → quorum queue → HTTP, no DMR)
  --cpu-prof DIR             write a V8 CPU profile of each DMR bridge to DIR (ria-bot/rik-bot.cpuprofile)
  --help                     this text

Prints one table (DMR bridges next to the raw baseline, level by level, with the load average)
and the CPU each process spent per delivered message.`;

interface BenchOptions {
  seconds: number;
  levels: number[];
  deliveryConcurrency: number | undefined;
  raw: boolean;
  loop: 'arrival' | 'accepted';
  cpuProfileDir: string | undefined;
}

function parseOptions(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string', default: '10' },
      levels: { type: 'string', default: '1,8,32' },
      'delivery-concurrency': { type: 'string' },
      'no-raw': { type: 'boolean', default: false },
      loop: { type: 'string', default: 'arrival' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const positive = (flag: string, text: string): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value <= 0) {
      throw new Error(`--${flag} wants a positive whole number, not "${text}" (npm run bench -- bridge --help)`);
    }
    return value;
  };
  if (values.loop !== 'arrival' && values.loop !== 'accepted') {
    throw new Error(`--loop is arrival or accepted, not "${values.loop}" (npm run bench -- bridge --help)`);
  }
  return {
    loop: values.loop,
    seconds: positive('seconds', values.seconds),
    levels: values.levels.split(',').map((level) => positive('levels', level.trim())),
    deliveryConcurrency:
      values['delivery-concurrency'] === undefined
        ? undefined
        : positive('delivery-concurrency', values['delivery-concurrency']),
    raw: !values['no-raw'],
    cpuProfileDir: values['cpu-prof'],
  };
}

/** CPU seconds (user + system) a process used so far, from /proc (clock ticks of 10 ms); NaN when unknown. */
function cpuSeconds(pid: number | null | undefined): number {
  const stat = pid === null || pid === undefined ? undefined : readProcStat(pid);
  return stat === undefined ? Number.NaN : stat.cpuTicks / 100;
}

async function waitHealthy(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`bridge exited (${child.exitCode}): ${stderr()}`);
    try {
      if ((await fetch(`${url}/v1/health`)).status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`bridge at ${url} not healthy in 30 s: ${stderr()}`);
}

/** Starts a raw-bridge.ts child; resolves with its HTTP port (0 for the receiving one) once it says ready. */
async function startRaw(config: RawBridgeConfig): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [RAW_BRIDGE, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const ready = /ready (\d+)/.exec(output);
      if (ready) resolve(Number(ready[1]));
    });
    child.once('exit', (code) => reject(new Error(`raw ${config.role} bridge exited (${code}): ${output}`)));
  });
  return { child, port };
}

/** Today's Bürokratt DMR, the reference the bridge is compared with: msg/s and p50 ms at concurrency 1, 8, 32. */
const REFERENCE: Record<number, { rate: number; p50: number }> = {
  1: { rate: 100, p50: 39 },
  8: { rate: 200, p50: 81 },
  32: { rate: 235, p50: 208 },
};

function message(): V1Message {
  const chatId = randomUUID();
  return {
    id: randomUUID(),
    recipientId: 'rik-bot',
    timestamp: new Date().toISOString(),
    type: 'ChatMessage',
    payload: {
      chat: { id: chatId, created: new Date().toISOString(), endUserFirstName: 'Mari' },
      messages: [
        {
          id: randomUUID(),
          chatId,
          content: 'Tere! Mul on küsimus maksudeklaratsiooni kohta, kas saate aidata?',
          authorTimestamp: new Date().toISOString(),
          authorRole: 'end-user',
        },
      ],
    },
  };
}

/** One path under load: where to POST, and the processes whose CPU counts as its bridges and broker. */
interface Path {
  name: 'raw' | 'dmr';
  target: URL;
  headers: Record<string, string>;
  pids: Record<string, Array<number | null | undefined>>;
}

interface LevelResult {
  rate: number;
  p50: number;
  p99: number;
  answerP50: number;
  messages: number;
  /** Answers other than 202 (e.g. 503 past send.maxInFlight): not sent again, not counted as delivered. */
  refused: number;
  /** Answered 202 and not arrived 10 s after the level ended. */
  lost: number;
  /** CPU ms per delivered message by process group. */
  cpu: Record<string, number>;
}

/** Prints right-aligned columns as wide as their widest cell, separated by `|`. */
function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padStart(widths[column] ?? 0)).join(' | ');
  for (const cells of [header, ...rows]) console.log(line(cells));
}

/** Sum of the non-2xx endpoint attempts in a bridge's Prometheus text (retries). */
function retriesIn(metrics: string): number {
  let sum = 0;
  for (const line of metrics.split('\n')) {
    const match = /^dmr_bridge_delivery_attempts_total\{outcome="([^"]+)"\} (\d+)/.exec(line);
    if (match && match[1] !== '2xx') sum += Number(match[2]);
  }
  return sum;
}

async function main(options: BenchOptions): Promise<void> {
  const loadBefore = loadavg();
  // Measured as deployed: every POST carries a bearer token the bridge checks (a digest, constant time).
  const token = randomBytes(32).toString('base64url');
  const node = await NodeFixture.start({ label: 'bridge-bench', startRouters: false });
  const router = await node.spawnRouter(0);
  const dir = await mkdtemp(join(tmpdir(), 'dmr-bridge-bench-'));
  const arrivals = new Map<string, () => void>();
  const endpoint = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      res.writeHead(204).end();
      const document = JSON.parse(Buffer.concat(chunks).toString('utf8')) as V1Delivered;
      // The raw path delivers the id as sent (upper or lower case); the bridge lowercases it.
      arrivals.get(document.id.toLowerCase())?.();
    });
  });
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  const endpointUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/in`;
  const children: ChildProcess[] = [];
  const urls: string[] = [];
  const broker = node.harness.node(0);
  try {
    for (const id of ['ria-bot', 'rik-bot']) {
      const issued = await node.ca.issueWithKey({ kind: 'client', id });
      const tls = { certFile: join(dir, `${id}.crt`), keyFile: join(dir, `${id}.key`), caFile: join(dir, 'ca.pem') };
      await writeFile(tls.certFile, issued.chainPem);
      await writeFile(tls.keyFile, issued.privateKeyPem);
      await writeFile(tls.caFile, node.harness.trustBundlePem);
      const port = await freePort();
      const profile =
        options.cpuProfileDir === undefined
          ? []
          : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, `--cpu-prof-name=${id}.cpuprofile`];
      const child = spawn(process.execPath, [...profile, DMR, 'bridge', 'run'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: {
          ...process.env,
          DMR_BRIDGE_ID: id,
          DMR_BRIDGE_NODE: node.nodeId,
          DMR_BRIDGE_LISTEN: `127.0.0.1:${port}`,
          DMR_BRIDGE_BROKER_URL: `amqps://127.0.0.1:${broker.amqpsPort}`,
          DMR_BRIDGE_BROKER_SERVER_NAME: 'localhost',
          DMR_BRIDGE_TLS_CERT_FILE: tls.certFile,
          DMR_BRIDGE_TLS_KEY_FILE: tls.keyFile,
          DMR_BRIDGE_TLS_CA_FILE: tls.caFile,
          DMR_BRIDGE_ENDPOINT_URL: endpointUrl,
          ...(options.deliveryConcurrency === undefined
            ? {}
            : { DMR_BRIDGE_DELIVERY_CONCURRENCY: String(options.deliveryConcurrency) }),
          DMR_BRIDGE_LOG_LEVEL: 'warn',
          DMR_BRIDGE_AUTH_TOKENS: token,
        },
      });
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      children.push(child);
      const url = `http://127.0.0.1:${port}`;
      await waitHealthy(url, child, () => stderr);
      urls.push(url);
    }
    const paths: Path[] = [];
    if (options.raw) {
      const vhost = 'bench-raw';
      const queue = 'bench.raw';
      const management = node.harness.management();
      await management.declareVhost(vhost);
      const user = spiffeId(node.ca.trustDomain, 'client', 'bench-raw');
      await management.createCertificateUser(user);
      await management.setPermissions(vhost, user, { configure: '.*', write: '.*', read: '.*' });
      await management.declareQueue(vhost, queue, { arguments: { 'x-queue-type': 'quorum' } });
      const issued = await node.ca.issueWithKey({ kind: 'client', id: 'bench-raw' });
      const common = {
        amqpsPort: broker.amqpsPort,
        vhost,
        queue,
        caPem: node.harness.trustBundlePem,
        certificatePem: issued.chainPem,
        privateKeyPem: issued.privateKeyPem,
      };
      const sender = await startRaw({ role: 'send', ...common });
      const receiver = await startRaw({
        role: 'receive',
        ...common,
        endpointUrl,
        concurrency: options.deliveryConcurrency ?? 32,
      });
      children.push(sender.child, receiver.child);
      paths.push({
        name: 'raw',
        target: new URL(`http://127.0.0.1:${sender.port}/v1/messages`),
        headers: {},
        pids: { bridges: [sender.child.pid, receiver.child.pid], broker: [broker.pid], load: [process.pid] },
      });
    }
    paths.push({
      name: 'dmr',
      target: new URL(`${urls[0] ?? ''}/v1/messages`),
      headers: { authorization: `Bearer ${token}` },
      pids: {
        bridges: children.slice(0, 2).map((child) => child.pid),
        router: [router.child.pid],
        broker: [broker.pid],
        load: [process.pid],
      },
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const post = (target: URL, headers: Record<string, string>, body: Buffer): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request(
          target,
          {
            method: 'POST',
            agent,
            headers: { ...headers, 'content-type': 'application/json', 'content-length': body.length },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.setNoDelay(true);
        req.end(body);
      });

    /** Closed loop at `concurrency` senders for `seconds` (0: `count` messages one by one, unmeasured). */
    /**
     * Closed loop at `concurrency` senders for `seconds` (0: `count` messages, unmeasured). A sender sends its next
     * message once the last one arrived (`--loop arrival`) or once it was answered 202 (`--loop accepted`, the
     * issue 14 generator: a receiving side slower than the sending one shows as a growing latency).
     */
    const run = async (path: Path, concurrency: number, seconds: number, count = 0): Promise<LevelResult> => {
      const latencies: number[] = [];
      const answers: number[] = [];
      let refused = 0;
      let sent = 0;
      const endsAt = performance.now() + seconds * 1000;
      /** Accepted (202) and not arrived yet. */
      const pending = new Set<string>();
      /** Called at every arrival, so the drain below can tell progress from a stall. */
      let progress: () => void = () => undefined;
      // --loop arrival: a sender whose message has not arrived 10 s after the level's end stops; the drain counts it.
      let giveUp: () => void = () => undefined;
      const gaveUp = new Promise<void>((resolve) => (giveUp = resolve));
      const giveUpTimer = setTimeout(giveUp, seconds * 1000 + 10_000 + count * 100);
      const cpu = (): Record<string, number> =>
        Object.fromEntries(
          Object.entries(path.pids).map(([name, list]) => [
            name,
            list.reduce<number>((sum, pid) => sum + cpuSeconds(pid), 0),
          ]),
        );
      const cpuBefore = cpu();
      const started = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (seconds > 0 ? performance.now() < endsAt : sent < count) {
            sent += 1;
            const item = message();
            const id = item.id.toLowerCase();
            const t0 = performance.now();
            const arrived = new Promise<void>((resolve) =>
              arrivals.set(id, () => {
                arrivals.delete(id);
                pending.delete(id);
                latencies.push(performance.now() - t0);
                progress();
                resolve();
              }),
            );
            pending.add(id);
            // A failed request (reset, refused) counts with the answers other than 202.
            const status = await post(path.target, path.headers, Buffer.from(JSON.stringify(item), 'utf8')).catch(
              () => 0,
            );
            answers.push(performance.now() - t0);
            if (status !== 202) {
              refused += 1;
              arrivals.delete(id);
              pending.delete(id);
              continue;
            }
            if (
              options.loop === 'arrival' &&
              (await Promise.race([arrived, gaveUp.then(() => 'gave up')])) === 'gave up'
            ) {
              return;
            }
          }
        }),
      );
      clearTimeout(giveUpTimer);
      // Every accepted message arrives, or counts as lost after 10 s without any arrival.
      while (pending.size > 0 && (await stalled()) === 'moving');
      const lost = pending.size;
      for (const id of pending) arrivals.delete(id);
      const elapsed = (performance.now() - started) / 1000;
      const cpuAfter = cpu();
      const sorted = sortedSamples(latencies);
      return {
        rate: latencies.length / elapsed,
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        answerP50: percentile(sortedSamples(answers), 50),
        messages: latencies.length,
        refused,
        lost,
        cpu: Object.fromEntries(
          Object.keys(path.pids).map((name) => [
            name,
            (((cpuAfter[name] ?? 0) - (cpuBefore[name] ?? 0)) * 1000) / Math.max(1, latencies.length),
          ]),
        ),
      };

      /** 'moving' at the next arrival, 'stalled' after 10 s without one (one waiter at a time: the drain). */
      function stalled(): Promise<'moving' | 'stalled'> {
        return new Promise((resolve) => {
          const timer = setTimeout(() => resolve('stalled'), 10_000);
          progress = () => {
            progress = () => undefined;
            clearTimeout(timer);
            resolve('moving');
          };
        });
      }
    };
    const retries = async (): Promise<number> => {
      const response = await fetch(`${urls[1] ?? ''}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      return retriesIn(await response.text());
    };

    // Warm-up: the first message to a recipient waits for the node's verdict; JIT, connections, queue leaders.
    for (const path of paths) {
      await run(path, 1, 0, 200);
      await run(path, 32, 0, 1_000);
    }
    const rows: string[][] = [];
    const cpuRows: string[][] = [];
    const goals: string[] = [];
    for (const concurrency of options.levels) {
      // Raw first, then DMR, level by level: drift in the machine's load spreads over both.
      const results: Partial<Record<Path['name'], LevelResult>> = {};
      let dmrRetries = 0;
      for (const path of paths) {
        const retriesBefore = path.name === 'dmr' ? await retries() : 0;
        results[path.name] = await run(path, concurrency, options.seconds);
        if (path.name === 'dmr') dmrRetries = (await retries()) - retriesBefore;
      }
      const dmr = results.dmr as LevelResult;
      const raw = results.raw;
      const reference = REFERENCE[concurrency];
      rows.push([
        String(concurrency),
        raw === undefined ? '–' : raw.rate.toFixed(0),
        raw === undefined ? '–' : raw.p50.toFixed(1),
        dmr.rate.toFixed(0),
        dmr.p50.toFixed(1),
        dmr.p99.toFixed(1),
        dmr.answerP50.toFixed(1),
        String(dmr.messages),
        String(dmr.refused),
        String(dmr.lost),
        String(dmrRetries),
        raw === undefined ? '–' : `${((100 * dmr.rate) / raw.rate).toFixed(0)} %`,
        reference === undefined ? '–' : `${(dmr.rate / reference.rate).toFixed(1)}× of ${reference.rate}`,
      ]);
      const cell = (value: number | undefined): string => (value === undefined ? '–' : value.toFixed(2));
      cpuRows.push([
        String(concurrency),
        cell(dmr.cpu.bridges),
        cell(dmr.cpu.router),
        cell(dmr.cpu.broker),
        cell(dmr.cpu.load),
        cell(raw?.cpu.bridges),
        cell(raw?.cpu.broker),
        cell(raw?.cpu.load),
      ]);
      if (concurrency === 32) {
        goals.push(
          `issue 14, 32 senders: ${dmr.lost} accepted lost, e2e p99 ${dmr.p99.toFixed(0)} ms (goal 0 and < 1000 ms): ` +
            (dmr.lost === 0 && dmr.p99 < 1000 ? 'PASS' : 'MISS'),
          `issue 16, 32 senders: ${dmr.rate.toFixed(0)} delivered msg/s (goal ≥ 2,350, 10× Bürokratt): ` +
            (dmr.rate >= 2350 ? 'PASS' : 'MISS'),
        );
      }
      if (concurrency === 1) {
        goals.push(`issue 16, 1 sender: p50 ${dmr.p50.toFixed(1)} ms (goal ≤ 5 ms): ${dmr.p50 <= 5 ? 'PASS' : 'MISS'}`);
      }
    }
    agent.destroy();
    const load = (values: number[]): string => values.map((value) => value.toFixed(1)).join(' ');
    console.log(
      `\nBridge → node → bridge → endpoint, closed loop on ${options.loop === 'arrival' ? 'arrival' : 'the 202'}, ` +
        `${options.seconds} s per level and path ` +
        `(TLS, persistent, confirms); load average ${load(loadBefore)} before, ${load(loadavg())} after`,
    );
    printTable(
      [
        'level',
        'raw msg/s',
        'raw p50',
        'DMR msg/s',
        'p50 ms',
        'p99 ms',
        '202 p50',
        'messages',
        '503',
        'lost',
        'retries',
        'DMR/raw',
        'vs Bürokratt',
      ],
      rows,
    );
    console.log(
      '\nraw: the same generator and endpoint through a bare HTTP → quorum queue → HTTP pair (support/raw-bridge.ts);' +
        '\n503: answers other than 202 (or no answer); lost: 202 but not arrived 10 s after the level;' +
        ' retries: non-2xx endpoint attempts',
    );
    console.log('\nCPU ms per delivered message (2 cores shared by all of these):');
    printTable(
      ['level', 'bridges', 'router', 'broker', 'load+endpoint', 'raw: bridges', 'raw: broker', 'raw: load+endpoint'],
      cpuRows,
    );
    if (goals.length > 0) console.log(`\n${goals.join('\n')}`);
  } finally {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }),
    );
    await new Promise<void>((resolve) => {
      endpoint.closeAllConnections();
      endpoint.close(() => resolve());
    });
    await node.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

let parsed: BenchOptions | undefined;
try {
  parsed = parseOptions(process.argv.slice(2));
} catch (error) {
  console.error(`error: ${(error as Error).message}`);
  process.exit(2);
}
if (parsed === undefined) console.log(USAGE);
else await main(parsed);
