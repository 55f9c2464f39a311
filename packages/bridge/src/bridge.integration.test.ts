/**
 * Two bridges on a real single-node DMR data plane (NodeFixture: TLS-only
 * broker, EXTERNAL auth, reconciled layout, signed policy, running router):
 * `ria-bot`'s bridge sends, `rik-bot`'s bridge delivers to a local HTTP
 * endpoint (default grants: organisation ria → rik only). One broker for the
 * file; each test uses its own messages and waits for its own ids.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as connectTcp, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { parseTraceparent, traceIdOf } from '@dmr/core';
import { NodeFixture, waitFor } from '@dmr/testkit';
import { CertificateAuthority } from '@dmr/pki';
import { BearerTokens } from './auth.js';
import { Bridge } from './bridge.js';
import { parseBridgeConfig, type RawBridgeConfig } from './config.js';
import type { V1Delivered, V1Message } from './v1.js';

interface Endpoint {
  url: string;
  received: V1Delivered[];
  /** Requests answered, including refusals. */
  requests: number;
  /** While set, every request is answered with this status. */
  failWith: number | undefined;
  /** Messages whose payload.chat.id is listed are answered with 422. */
  refuseChats: Set<string>;
  /** Requests open at once (read, not answered yet), and the most seen. */
  open: number;
  maxOpen: number;
  /** While set, requests are held unanswered until this many are open at once; then all are answered. */
  holdUntilOpen: number | undefined;
  /** The `traceparent` header each delivered message's POST carried, by message id. */
  traceparents: Map<string, string | undefined>;
  close(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function startEndpoint(): Promise<Endpoint> {
  const endpoint: Endpoint = {
    url: '',
    received: [],
    requests: 0,
    failWith: undefined,
    refuseChats: new Set(),
    traceparents: new Map(),
    open: 0,
    maxOpen: 0,
    holdUntilOpen: undefined,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  /** Answers held back while holdUntilOpen is set. */
  let held: Array<() => void> = [];
  const server: Server = createServer((request, response) => {
    void readBody(request).then(async (text) => {
      endpoint.open += 1;
      endpoint.maxOpen = Math.max(endpoint.maxOpen, endpoint.open);
      response.on('close', () => (endpoint.open -= 1));
      if (endpoint.holdUntilOpen !== undefined) {
        const released = new Promise<void>((resolve) => held.push(resolve));
        if (endpoint.open >= endpoint.holdUntilOpen) {
          endpoint.holdUntilOpen = undefined;
          for (const release of held) release();
          held = [];
        }
        await released;
      }
      endpoint.requests += 1;
      if (endpoint.failWith !== undefined) {
        response.writeHead(endpoint.failWith).end();
        return;
      }
      const document = JSON.parse(text) as V1Delivered;
      if (endpoint.refuseChats.has(document.payload.chat.id)) {
        response.writeHead(422).end();
        return;
      }
      endpoint.received.push(document);
      const traceparent = request.headers.traceparent;
      endpoint.traceparents.set(document.id, typeof traceparent === 'string' ? traceparent : undefined);
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dmr/messages`;
  // Keep-alive sockets from the bridge would hold close() open.
  const close = endpoint.close;
  endpoint.close = async () => {
    server.closeAllConnections();
    await close();
  };
  return endpoint;
}

/**
 * A TCP relay to the broker (TLS passes through) that can cut every connection and refuse new ones (`down`), or
 * hold back what the client sends while keeping the connection up (`stalled`: publishes wait for their confirm).
 */
async function startRelay(
  brokerPort: number,
): Promise<{ port: number; down: boolean; stalled: boolean; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const upstreams = new Set<Socket>();
  /** Bytes from clients held back while stalled, with the upstream each is for. */
  let heldBack: Array<[Socket, Buffer]> = [];
  const server = createTcpServer((client) => {
    if (relay.down) {
      client.destroy();
      return;
    }
    const upstream = connectTcp(brokerPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(socket);
      });
    }
    upstreams.add(upstream);
    upstream.on('close', () => upstreams.delete(upstream));
    client.on('data', (chunk: Buffer) => {
      if (stalled) heldBack.push([upstream, chunk]);
      else upstream.write(chunk);
    });
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let down = false;
  let stalled = false;
  const relay = {
    port: (server.address() as AddressInfo).port,
    get stalled() {
      return stalled;
    },
    set stalled(value: boolean) {
      stalled = value;
      if (value) return;
      for (const [upstream, chunk] of heldBack) if (upstreams.has(upstream)) upstream.write(chunk);
      heldBack = [];
    },
    get down() {
      return down;
    },
    set down(value: boolean) {
      down = value;
      if (value) for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        relay.down = true;
        server.close(() => resolve());
      }),
  };
  return relay;
}

function v1Message(overrides: Partial<V1Message> = {}, chatId = randomUUID()): V1Message {
  return {
    id: randomUUID().toUpperCase(),
    recipientId: 'rik-bot',
    timestamp: '2026-11-27T17:00:00.123Z',
    type: 'ChatMessage',
    payload: {
      chat: { id: chatId, created: '2026-11-27T16:59:00.000Z', endUserFirstName: 'Mari' },
      messages: [
        {
          id: randomUUID(),
          chatId,
          content: 'Kas politsei saab aidata?',
          authorTimestamp: '2026-11-27T16:59:30.000+02:00',
          authorRole: 'end-user',
          buttons: '[]',
        },
      ],
    },
    ...overrides,
  };
}

async function post(
  bridge: Bridge,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${bridge.url}/v1/messages`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

/** A receiver for reports.url: records each JSON document; `failNext` requests are answered 503 first. */
async function startReportsReceiver(): Promise<{
  url: string;
  received: Array<Record<string, unknown>>;
  requests: number;
  failNext: number;
  close(): Promise<void>;
}> {
  const server = createServer((request, response) => {
    void readBody(request).then((text) => {
      receiver.requests += 1;
      if (receiver.failNext > 0) {
        receiver.failNext -= 1;
        response.writeHead(503).end();
        return;
      }
      receiver.received.push(JSON.parse(text) as Record<string, unknown>);
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const receiver = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dmr/reports`,
    received: [] as Array<Record<string, unknown>>,
    requests: 0,
    failNext: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return receiver;
}

/** Test-only: the ingress shard again, empty, bounded at `maxLength` (undefined: the layout's own arguments). */
async function redeclareIngress(
  node: NodeFixture,
  args: Record<string, string | number>,
  maxLength: number | undefined,
): Promise<void> {
  await node.management.request('DELETE', `/queues/${encodeURIComponent(node.vhost)}/dmr.ingress.0`);
  await node.management.declareQueue(node.vhost, 'dmr.ingress.0', {
    arguments: maxLength === undefined ? args : { ...args, 'x-max-length': maxLength },
  });
  await node.management.bindQueue(node.vhost, 'dmr.ingress', 'dmr.ingress.0', '1');
}

describe('the HTTP bridge against a DMR node', () => {
  let node: NodeFixture;
  let dir: string;
  let riaBridge: Bridge;
  let rikBridge: Bridge;
  let riaEndpoint: Endpoint;
  let rikEndpoint: Endpoint;

  async function startBridge(
    id: string,
    endpoint: Endpoint,
    extra: Partial<RawBridgeConfig> = {},
    port = node.harness.node(0).amqpsPort,
    options: { tokens?: BearerTokens; logger?: Logger } = {},
  ): Promise<Bridge> {
    const issued = await node.ca.issueWithKey({ kind: 'client', id });
    const files = { certFile: join(dir, `${id}.crt`), keyFile: join(dir, `${id}.key`), caFile: join(dir, 'ca.pem') };
    await writeFile(files.certFile, issued.chainPem);
    await writeFile(files.keyFile, issued.privateKeyPem);
    await writeFile(files.caFile, node.harness.trustBundlePem);
    const config = parseBridgeConfig(
      {
        id,
        node: node.nodeId,
        listen: '127.0.0.1:0',
        broker: { url: `amqps://127.0.0.1:${port}`, serverName: 'localhost' },
        tls: files,
        endpoint: { url: endpoint.url, timeoutMs: 2_000 },
        delivery: { concurrency: 4, maxAttempts: 60, initialDelayMs: 100, maxDelayMs: 800 },
        ...extra,
      },
      options.tokens === undefined ? {} : { tokens: options.tokens },
    );
    return Bridge.start(config, {
      logger: options.logger ?? pino({ level: 'silent' }),
      client: { backoff: { initialMs: 100, maxMs: 1_000 } },
    });
  }

  before(async () => {
    node = await NodeFixture.start({ label: 'bridge' });
    dir = await mkdtemp(join(tmpdir(), 'dmr-bridge-test-'));
    [riaEndpoint, rikEndpoint] = await Promise.all([startEndpoint(), startEndpoint()]);
    riaBridge = await startBridge('ria-bot', riaEndpoint);
    rikBridge = await startBridge('rik-bot', rikEndpoint);
  });

  after(async () => {
    await Promise.all([riaBridge?.close({ drainTimeoutMs: 2_000 }), rikBridge?.close({ drainTimeoutMs: 2_000 })]);
    await Promise.all([riaEndpoint?.close(), rikEndpoint?.close()]);
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('round trip: v1 JSON from ria-bot’s bridge arrives at rik-bot’s endpoint with senderId', async () => {
    const message = v1Message();
    const answer = await post(riaBridge, message);
    assert.equal(answer.status, 202, JSON.stringify(answer.json));
    const id = message.id.toLowerCase();
    assert.deepEqual(answer.json, { id, status: 'accepted' });
    await waitFor('the delivery', () => rikEndpoint.received.some((item) => item.id === id));
    const delivered = rikEndpoint.received.find((item) => item.id === id);
    assert.deepEqual(delivered, {
      id,
      senderId: 'ria-bot',
      recipientId: 'rik-bot',
      timestamp: message.timestamp,
      type: 'ChatMessage',
      payload: message.payload,
    });
    // The second message to a recipient known to be accepted does not wait for a verdict.
    const second = await post(riaBridge, v1Message());
    assert.equal(second.status, 202);
  });

  it('trace context: a caller’s valid traceparent reaches the recipient’s endpoint; a malformed or missing one becomes a new trace', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const cases: Array<{ headers: Record<string, string>; expect: string | undefined }> = [
      { headers: { traceparent }, expect: traceparent },
      { headers: { traceparent: 'garbage-that-must-not-travel' }, expect: undefined },
      { headers: {}, expect: undefined },
    ];
    const ids: string[] = [];
    for (const item of cases) {
      const message = v1Message();
      assert.equal((await post(riaBridge, message, item.headers)).status, 202);
      ids.push(message.id.toLowerCase());
    }
    await waitFor('the three deliveries', () => ids.every((id) => rikEndpoint.traceparents.has(id)));
    const got = ids.map((id) => rikEndpoint.traceparents.get(id));
    assert.equal(got[0], traceparent, 'passed on as the caller sent it (no traced hop in between)');
    for (const value of got.slice(1)) {
      assert.notEqual(parseTraceparent(value), undefined, `a valid new traceparent, not ${String(value)}`);
      assert.ok(!value?.includes('4bf92f3577b34da6a3ce929d0e0e4736'));
    }
    assert.notEqual(traceIdOf(got[1]), traceIdOf(got[2]), 'each a trace of its own');
  });

  it('a bad body gets 400 with every field error', async () => {
    const message = v1Message() as unknown as Record<string, unknown>;
    delete message.recipientId;
    message.id = 'not-a-uuid';
    message.colour = 'red';
    const payload = message.payload as { messages: Array<Record<string, unknown>>; chat: Record<string, unknown> };
    (payload.messages[0] as Record<string, unknown>).authorTimestamp = 'yesterday';
    (payload.messages[0] as Record<string, unknown>).rating = 5;
    delete payload.chat.created;
    const answer = await post(riaBridge, message);
    assert.equal(answer.status, 400);
    const error = answer.json.error as {
      code: string;
      details: { problems: Array<{ path: string; message: string }> };
    };
    assert.equal(error.code, 'VALIDATION_FAILED');
    const paths = error.details.problems.map((item) => item.path).sort();
    assert.deepEqual(paths, [
      'body.colour',
      'body.id',
      'body.payload.chat.created',
      'body.payload.messages[0].authorTimestamp',
      'body.payload.messages[0].rating',
      'body.recipientId',
    ]);
    const notJson = await post(riaBridge, '{"id": ');
    assert.equal(notJson.status, 400);
  });

  it('a message over the node’s size limit gets 413 MESSAGE_TOO_LARGE before anything is sent', async () => {
    const small = await startBridge('ria-desk', riaEndpoint, { send: { maxMessageBytes: 2_048 } });
    try {
      const message = v1Message();
      (message.payload.messages[0] as { content: string }).content = 'x'.repeat(4_096);
      const answer = await post(small, message);
      assert.equal(answer.status, 413, JSON.stringify(answer.json));
      const error = answer.json.error as { code: string; details: { sizeBytes: number; limitBytes: number } };
      assert.equal(error.code, 'MESSAGE_TOO_LARGE');
      assert.equal(error.details.limitBytes, 2_048);
      assert.ok(error.details.sizeBytes > 4_096);
      assert.equal(small.client.stats.confirmed, 0, 'nothing was published');
    } finally {
      await small.close({ drainTimeoutMs: 0 });
    }
  });

  it('an unknown recipient gets 422 RECIPIENT_UNKNOWN, a denied one 403 POLICY_DENIED (never 500)', async () => {
    const unknown = await post(riaBridge, v1Message({ recipientId: 'nobody-bot' }));
    assert.equal(unknown.status, 422, JSON.stringify(unknown.json));
    assert.equal((unknown.json.error as { code: string }).code, 'RECIPIENT_UNKNOWN');
    // rik → ria has no grant.
    const denied = await post(rikBridge, v1Message({ recipientId: 'ria-bot' }));
    assert.equal(denied.status, 403, JSON.stringify(denied.json));
    assert.equal((denied.json.error as { code: string }).code, 'POLICY_DENIED');
  });

  it('endpoint down for a while: every message delivered once it returns, with bounded retry traffic', async () => {
    rikEndpoint.failWith = 503;
    const before = rikEndpoint.requests;
    const messages = Array.from({ length: 20 }, () => v1Message());
    const answers = await Promise.all(messages.map((message) => post(riaBridge, message)));
    assert.deepEqual(
      answers.map((answer) => answer.status),
      messages.map(() => 202),
    );
    const downMs = 3_000;
    await sleep(downMs);
    const duringOutage = rikEndpoint.requests - before;
    // concurrency 4, back-off from 100 ms doubling to 800 ms (at least half of it with jitter): each in-flight
    // message retries at most ≈ 1 + 3 s / 50..400 ms ≈ 12 times; no redelivery storm of all 20.
    assert.ok(duringOutage <= 4 * 14, `retry traffic during the outage: ${duringOutage}`);
    assert.ok(duringOutage >= 4, `the endpoint saw the retries: ${duringOutage}`);
    assert.ok(rikBridge.inFlight <= 4);
    rikEndpoint.failWith = undefined;
    const ids = new Set(messages.map((message) => message.id.toLowerCase()));
    await waitFor('every message', () => rikEndpoint.received.filter((item) => ids.has(item.id)).length >= ids.size);
    // Instead of a pause: nothing left to deliver, neither in the bridge nor in rik-bot's queue (ready or unacked).
    await waitFor(
      'the bridge and its queue to be empty',
      async () => rikBridge.inFlight === 0 && (await node.depth('dmr.client.rik-bot')) === 0,
    );
    const deliveredIds = rikEndpoint.received.filter((item) => ids.has(item.id)).map((item) => item.id);
    assert.equal(deliveredIds.length, ids.size, 'each message exactly once');
    assert.equal(new Set(deliveredIds).size, ids.size);
    assert.equal(await node.depth('dmr.client.rik-bot.dlq'), 0);
  });

  it('shutdown while the endpoint is down hands the messages back: the next bridge delivers them, none dead-lettered', async () => {
    // rik-bot's queue gets a bridge of its own for this test (slow back-off, an endpoint that is down);
    // the shared one is back, as a new bridge, at the end.
    await rikBridge.close({ drainTimeoutMs: 1_000 });
    const downEndpoint = await startEndpoint();
    downEndpoint.failWith = 503;
    const first = await startBridge('rik-bot', downEndpoint, {
      // A back-off far longer than the test: only a close that does not wait for it lets the test go on.
      delivery: { concurrency: 4, maxAttempts: 60, initialDelayMs: 600_000, maxDelayMs: 600_000 },
    });
    try {
      const messages = Array.from({ length: 6 }, () => v1Message());
      for (const message of messages) assert.equal((await post(riaBridge, message)).status, 202);
      await waitFor(
        'four attempts failed and waiting to retry',
        () => downEndpoint.requests >= 4 && first.inFlight === 4,
      );
      const { requeued } = await first.close({ drainTimeoutMs: 300 });
      assert.equal(requeued, 4, 'the four in flight were handed back');
      rikBridge = await startBridge('rik-bot', rikEndpoint);
      const ids = new Set(messages.map((message) => message.id.toLowerCase()));
      await waitFor('every message', () => rikEndpoint.received.filter((item) => ids.has(item.id)).length >= 6);
      const delivered = rikEndpoint.received.filter((item) => ids.has(item.id)).map((item) => item.id);
      assert.equal(new Set(delivered).size, 6, 'each once');
      assert.equal(delivered.length, 6);
      assert.equal(await node.depth('dmr.client.rik-bot.dlq'), 0);
    } finally {
      await first.close({ drainTimeoutMs: 0 }).catch(() => undefined);
      await downEndpoint.close();
    }
  });

  it('a message the endpoint refuses (422) is dead-lettered at once, the next one still delivered', async () => {
    const refused = v1Message();
    rikEndpoint.refuseChats.add(refused.payload.chat.id);
    const beforeDlq = await node.depth('dmr.client.rik-bot.dlq');
    assert.equal((await post(riaBridge, refused)).status, 202);
    const next = v1Message();
    assert.equal((await post(riaBridge, next)).status, 202);
    await waitFor('the next message', () => rikEndpoint.received.some((item) => item.id === next.id.toLowerCase()));
    await waitFor(
      'the refused message in the DLQ',
      async () => (await node.depth('dmr.client.rik-bot.dlq')) >= beforeDlq + 1,
      {
        timeoutMs: 10_000,
        intervalMs: 100,
      },
    );
    assert.equal(await node.depth('dmr.client.rik-bot.dlq'), beforeDlq + 1);
    const metrics = await (await fetch(`${rikBridge.url}/metrics`)).text();
    assert.match(metrics, /dmr_bridge_deliveries_total\{result="dead_lettered"\} 1/);
    // The give-up reaches the node's routers as a dead letter (x-death `rejected`): they write its audit
    // record and its delivery.failed event; the bridge, a client, writes neither (docs/events.md).
    const id = refused.id.toLowerCase();
    await waitFor('the router to audit the refusal', async () => {
      const records = (await node.auditRecords(300)).map(
        (bytes) => JSON.parse(bytes.toString('utf8')) as { messageId?: unknown; reason?: unknown; result?: unknown },
      );
      const found = records.filter((record) => record.messageId === id && record.result === 'rejected');
      return found.length === 1 && found[0]?.reason === 'RECIPIENT_REFUSED';
    });
    const events = node.logLines.filter((line) => line.event === 'delivery.failed' && line.messageId === id);
    assert.deepEqual(
      events.map((line) => [line.reason, line.sender, line.recipient]),
      [['RECIPIENT_REFUSED', 'ria-bot', 'rik-bot']],
    );
    assert.doesNotMatch(metrics, /dmr_events_total/, 'counted once, by the router');
  });

  it('health reports readiness; metrics are Prometheus text', async () => {
    const response = await fetch(`${riaBridge.url}/v1/health`);
    assert.equal(response.status, 200);
    const health = (await response.json()) as { status: string; checks: Record<string, { ok: boolean | null }> };
    assert.equal(health.status, 'ok');
    assert.equal(health.checks.broker?.ok, true);
    assert.equal(health.checks.certificate?.ok, true);
    assert.equal(health.checks.centops?.ok, null);
    const metrics = await (await fetch(`${riaBridge.url}/metrics`)).text();
    assert.match(metrics, /dmr_bridge_send_duration_seconds_bucket/);
    assert.match(metrics, /dmr_bridge_broker_connected 1/);
    assert.match(metrics, /dmr_bridge_reports_total\{reason="RECIPIENT_UNKNOWN"\} 1/);
  });

  it('DMR unavailable: 503 with Retry-After and health down; back to 202 once reconnected', async () => {
    const relay = await startRelay(node.harness.node(0).amqpsPort);
    const desk = await startBridge('ria-desk', riaEndpoint, { send: { retryAfterSeconds: 7 } }, relay.port);
    try {
      assert.equal((await post(desk, v1Message())).status, 202);
      relay.down = true;
      await waitFor('the connection loss', () => desk.client.state !== 'open');
      const response = await fetch(`${desk.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(v1Message()),
      });
      assert.equal(response.status, 503);
      assert.equal(response.headers.get('retry-after'), '7');
      assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'NODE_UNREACHABLE');
      const health = await fetch(`${desk.url}/v1/health`);
      assert.equal(health.status, 503);
      assert.equal(((await health.json()) as { status: string }).status, 'down');
      relay.down = false;
      await waitFor('the reconnect', () => desk.client.state === 'open');
      assert.equal((await post(desk, v1Message())).status, 202);
    } finally {
      await desk.close({ drainTimeoutMs: 1_000 });
      await relay.close();
    }
  });

  it('delivers several messages at once: the endpoint sees delivery.concurrency requests open together', async () => {
    // rik-bot's bridge delivers 4 at a time (startBridge): the endpoint answers nothing until 4 requests are open
    // at once, so one-at-a-time delivery would never get past the first message.
    rikEndpoint.maxOpen = 0;
    rikEndpoint.holdUntilOpen = 4;
    const messages = Array.from({ length: 12 }, () => v1Message());
    const answers = await Promise.all(messages.map((message) => post(riaBridge, message)));
    assert.deepEqual(
      answers.map((answer) => answer.status),
      messages.map(() => 202),
    );
    const ids = new Set(messages.map((message) => message.id.toLowerCase()));
    await waitFor('every message', () => rikEndpoint.received.filter((item) => ids.has(item.id)).length >= ids.size);
    assert.equal(rikEndpoint.holdUntilOpen, undefined, 'four requests were open at once');
    assert.equal(rikEndpoint.maxOpen, 4, 'never more than delivery.concurrency');
    await waitFor(
      'an empty queue',
      async () => rikBridge.inFlight === 0 && (await node.depth('dmr.client.rik-bot')) === 0,
    );
    const delivered = rikEndpoint.received.filter((item) => ids.has(item.id)).map((item) => item.id);
    assert.equal(delivered.length, ids.size, 'each message exactly once');
  });

  it('past send.maxInFlight unconfirmed sends, a POST gets 503 + Retry-After at once; the ones taken still arrive', async () => {
    const relay = await startRelay(node.harness.node(0).amqpsPort);
    const desk = await startBridge(
      'ria-desk',
      riaEndpoint,
      { send: { maxInFlight: 2, retryAfterSeconds: 3, confirmTimeoutMs: 120_000 } },
      relay.port,
    );
    try {
      // The broker gets nothing while stalled: two sends wait for their confirm and fill the bound.
      relay.stalled = true;
      const taken = [v1Message(), v1Message()];
      const answers = taken.map((message) => post(desk, message));
      await waitFor('two sends waiting for their confirm', () => desk.sending === 2);
      const refused = await fetch(`${desk.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(v1Message()),
      });
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '3');
      const error = ((await refused.json()) as { error: { code: string; details: Record<string, unknown> } }).error;
      assert.equal(error.code, 'MESSAGE_NOT_ACCEPTED');
      assert.deepEqual({ inFlight: error.details.inFlight, limit: error.details.limit }, { inFlight: 2, limit: 2 });
      assert.equal(desk.client.stats.confirmed, 0, 'the refused one was not published');
      relay.stalled = false;
      assert.deepEqual(
        (await Promise.all(answers)).map((answer) => answer.status),
        [202, 202],
      );
      const ids = new Set(taken.map((message) => message.id.toLowerCase()));
      await waitFor('both taken messages', () => rikEndpoint.received.filter((item) => ids.has(item.id)).length === 2);
      assert.equal(desk.sending, 0);
      assert.equal((await post(desk, v1Message())).status, 202, 'below the bound again');
    } finally {
      relay.stalled = false;
      await desk.close({ drainTimeoutMs: 1_000 });
      await relay.close();
    }
  });

  it('with bearer tokens: 401 without or with a wrong token and nothing sent, 202 with one; never a token in a log', async () => {
    const token = 'bR9-uT4_kX2.wQ7~mZ5+pL8/vN3cY6hJ';
    const wrong = 'gF1-dS2_aP3.oI4~uY5+tR6/eW7qZ8xC';
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
    const guarded = await startBridge('ria-desk', riaEndpoint, {}, undefined, {
      tokens: new BearerTokens([token], ['test']),
      logger,
    });
    const call = (path: string, authorization?: string, body?: unknown) =>
      fetch(`${guarded.url}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: {
          'content-type': 'application/json',
          ...(authorization === undefined ? {} : { authorization }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    try {
      const confirmedBefore = guarded.client.stats.confirmed;
      const anonymous = await call('/v1/messages', undefined, v1Message());
      assert.equal(anonymous.status, 401);
      assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="dmr-bridge"');
      const refusal = (await anonymous.json()) as {
        error: { code: string; message: string; details: object; hint: string };
      };
      assert.equal(refusal.error.code, 'UNAUTHENTICATED');
      assert.deepEqual(refusal.error.details, {});
      assert.match(refusal.error.hint, /Authorization: Bearer/);
      const forged = await call('/v1/messages', `Bearer ${wrong}`, v1Message());
      assert.equal(forged.status, 401);
      assert.match(forged.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      // Refused before anything reached DMR.
      assert.equal(guarded.client.stats.confirmed, confirmedBefore);
      assert.equal(guarded.client.unconfirmed, 0);

      const message = v1Message();
      const accepted = await call('/v1/messages', `Bearer ${token}`, message);
      assert.equal(accepted.status, 202, await accepted.clone().text());
      await waitFor('the delivery', () => rikEndpoint.received.some((item) => item.id === message.id.toLowerCase()));

      assert.equal((await call('/metrics')).status, 401);
      assert.equal((await call('/metrics', `Bearer ${token}`)).status, 200);
      assert.equal((await call('/v1/nothing-here')).status, 401);
      // Health stays open for probes, but says only the status to a caller without a token.
      const probe = await call('/v1/health');
      assert.equal(probe.status, 200);
      assert.deepEqual(await probe.json(), { status: 'ok' });
      const detailed = (await (await call('/v1/health', `Bearer ${token}`)).json()) as { checks?: object };
      assert.ok(detailed.checks !== undefined);
    } finally {
      await guarded.close({ drainTimeoutMs: 1_000 });
    }
    const log = lines.join('\n');
    assert.ok(log.includes('unauthenticated request refused'), 'the refusals were logged');
    assert.ok(!log.includes(token) && !log.includes(wrong), 'no token in the log');
  });

  it('a loopback bridge without authentication answers only loopback Host names (DNS rebinding)', async () => {
    const get = (host: string): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const request = httpRequest(`${riaBridge.url}/v1/health`, { headers: { host } }, (response) => {
          let body = '';
          response.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
        });
        request.on('error', reject);
        request.end();
      });
    const port = new URL(riaBridge.url).port;
    const rebound = await get(`rebind.attacker.example:${port}`);
    assert.equal(rebound.status, 403);
    assert.equal((JSON.parse(rebound.body) as { error: { code: string } }).error.code, 'HOST_NOT_ALLOWED');
    assert.equal((await get(`localhost:${port}`)).status, 200);
    assert.equal((await get(`127.0.0.1:${port}`)).status, 200);
  });

  it('with mutual TLS: no client certificate, no request; a certificate of the callers CA gets 202', async () => {
    // The callers' own CA, not the mesh's: a mesh client certificate must not open the bridge.
    const callers = await CertificateAuthority.init(join(dir, 'callers-ca'), { trustDomain: 'callers.test' });
    const server = await callers.issueWithKey({
      kind: 'node',
      id: 'desk-bridge',
      dns: ['localhost'],
      ips: ['127.0.0.1'],
    });
    const caller = await callers.issueWithKey({ kind: 'client', id: 'desk-service' });
    const files = {
      certFile: join(dir, 'desk-bridge.crt'),
      keyFile: join(dir, 'desk-bridge.key'),
      clientCaFile: join(dir, 'callers.pem'),
    };
    await writeFile(files.certFile, server.chainPem);
    await writeFile(files.keyFile, server.privateKeyPem);
    await writeFile(files.clientCaFile, callers.trustBundlePem());
    const mutual = await startBridge('ria-desk', riaEndpoint, { server: { tls: files } });
    const post = (identity?: { cert: string; key: string }): Promise<number> =>
      new Promise((resolve, reject) => {
        const request = httpsRequest(
          `${mutual.url}/v1/messages`,
          {
            method: 'POST',
            ca: callers.trustBundlePem(),
            agent: false,
            headers: { 'content-type': 'application/json' },
            ...identity,
          },
          (response) => {
            response.resume();
            response.on('end', () => resolve(response.statusCode ?? 0));
          },
        );
        request.on('error', reject);
        request.end(JSON.stringify(v1Message()));
      });
    try {
      assert.match(mutual.url, /^https:/);
      await assert.rejects(post());
      assert.equal(await post({ cert: caller.chainPem, key: caller.privateKeyPem }), 202);
    } finally {
      await mutual.close({ drainTimeoutMs: 1_000 });
    }
  });

  it('drops a message in its queue that is not for its id: never POSTed, counted as misaddressed', async () => {
    const connection = await node.connectAs(node.nodeId);
    const channel = await connection.createConfirmChannel();
    const body = Buffer.from(
      JSON.stringify({
        id: randomUUID(),
        timestamp: new Date().toISOString(),
        type: 'ChatMessage',
        payload: v1Message().payload,
      }),
    );
    const forged = randomUUID();
    await new Promise<void>((resolve, reject) =>
      channel.publish(
        'dmr.delivery',
        'rik-bot',
        body,
        {
          persistent: true,
          messageId: forged,
          type: 'ChatMessage',
          timestamp: Math.floor(Date.now() / 1000),
          headers: { 'dmr-sender': 'ria-bot', 'dmr-origin': node.nodeId, 'dmr-version': 1, 'dmr-recipient': 'ppa-bot' },
        },
        (error) => (error ? reject(error as Error) : resolve()),
      ),
    );
    await connection.close();
    await waitFor(
      'the misaddressed delivery counted',
      async () =>
        /dmr_bridge_deliveries_total\{result="misaddressed"\} 1/.test(
          await (await fetch(`${rikBridge.url}/metrics`)).text(),
        ),
      { intervalMs: 50 },
    );
    assert.ok(!rikEndpoint.received.some((item) => item.id === forged));
  });

  it('a refusal after the 202 is POSTed to reports.url with the message id, never the payload', async () => {
    const reports = await startReportsReceiver();
    // ppa-bot may not write to rik-bot (no grant); without a verdict wait the bridge answers 202 at the confirm.
    const ppa = await startBridge('ppa-bot', riaEndpoint, {
      send: { verdictWaitMs: 0 },
      reports: { url: reports.url, initialDelayMs: 50, maxDelayMs: 200 },
    });
    try {
      reports.failNext = 1; // the first POST fails: the report is retried, not lost
      const message = v1Message();
      const answer = await post(ppa, message);
      assert.equal(answer.status, 202, JSON.stringify(answer.json));
      await waitFor('the late report at reports.url', () => reports.received.length > 0);
      const [report] = reports.received;
      assert.equal(report?.id, message.id.toLowerCase());
      assert.equal(report?.reason, 'POLICY_DENIED');
      assert.equal(report?.status, 'rejected');
      assert.equal(report?.senderId, 'ppa-bot');
      assert.equal(report?.recipientId, 'rik-bot');
      assert.equal(reports.requests, 2, 'one failed attempt, one accepted');
      assert.ok(!JSON.stringify(report).includes('Kas politsei'), 'never the payload');
    } finally {
      await ppa.close({ drainTimeoutMs: 0 });
      await reports.close();
    }
  });

  it('ingress full (routers stopped): the broker refuses the publish, the bridge answers 503 + Retry-After; none of the 202s lost', async () => {
    await node.stopRouters();
    const ingress = `/queues/${encodeURIComponent(node.vhost)}/dmr.ingress.0`;
    const original = (await node.management.request('GET', ingress)) as { arguments: Record<string, string | number> };
    await redeclareIngress(node, original.arguments, 3);
    const accepted: string[] = [];
    let refused: { status: number; json: Record<string, unknown>; retryAfter: string | null } | undefined;
    for (let i = 0; i < 20 && refused === undefined; i += 1) {
      const message = v1Message();
      const response = await fetch(`${riaBridge.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(message),
      });
      const json = (await response.json()) as Record<string, unknown>;
      if (response.status === 202) accepted.push(message.id.toLowerCase());
      else refused = { status: response.status, json, retryAfter: response.headers.get('retry-after') };
    }
    assert.ok(refused, 'the ingress bound was never reached');
    assert.equal(refused.status, 503, JSON.stringify(refused.json));
    assert.equal(refused.retryAfter, '5');
    const error = refused.json.error as { code: string; details: Record<string, unknown> };
    assert.equal(error.code, 'MESSAGE_NOT_ACCEPTED');
    assert.equal(error.details.retryAfterSeconds, 1);
    assert.ok(accepted.length >= 3, `${accepted.length} accepted`);
    // The routers come back: every message answered 202 reaches the recipient.
    await node.startRouter();
    await waitFor(
      () => `the ${accepted.length} accepted messages delivered`,
      () => accepted.every((id) => rikEndpoint.received.some((item) => item.id === id)),
      { timeoutMs: 30_000 },
    );
    await node.stopRouters();
    await redeclareIngress(node, original.arguments, undefined);
    await node.startRouter();
  });
});
