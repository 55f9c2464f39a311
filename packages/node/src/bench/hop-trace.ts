/**
 * `npm run bench -- hop-trace`: what tracing costs the router per message,
 * in CPU time (user + system of the router-side process, the OTLP export's
 * serialisation and HTTP included), tracing off against on, measured in
 * the same run (bench/README.md, "Traces"; decision 0032).
 *
 * Each variant runs in a child process of its own, because turning tracing
 * on registers a process-wide context manager that would also slow the
 * "off" variant down if they shared a process. The child runs the router's
 * tracing calls for one message exactly as the paths make them, without
 * the broker and the policy: HopTrace.run around an async path that marks
 * validated / policy / publish / confirm / audit, writes the hop span into
 * the published headers (traceHeaders), names the trace for the audit
 * record (traceIdFor) and records the decision (hopSettled). "on" exports
 * every span, batched, over OTLP/HTTP to a sink in the parent that reads
 * and drops what it gets (the collector's own cost is not the router's),
 * and flushes before the clock stops.
 *
 * Flags: --messages N per round (default 20000), 5 interleaved rounds, the
 * fastest of each variant kept (the machine is shared).
 */
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ConsumeMessage } from 'amqplib';
import { tracerProvider } from '@dmr/core/tracing-sdk';
import { HopTrace, hopEvent, hopSettled, traceHeaders, traceIdFor } from '../router/hop-trace.js';

const flag = (name: string): string | undefined => {
  const index = process.argv.indexOf(name);
  return index > 0 ? process.argv[index + 1] : undefined;
};
const messages = Number(flag('--messages') ?? 20_000);

function message(n: number): ConsumeMessage {
  return {
    content: Buffer.from('{}'),
    fields: {
      deliveryTag: n,
      redelivered: false,
      exchange: 'dmr.ingress',
      routingKey: 'dmr.ingress.0',
      consumerTag: 'c',
    },
    properties: {
      messageId: `0b7f5b6e-4a51-4f4e-9a5c-${String(n % 1_000_000).padStart(12, '0')}`,
      headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1 },
    },
  } as unknown as ConsumeMessage;
}

/** The router's tracing calls for one message (origin path, routed), without its other work. */
async function path(delivery: ConsumeMessage): Promise<void> {
  hopEvent('validated');
  await Promise.resolve();
  hopEvent('policy', { 'dmr.policy.allow': true, 'dmr.policy.revision': '12' });
  const options = traceHeaders({ persistent: true, headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1 } });
  if (options.headers === undefined) throw new Error('no headers');
  hopEvent('publish');
  await Promise.resolve();
  hopEvent('confirm');
  if (traceIdFor(delivery) === '') throw new Error('unreachable');
  hopEvent('audit');
  hopSettled({
    messageId: delivery.properties.messageId as string,
    sender: 'ria-bot',
    recipient: 'rik-bot',
    result: 'routed',
    reason: null,
    policyRevision: '12',
    policyReasons: [],
    configRevision: 42,
    at: '2026-12-05T12:00:00.000Z',
  });
}

async function child(mode: 'off' | 'on', url: string | undefined): Promise<void> {
  const provider = mode === 'on' ? tracerProvider({ serviceName: 'dmr-router', url }) : undefined;
  const hop = new HopTrace(provider?.tracer, 'node-1', 0);
  const run = async (count: number, offset: number): Promise<void> => {
    for (let n = 0; n < count; n += 1) {
      const delivery = message(offset + n);
      await hop.run(delivery, 'route', () => path(delivery));
    }
    await provider?.flush();
  };
  await run(2000, 0); // warm-up: JIT, the exporter's first connection
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  await run(messages, 2000);
  const used = process.cpuUsage(cpu);
  const wallNs = Number(process.hrtime.bigint() - start);
  await provider?.shutdown();
  process.stdout.write(
    `${JSON.stringify({ mode, cpuUsPerMessage: (used.user + used.system) / messages, wallUsPerMessage: wallNs / 1000 / messages })}\n`,
  );
}

async function parent(): Promise<void> {
  let received = 0;
  const sink = createServer((request, response) => {
    request.on('data', (chunk: Buffer) => (received += chunk.length));
    request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/v1/traces`;
  const self = fileURLToPath(import.meta.url);
  const once = async (mode: 'off' | 'on') => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      self,
      '--child',
      mode,
      '--url',
      url,
      '--messages',
      String(messages),
    ]);
    return JSON.parse(stdout) as { mode: string; cpuUsPerMessage: number; wallUsPerMessage: number };
  };
  const runs: Record<'off' | 'on', Array<{ cpuUsPerMessage: number; wallUsPerMessage: number }>> = { off: [], on: [] };
  for (let round = 0; round < 5; round += 1) {
    runs.off.push(await once('off'));
    runs.on.push(await once('on'));
  }
  sink.close();
  const best = (mode: 'off' | 'on') => runs[mode].reduce((a, b) => (b.cpuUsPerMessage < a.cpuUsPerMessage ? b : a));
  const off = best('off');
  const on = best('on');
  console.log(
    `router tracing cost per message, ${messages} messages × 5 rounds, fastest kept, node ${process.version}`,
  );
  console.log('tracing   CPU µs/message   wall µs/message');
  for (const [label, row] of [
    ['off', off],
    ['on', on],
  ] as const) {
    console.log(
      `${label.padEnd(10)}${row.cpuUsPerMessage.toFixed(2).padStart(14)}${row.wallUsPerMessage.toFixed(2).padStart(18)}`,
    );
  }
  console.log(
    `on − off: ${(on.cpuUsPerMessage - off.cpuUsPerMessage).toFixed(2)} µs CPU per message (spans exported: ${(received / 1024 / 1024).toFixed(1)} MiB of OTLP/JSON)`,
  );
}

const childMode = flag('--child');
if (childMode === 'off' || childMode === 'on') await child(childMode, flag('--url'));
else await parent();
