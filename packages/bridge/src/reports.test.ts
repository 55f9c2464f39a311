import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { waitFor } from '@dmr/core/testing';
import type { DeliveryReport } from '@dmr/sdk';
import { BridgeMetrics } from './metrics.js';
import { ReportPoster, reportDocument, type ReportsTarget } from './reports.js';

/** A real HTTP receiver: answers each request with the next status of `script` (then 200), records the bodies. */
interface Receiver {
  url: string;
  bodies: Array<{ headers: Record<string, unknown>; json: Record<string, unknown> }>;
  script: number[];
  server: Server;
}

async function startReceiver(): Promise<Receiver> {
  const receiver: Receiver = { url: '', bodies: [], script: [], server: createServer() };
  receiver.server.on('request', (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      receiver.bodies.push({
        headers: request.headers,
        json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
      });
      response.writeHead(receiver.script.shift() ?? 200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}/dmr/reports`;
  return receiver;
}

const REPORT: DeliveryReport = {
  messageId: '6f1c1f8e-7f35-4c57-9a53-0d6c3f2a1b10',
  status: 'rejected',
  reason: 'POLICY_DENIED',
  detail: 'policy revision 3 denied: NO_GRANT',
  policy: { revision: '3', reasons: ['NO_GRANT'] },
  node: 'node-a',
  at: new Date('2026-12-05T14:00:00.000Z'),
};

async function count(metrics: BridgeMetrics, result: string): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'dmr_bridge_report_posts_total');
  const values = (metric?.values ?? []) as Array<{ value: number; labels: Record<string, unknown> }>;
  return values.find((value) => value.labels.result === result)?.value ?? 0;
}

describe('ReportPoster', () => {
  let receiver: Receiver;
  const target = (overrides: Partial<ReportsTarget> = {}): ReportsTarget => ({
    url: receiver.url,
    timeoutMs: 2_000,
    maxAttempts: 4,
    initialDelayMs: 1,
    maxDelayMs: 5,
    maxPending: 100,
    headers: { authorization: 'Bearer receiver-token' },
    ...overrides,
  });

  before(async () => {
    receiver = await startReceiver();
  });
  after(async () => {
    receiver.server.closeAllConnections();
    await new Promise<void>((resolve) => receiver.server.close(() => resolve()));
  });

  it('POSTs the report as JSON naming the message, its sender and recipient, and nothing else', async () => {
    receiver.bodies = [];
    const metrics = new BridgeMetrics();
    const poster = new ReportPoster(target(), metrics, pino({ level: 'silent' }));
    poster.post(reportDocument(REPORT, 'ria-bot', 'rik-bot'));
    await poster.close();
    assert.equal(receiver.bodies.length, 1);
    const [first] = receiver.bodies;
    assert.deepEqual(first?.json, {
      id: REPORT.messageId,
      senderId: 'ria-bot',
      recipientId: 'rik-bot',
      status: 'rejected',
      reason: 'POLICY_DENIED',
      detail: 'policy revision 3 denied: NO_GRANT',
      node: 'node-a',
      at: '2026-12-05T14:00:00.000Z',
      policy: { revision: '3', reasons: ['NO_GRANT'] },
    });
    assert.equal(first?.headers['content-type'], 'application/json');
    assert.equal(first?.headers.authorization, 'Bearer receiver-token');
    assert.equal(await count(metrics, 'delivered'), 1);
  });

  it('retries a failing receiver with back-off until it takes the report; gives up after maxAttempts; 4xx is final', async () => {
    const metrics = new BridgeMetrics();
    const poster = new ReportPoster(target(), metrics, pino({ level: 'silent' }));
    receiver.bodies = [];
    receiver.script = [503, 500, 429];
    poster.post(reportDocument(REPORT, 'ria-bot', undefined));
    await waitFor('delivered after three failures', async () => (await count(metrics, 'delivered')) === 1);
    assert.equal(receiver.bodies.length, 4);
    assert.equal(receiver.bodies[3]?.json.recipientId, null);

    receiver.bodies = [];
    receiver.script = [503, 503, 503, 503, 200];
    poster.post(reportDocument(REPORT, 'ria-bot', 'rik-bot'));
    await waitFor('given up', async () => (await count(metrics, 'failed')) === 1);
    assert.equal(receiver.bodies.length, 4, 'exactly maxAttempts tries');

    receiver.bodies = [];
    receiver.script = [400];
    poster.post(reportDocument(REPORT, 'ria-bot', 'rik-bot'));
    await waitFor('refused for good', async () => (await count(metrics, 'failed')) === 2);
    assert.equal(receiver.bodies.length, 1, 'a 400 is not retried');
    receiver.script = [];
    await poster.close();
  });

  it('holds at most maxPending reports: past it a report is dropped and counted, never queued without end', async () => {
    const metrics = new BridgeMetrics();
    // An address that refuses connections: every report keeps retrying until close().
    const poster = new ReportPoster(
      target({
        url: 'http://127.0.0.1:9/unreachable',
        maxPending: 2,
        maxAttempts: 100,
        initialDelayMs: 60_000,
        maxDelayMs: 60_000,
      }),
      metrics,
      pino({ level: 'silent' }),
    );
    for (let i = 0; i < 5; i += 1) poster.post(reportDocument(REPORT, 'ria-bot', 'rik-bot'));
    assert.equal(poster.pending, 2);
    assert.equal(await count(metrics, 'dropped'), 3);
    await poster.close();
    assert.equal(poster.pending, 0);
    assert.equal(await count(metrics, 'failed'), 2, 'close() ends the waits');
  });
});
