/**
 * Endpoint client benchmark (a measurement, not a test): what one POST of a
 * delivered v1 message costs the bridge's process with node:http's keep-alive
 * Agent (the raw baseline, what delivery.ts used before decision 0029) and
 * with the undici Pool delivery.ts uses now, at the same concurrency, against
 * one endpoint in a child process (so this process's CPU is the client's
 * alone). Run: `npm run bench -- endpoint-client [--requests N] [--concurrency N] [--rounds N]`.
 */
import { fork } from 'node:child_process';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const USAGE = `npm run bench -- endpoint-client [-- options]

  --requests N       POSTs per client and round (default 20000)
  --concurrency N    POSTs under way at once (default 32)
  --rounds N         rounds of both clients, alternating (default 3)
  --help             this text

Prints requests/s and the client's CPU µs per POST (user + system, this process only).`;

async function serve(): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as AddressInfo).port));
}

function positive(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`error: --${name} wants a positive whole number, not "${text}"\n\n${USAGE}`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      requests: { type: 'string', default: '20000' },
      concurrency: { type: 'string', default: '32' },
      rounds: { type: 'string', default: '3' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const requests = positive('requests', values.requests);
  const concurrency = positive('concurrency', values.concurrency);
  const rounds = positive('rounds', values.rounds);
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], { stdio: 'inherit' });
  try {
    const port = await new Promise<number>((resolve) => child.once('message', (value) => resolve(Number(value))));
    const url = new URL(`http://127.0.0.1:${port}/dmr/messages`);
    // A delivered v1 message of the bridge benchmark's size (≈ 500 bytes).
    const body = JSON.stringify({
      id: '6f9619ff-8b86-4011-b42d-00c04fc964ff',
      senderId: 'ria-bot',
      recipientId: 'rik-bot',
      timestamp: new Date().toISOString(),
      type: 'ChatMessage',
      payload: { chat: { id: 'c-1', created: new Date().toISOString() }, messages: [{ content: 'x'.repeat(300) }] },
    });
    const headers = { 'content-type': 'application/json' };
    const agent = new Agent({ keepAlive: true, maxSockets: 256 });
    const viaAgent = (): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request(
          url,
          { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.setNoDelay(true);
        req.on('error', reject);
        req.end(body);
      });
    const pool = new Pool(url.origin, { connections: concurrency, pipelining: 1 });
    const viaPool = async (): Promise<number> => {
      const response = await pool.request({ path: url.pathname, method: 'POST', headers, body });
      await response.body.dump();
      return response.statusCode;
    };
    const measure = async (post: () => Promise<number>): Promise<{ rate: number; cpuUs: number }> => {
      let started = 0;
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (started < requests) {
            started += 1;
            if ((await post()) !== 204) throw new Error('the endpoint did not answer 204');
          }
        }),
      );
      const used = process.cpuUsage(cpu);
      return {
        rate: requests / ((performance.now() - t0) / 1000),
        cpuUs: (used.user + used.system) / requests,
      };
    };
    console.log(`\nPOST to a local endpoint, ${requests} per round, ${concurrency} at once`);
    console.log(' round | node:http Agent (raw) msg/s | µs CPU | undici Pool msg/s | µs CPU | CPU ratio');
    for (let round = 1; round <= rounds; round += 1) {
      const raw = await measure(viaAgent);
      const undici = await measure(viaPool);
      console.log(
        [
          String(round).padStart(6),
          raw.rate.toFixed(0).padStart(28),
          raw.cpuUs.toFixed(1).padStart(7),
          undici.rate.toFixed(0).padStart(18),
          undici.cpuUs.toFixed(1).padStart(7),
          (undici.cpuUs / raw.cpuUs).toFixed(2).padStart(10),
        ].join(' |'),
      );
    }
    agent.destroy();
    await pool.close();
  } finally {
    child.kill();
  }
}

if (process.argv.includes('--serve')) await serve();
else await main();
