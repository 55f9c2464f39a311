/**
 * Bridge benchmark (a measurement, not a test): delivered
 * messages per second and p50/p99 end-to-end latency, closed loop, at
 * concurrency 1, 8 and 32, from `POST /v1/messages` on ria-bot's bridge to
 * arrival at rik-bot's bridge's endpoint. Real NodeFixture (TLS broker,
 * policy); the router and both bridges (`dmr bridge run`, configured by
 * environment variables) run as child processes, as in production, so the
 * load generator and the endpoint (this process) do not share their thread.
 * Run: `npm run bench -- bridge` (BENCH_SECONDS per level, default 10;
 * BENCH_LEVELS, default 1,8,32).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { percentile, sortedSamples } from '@dmr/core';
import { readProcStat } from '@dmr/broker-harness';
import { NodeFixture, freePort } from '@dmr/testkit';
import type { V1Delivered, V1Message } from '../v1.js';

/** packages/cli/bin/dmr.js, from packages/bridge/dist/bench. */
const DMR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'cli', 'bin', 'dmr.js');

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

const SECONDS = Number(process.env.BENCH_SECONDS ?? '10');
const LEVELS = (process.env.BENCH_LEVELS ?? '1,8,32').split(',').map(Number);
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

async function main(): Promise<void> {
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
      arrivals.get(document.id)?.();
    });
  });
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  const endpointUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/in`;
  const children: ChildProcess[] = [];
  const urls: string[] = [];
  try {
    for (const id of ['ria-bot', 'rik-bot']) {
      const issued = await node.ca.issueWithKey({ kind: 'client', id });
      const tls = { certFile: join(dir, `${id}.crt`), keyFile: join(dir, `${id}.key`), caFile: join(dir, 'ca.pem') };
      await writeFile(tls.certFile, issued.chainPem);
      await writeFile(tls.keyFile, issued.privateKeyPem);
      await writeFile(tls.caFile, node.harness.trustBundlePem);
      const port = await freePort();
      const profileDir = process.env.DMR_BENCH_CPU_PROF;
      const profile = profileDir
        ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${id}.cpuprofile`]
        : [];
      const child = spawn(process.execPath, [...profile, DMR, 'bridge', 'run'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: {
          ...process.env,
          DMR_BRIDGE_ID: id,
          DMR_BRIDGE_NODE: node.nodeId,
          DMR_BRIDGE_LISTEN: `127.0.0.1:${port}`,
          DMR_BRIDGE_BROKER_URL: `amqps://127.0.0.1:${node.harness.node(0).amqpsPort}`,
          DMR_BRIDGE_BROKER_SERVER_NAME: 'localhost',
          DMR_BRIDGE_TLS_CERT_FILE: tls.certFile,
          DMR_BRIDGE_TLS_KEY_FILE: tls.keyFile,
          DMR_BRIDGE_TLS_CA_FILE: tls.caFile,
          DMR_BRIDGE_ENDPOINT_URL: endpointUrl,
          DMR_BRIDGE_DELIVERY_CONCURRENCY: '64',
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
    const target = new URL(`${urls[0] ?? ''}/v1/messages`);
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const post = (body: Buffer): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request(
          target,
          {
            method: 'POST',
            agent,
            headers: {
              'content-type': 'application/json',
              'content-length': body.length,
              authorization: `Bearer ${token}`,
            },
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
    /** Time to the 202 (the broker confirm), per message of the current level. */
    let answers: number[] = [];
    /** One message end to end: POST until arrival at the endpoint (ms). */
    const roundTrip = async (): Promise<number> => {
      const item = message();
      const body = Buffer.from(JSON.stringify(item), 'utf8');
      const arrived = new Promise<void>((resolve) => arrivals.set(item.id, resolve));
      const started = performance.now();
      const status = await post(body);
      answers.push(performance.now() - started);
      if (status !== 202) throw new Error(`POST answered ${status}`);
      await arrived;
      arrivals.delete(item.id);
      return performance.now() - started;
    };
    // Warm-up: the first message to a recipient waits for the node's verdict; JIT, connections.
    for (let i = 0; i < 200; i += 1) await roundTrip();
    const rows: string[] = [];
    const cpuRows: string[] = [];
    for (const concurrency of LEVELS) {
      const latencies: number[] = [];
      answers = [];
      const pids = {
        bridges: children.map((child) => child.pid),
        router: [router.child.pid],
        broker: [node.harness.node(0).pid],
        bench: [process.pid],
      };
      const cpu = (): Record<string, number> =>
        Object.fromEntries(
          Object.entries(pids).map(([name, list]) => [
            name,
            list.reduce<number>((sum, pid) => sum + cpuSeconds(pid), 0),
          ]),
        );
      const cpuBefore = cpu();
      const deadline = performance.now() + SECONDS * 1000;
      const started = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (performance.now() < deadline) latencies.push(await roundTrip());
        }),
      );
      const elapsed = (performance.now() - started) / 1000;
      const cpuAfter = cpu();
      cpuRows.push(
        `${String(concurrency).padStart(11)} |` +
          Object.keys(pids)
            .map((name) =>
              ((((cpuAfter[name] ?? 0) - (cpuBefore[name] ?? 0)) * 1000) / Math.max(1, latencies.length))
                .toFixed(2)
                .padStart(name.length + 8),
            )
            .join(' |'),
      );
      const sortedLatencies = sortedSamples(latencies);
      const sortedAnswers = sortedSamples(answers);
      const rate = latencies.length / elapsed;
      const reference = REFERENCE[concurrency];
      rows.push(
        [
          String(concurrency).padStart(11),
          rate.toFixed(0).padStart(9),
          percentile(sortedLatencies, 50).toFixed(1).padStart(7),
          percentile(sortedLatencies, 99).toFixed(1).padStart(7),
          percentile(sortedAnswers, 50).toFixed(1).padStart(9),
          String(latencies.length).padStart(9),
          (reference === undefined ? '–' : `${reference.rate} msg/s, p50 ${reference.p50} ms`).padStart(26),
          (reference === undefined ? '–' : `${(rate / reference.rate).toFixed(1)}×`).padStart(8),
        ].join(' |'),
      );
    }
    agent.destroy();
    console.log(`\nBridge → node → bridge → endpoint, closed loop, ${SECONDS} s per level (TLS, persistent, confirms)`);
    console.log(
      [
        ' concurrency',
        '   msg/s',
        ' p50 ms',
        ' p99 ms',
        ' 202 p50',
        ' messages',
        '   today’s Bürokratt DMR',
        ' speedup',
      ].join(' |'),
    );
    for (const row of rows) console.log(row);
    console.log('\nCPU ms per delivered message (2 cores shared by all of these):');
    console.log(' concurrency |  2 bridges |  router |  broker |  load+endpoint');
    for (const row of cpuRows) console.log(row);
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

await main();
