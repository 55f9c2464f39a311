/**
 * The router on a real TLS harness broker with a real signed policy bundle
 * (one NodeFixture for the file): every refusal in dmr.rejected and reported
 * to the sender, delivery with DMR headers, deny by default, replays, TTL
 * expiry and poison messages turned into reports (in a recipient's queue
 * and in the ingress before any router took them), a full recipient queue
 * holding messages (never refusing them) up to the hold's bound, one stuck
 * recipient parking its overflow while the shard keeps flowing, a policy
 * outage handled by holding and back-off.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash, randomUUID } from 'node:crypto';
import { DmrError } from '@dmr/core';
import type { PolicyDecider, PolicyDecision, PolicyInput } from '@dmr/policy';
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import { Registry } from 'prom-client';
import { firstBrokenRecord, type AuditRecord } from './audit.js';
import {
  NodeFixture,
  clientUser,
  latestDeath,
  parseReport,
  type SendOptions,
  type TestClient,
} from '../testing/node-fixture.js';
import { rawPublish } from '../testing/raw-amqp.js';
import { RouterMetrics } from './metrics.js';
import { Router } from './router.js';
import { waitFor } from '@dmr/core/testing';

const CLIENTS = [
  { id: 'ria-bot', organisation: 'ria', roles: ['bot'], labels: { tier: 'gold' } },
  { id: 'ria-desk', organisation: 'ria', roles: ['desk'] },
  { id: 'ria-poison', organisation: 'ria', roles: ['desk'] },
  { id: 'rik-bot', organisation: 'rik', roles: ['bot'] },
  { id: 'old-bot', organisation: 'rik', status: 'suspended' as const },
  { id: 'bad-bot', organisation: 'rik' },
  { id: 'ria-flood', organisation: 'ria', roles: ['bot'] },
  { id: 'far-bot', organisation: 'ria', homeNode: 'node-far' },
];

function sha256(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

async function metric(node: NodeFixture, name: string, labels: Record<string, string> = {}): Promise<number> {
  let total = 0;
  for (const handle of node.routers) {
    const found = (await handle.registry.getMetricsAsJSON()).find((m) => m.name === name);
    for (const value of (found?.values ?? []) as Array<{ value: number; labels: Record<string, unknown> }>) {
      if (Object.entries(labels).every(([key, want]) => value.labels[key] === want)) total += value.value;
    }
  }
  return total;
}

/** Test-only: `client`'s queue, emptied, with room for `maxLength` (NodeFixture.resizeQueue). */
async function shrinkQueue(node: NodeFixture, client: string, maxLength: number): Promise<void> {
  await node.resizeQueue(`dmr.client.${client}`, maxLength, [['dmr.delivery', client]]);
}

/** The bindings of shard 0's parking queue in the layout (decision 0039). */
const PARKING_BINDINGS = [
  ['dmr.parking', 'dmr.ingress.0'],
  ['dmr.parking', 'dmr.mesh-ingress.0'],
  ['dmr.parking', 'dmr.dead-letter-reports'],
] as const;

/** Messages ready (not taken by any consumer) in the ingress shard; management statistics lag a few seconds. */
async function ingressReady(node: NodeFixture): Promise<number> {
  const path = `/queues/${encodeURIComponent(node.vhost)}/dmr.ingress.0`;
  const info = (await node.management.request('GET', path)) as { messages_ready?: number };
  return info.messages_ready ?? 0;
}

/**
 * Waits, with the routers running, until nothing is left in shard 0's input or parking queue: an earlier test's
 * parked copies come back into the ingress seconds after it ended, and a test that stops the routers and then
 * counts on the ingress holding only its own messages would meet them (seen at 4 files at a time).
 */
async function quietInputs(node: NodeFixture): Promise<void> {
  await waitFor(
    'dmr.ingress.0 and dmr.parking.0 empty',
    async () => (await node.depth('dmr.ingress.0')) === 0 && (await node.depth('dmr.parking.0')) === 0,
    { timeoutMs: 30_000 },
  );
}

/** The next delivery report to `client` about `id`, skipping reports about other messages (an earlier test's). */
async function reportAbout(client: TestClient, id: string | undefined, timeoutMs = 15_000): Promise<ConsumeMessage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await client.next(Math.max(1, deadline - Date.now()));
    if (parseReport(message).messageId === id) return message;
  }
}

describe('router on a harness broker', () => {
  let node: NodeFixture;
  let ria: TestClient;
  let rik: TestClient;
  /** ria-flood's one consumer (a second one would share its queue round-robin). */
  let flood: TestClient | undefined;

  before(async () => {
    node = await NodeFixture.start({ label: 'router', clients: CLIENTS, denied: ['bad-bot'] });
    ria = await node.client('ria-bot');
    rik = await node.client('rik-bot');
  });

  after(async () => {
    await node?.stop();
  });

  it('delivers an allowed message untouched, with dmr-sender/origin/hops and without user_id', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const id = await ria.send({
      to: 'rik-bot',
      body: '{"text":"tere"}',
      headers: { traceparent },
      properties: { correlationId: 'conv-1', replyTo: 'ria-bot' },
    });
    const message = await rik.next();
    assert.equal(message.content.toString(), '{"text":"tere"}');
    assert.equal(message.properties.messageId, id);
    assert.equal(message.properties.userId, undefined);
    assert.equal(message.properties.type, 'ChatMessage');
    assert.equal(message.properties.correlationId, 'conv-1');
    assert.equal(message.properties.replyTo, 'ria-bot');
    assert.equal(typeof message.properties.timestamp, 'number');
    const headers = message.properties.headers ?? {};
    assert.equal(headers['dmr-sender'], 'ria-bot');
    assert.equal(headers['dmr-origin'], 'node-a');
    assert.equal(headers['dmr-recipient'], 'rik-bot');
    assert.equal(headers['dmr-version'], 1);
    assert.equal(headers.traceparent, traceparent);
    const hops = JSON.parse(String(headers['dmr-hops'])) as Array<{ node: string; at: string }>;
    assert.deepEqual(
      hops.map((hop) => hop.node),
      ['node-a'],
    );
    // The recipient can see the message before the router's ack, audit and log line: wait for those.
    await waitFor('the decision log line', () => node.decisions(id ?? '').length > 0, { timeoutMs: 5_000 });
    const [line] = node.decisions(id ?? '');
    assert.equal(line?.result, 'routed');
    assert.equal(line?.policyRevision, '1');
    assert.deepEqual(line?.policyReasons, ['GRANT']);
    assert.ok(!JSON.stringify(line).includes('tere'), 'no payload in the log');
    assert.equal(await metric(node, 'dmr_router_messages_routed_total'), 1);
    await waitFor('the confirmed audit record', () => (node.routers[0]?.audit?.head.seq ?? 0) >= 1, {
      timeoutMs: 5_000,
    });
  });

  it('denies by default: no grant between organisations → POLICY_DENIED with NO_GRANT, report, metric, log', async () => {
    const id = await rik.send({ to: 'ria-bot' });
    const reportMessage = await rik.next();
    assert.equal(reportMessage.properties.type, 'dmr.DeliveryReport');
    assert.equal(reportMessage.properties.correlationId, id);
    const report = parseReport(reportMessage);
    assert.equal(report.reason, 'POLICY_DENIED');
    assert.equal(report.status, 'rejected');
    assert.deepEqual(report.policy, { revision: '1', reasons: ['NO_GRANT'] });
    assert.equal(report.node, 'node-a');
    assert.ok(!reportMessage.content.toString().includes('hello'), 'never the payload');
    assert.equal(await metric(node, 'dmr_policy_decisions_total', { result: 'deny', reason: 'NO_GRANT' }), 1);
    await waitFor('the decision log line', () => node.decisions(id ?? '').length > 0, { timeoutMs: 5_000 });
    assert.equal(await metric(node, 'dmr_router_messages_rejected_total', { reason: 'POLICY_DENIED' }), 1);
    const [line] = node.decisions(id ?? '');
    assert.equal(line?.result, 'rejected');
    assert.equal(line?.reason, 'POLICY_DENIED');
    assert.deepEqual(line?.policyReasons, ['NO_GRANT']);
    const [rejected] = await node.take('dmr.rejected');
    assert.equal(rejected?.properties.message_id, id);
    assert.equal(rejected?.properties.headers?.['dmr-reason'], 'POLICY_DENIED');
    assert.equal(rejected?.properties.headers?.['dmr-policy-reasons'], 'NO_GRANT');
    assert.equal(rejected?.properties.headers?.['dmr-sender'], 'rik-bot');
    assert.equal(rejected?.properties.headers?.['dmr-recipient'], 'ria-bot');
    // Evidence without the payload: its digest and size only.
    assert.equal(rejected?.payload, '');
    assert.equal(rejected?.properties.headers?.['dmr-body-sha256'], sha256('{"text":"hello"}'));
    assert.equal(rejected?.properties.headers?.['dmr-body-bytes'], 16);
  });

  it('refuses every checkable rule with its code, in dmr.rejected and as a report to the sender', async () => {
    const now = Math.floor(Date.now() / 1000);
    const table: Array<[string, SendOptions, string]> = [
      ['missing message_id', { messageId: null }, 'MESSAGE_ID_INVALID'],
      ['message_id not a UUID', { messageId: 'not-a-uuid' }, 'MESSAGE_ID_INVALID'],
      ['reserved header', { headers: { 'dmr-origin': 'node-x' } }, 'HEADER_RESERVED'],
      ['missing version', { version: null }, 'VERSION_UNSUPPORTED'],
      ['version 2', { version: 2 }, 'VERSION_UNSUPPORTED'],
      ['missing type', { type: null }, 'TYPE_MISSING'],
      ['bad type', { type: '1Chat' }, 'TYPE_INVALID'],
      ['reserved type', { type: 'dmr.DeliveryReport' }, 'TYPE_INVALID'],
      ['missing timestamp', { timestamp: null }, 'TIMESTAMP_MISSING'],
      ['timestamp ahead of the node clock', { timestamp: now + 3_600 }, 'TIMESTAMP_SKEW'],
      ['expiration over the cap', { expiration: '700000' }, 'EXPIRATION_TOO_LONG'],
      ['CC header', { headers: { CC: ['old-bot'] } }, 'ROUTING_HEADER_FORBIDDEN'],
      ['lowercase cc header', { headers: { cc: ['old-bot'] } }, 'ROUTING_HEADER_FORBIDDEN'],
      ['header table too large', { headers: { 'app-pad': 'x'.repeat(20_000) } }, 'HEADERS_TOO_LARGE'],
      ['missing recipient', { to: null }, 'RECIPIENT_MISSING'],
      ['invalid recipient', { to: 'Not An Id' }, 'RECIPIENT_INVALID'],
      ['denylisted recipient', { to: 'bad-bot' }, 'RECIPIENT_DENIED'],
      ['unknown recipient', { to: 'nobody-bot' }, 'RECIPIENT_UNKNOWN'],
      ['inactive recipient', { to: 'old-bot' }, 'RECIPIENT_INACTIVE'],
      ['recipient on another node', { to: 'far-bot' }, 'RECIPIENT_UNREACHABLE'],
    ];
    const cases = new Map<string, string>(); // message id → case name
    for (const [name, options, code] of table) {
      const id = await ria.send(options);
      if (id !== undefined && code !== 'MESSAGE_ID_INVALID') cases.set(id, name);
      const message = await ria.next(10_000).catch(() => undefined);
      assert.ok(message, `${name}: no report`);
      const report = parseReport(message);
      assert.equal(report.reason, code, `${name}: ${JSON.stringify(report)}`);
      assert.equal(message.properties.type, 'dmr.DeliveryReport');
      if (code !== 'MESSAGE_ID_INVALID') {
        assert.equal(report.messageId, id, name);
        assert.equal(message.properties.correlationId, id, name);
      } else assert.equal(report.messageId, null, name);
    }
    // user_id absent: the broker cannot tell who sent it, so there is nobody to report to.
    const anonymous = await ria.send({ userId: null });
    cases.set(anonymous ?? '', 'missing user_id');
    // The copy is confirmed before the report is read, but the management API may lag: wait for all.
    await waitFor(
      "(await node.depth('dmr.rejected')) >= table.length + 1",
      async () => (await node.depth('dmr.rejected')) >= table.length + 1,
      { timeoutMs: 10_000 },
    );
    const rejected = await node.take('dmr.rejected');
    const byCase = new Map(rejected.map((message) => [cases.get(message.properties.message_id ?? ''), message]));
    const codes = new Map<string, string>([...table.map(([name, , code]) => [name, code] as const)]);
    codes.set('missing user_id', 'SENDER_MISSING');
    for (const [name, code] of codes) {
      if (code === 'MESSAGE_ID_INVALID') continue;
      const copy = byCase.get(name);
      assert.ok(copy, `${name}: not in dmr.rejected (${rejected.length} there)`);
      assert.equal(copy.properties.headers?.['dmr-reason'], code, name);
      assert.equal(typeof copy.properties.headers?.['dmr-detail'], 'string', name);
      assert.equal(copy.properties.user_id, undefined, name);
    }
    const withoutId = rejected.filter((message) => message.properties.message_id === undefined);
    assert.deepEqual(
      withoutId.map((message) => message.properties.headers?.['dmr-reason']),
      ['MESSAGE_ID_INVALID', 'MESSAGE_ID_INVALID'],
    );
    // DMR's metadata only: no client header reaches dmr.rejected (CC above all), no body.
    for (const copy of rejected) {
      const names = Object.keys(copy.properties.headers ?? {});
      assert.ok(
        // x-delivery-count is the quorum queue's own, added when the test reads it.
        names.every((header) => header.startsWith('dmr-') || header === 'x-delivery-count'),
        names.join(','),
      );
      assert.equal(copy.payload, '');
    }
    assert.deepEqual(await ria.drain(500), [], 'no report for the message without user_id');
  });

  it('refuses a replay (same message id twice) with MESSAGE_REPLAYED', async () => {
    const messageId = randomUUID();
    await ria.send({ messageId, to: 'rik-bot' });
    assert.equal((await rik.next()).properties.messageId, messageId);
    await ria.send({ messageId, to: 'rik-bot' });
    const report = parseReport(await ria.next());
    assert.equal(report.reason, 'MESSAGE_REPLAYED');
    assert.equal(report.messageId, messageId);
    assert.deepEqual(await rik.drain(300), []);
  });

  it('turns a TTL expiry into a DLQ copy and a MESSAGE_EXPIRED report', async () => {
    // ria-desk does not consume: the message expires in its queue.
    const id = await ria.send({ to: 'ria-desk', expiration: '1500' });
    const report = parseReport(await ria.next(15_000));
    assert.equal(report.reason, 'MESSAGE_EXPIRED');
    assert.equal(report.status, 'dead-lettered');
    assert.equal(report.messageId, id);
    const [evidence] = await node.take('dmr.client.ria-desk.dlq');
    assert.equal(evidence?.properties.message_id, id);
    assert.equal(evidence?.properties.headers?.['dmr-sender'], 'ria-bot');
  });

  it('turns a poison message (nacked with requeue) into a DLQ copy and a DELIVERY_LIMIT_EXCEEDED report', async () => {
    const poison = await node.connectAs('ria-poison');
    const channel = await poison.createChannel();
    let deliveries = 0;
    await channel.consume('dmr.client.ria-poison', (message: ConsumeMessage | null) => {
      if (message === null) return;
      deliveries += 1;
      channel.nack(message, false, true);
    });
    const id = await ria.send({ to: 'ria-poison' });
    const report = parseReport(await ria.next(15_000));
    assert.equal(report.reason, 'DELIVERY_LIMIT_EXCEEDED');
    assert.equal(report.messageId, id);
    // deliveryLimit 3: the first delivery plus three redeliveries.
    assert.equal(deliveries, 4);
    const [evidence] = await node.take('dmr.client.ria-poison.dlq');
    assert.equal(evidence?.properties.message_id, id);
    await poison.close();
  });

  it('holds messages for a full recipient queue instead of refusing them; the shard keeps routing; all arrive', async () => {
    await shrinkQueue(node, 'ria-poison', 2);
    const ids = new Set<string>();
    for (let i = 0; i < 8; i += 1) ids.add((await ria.send({ to: 'ria-poison' })) ?? '');
    await waitFor('messages held for ria-poison', async () => (await metric(node, 'dmr_router_messages_held')) >= 1, {
      timeoutMs: 10_000,
    });
    // The same shard keeps routing to everyone else meanwhile.
    const other = await ria.send({ to: 'rik-bot' });
    assert.equal((await rik.next()).properties.messageId, other);
    // A held message whose TTL runs out is settled with a report while its recipient is still full.
    const expiring = await ria.send({ to: 'ria-poison', expiration: '1000' });
    const expired = parseReport(await ria.next(15_000));
    assert.equal(expired.reason, 'MESSAGE_EXPIRED', JSON.stringify(expired));
    assert.equal(expired.messageId, expiring);
    // The recipient consumes: every held message arrives, once; none was refused.
    const poison = await node.client('ria-poison');
    const received: string[] = [];
    while (received.length < ids.size) received.push(String((await poison.next(15_000)).properties.messageId));
    assert.deepEqual(new Set(received), ids);
    assert.equal(received.length, ids.size, 'no duplicates');
    await waitFor('every decision logged', () => [...ids].every((id) => node.decisions(id).length > 0), {
      timeoutMs: 5_000,
    });
    for (const id of ids)
      assert.deepEqual(
        node.decisions(id).map((line) => line.result),
        ['routed'],
        id,
      );
    assert.equal(await metric(node, 'dmr_router_messages_rejected_total', { reason: 'RECIPIENT_QUEUE_FULL' }), 0);
    assert.ok((await metric(node, 'dmr_router_messages_held_total', { kind: 'recipient' })) >= 1);
    await waitFor('the hold emptied', async () => (await metric(node, 'dmr_router_messages_held')) === 0, {
      timeoutMs: 5_000,
    });
    await poison.close();
  });

  it('holds a refused message until its report fits the full sender queue: no report lost, one rejected copy', async () => {
    // ria-desk sends, does not consume yet, and its queue has room for one message.
    await shrinkQueue(node, 'ria-desk', 1);
    const desk = await node.client('ria-desk');
    const ids: string[] = [];
    // A quorum queue applies its bound a little late (a burst can overshoot it, more so on a busy machine): refusals
    // until one's report meets it full, in small bursts, never a fixed count that a slow broker's overshoot absorbs.
    const held = async (): Promise<boolean> => (await metric(node, 'dmr_router_messages_held')) >= 1;
    while (ids.length < 60 && !(await held())) {
      for (let i = 0; i < 3; i += 1) ids.push((await desk.send({ to: 'nobody-bot' })) ?? '');
      await waitFor(
        'the burst settled or held',
        async () => (await held()) || ids.every((id) => node.decisions(id).length > 0),
        {
          timeoutMs: 15_000,
        },
      ).catch(() => undefined);
    }
    // The refusals whose reports met the full queue wait unacked for it: not settled, no report lost.
    await waitFor('a refusal held for its report', held, { timeoutMs: 15_000 });
    const settled = ids.filter((id) => node.decisions(id).length > 0).length;
    assert.ok(settled < ids.length, `${settled} of ${ids.length} settled while their reports wait`);
    assert.equal(await metric(node, 'dmr_router_reports_total', { kind: 'rejected-lost' }), 0);
    assert.ok((await metric(node, 'dmr_router_messages_held_total', { kind: 'report' })) >= 1);
    // The sender consumes: every report arrives once, and every refusal settles with one rejected copy.
    const reports = new Map<string, string>();
    while (reports.size < ids.length) {
      const report = parseReport(await desk.next(15_000));
      assert.ok(!reports.has(report.messageId ?? ''), `a second report about ${String(report.messageId)}`);
      reports.set(report.messageId ?? '', report.reason);
    }
    assert.deepEqual(new Set(reports.keys()), new Set(ids));
    assert.ok([...reports.values()].every((reason) => reason === 'RECIPIENT_UNKNOWN'));
    await waitFor('every refusal settled', () => ids.every((id) => node.decisions(id).length > 0), {
      timeoutMs: 5_000,
    });
    await waitFor('the hold emptied', async () => (await metric(node, 'dmr_router_messages_held')) === 0, {
      timeoutMs: 5_000,
    });
    const copies = (await node.take('dmr.rejected')).filter((copy) => ids.includes(String(copy.properties.message_id)));
    assert.equal(
      copies.length,
      ids.length,
      'one rejected copy per refused message, however often its report was tried',
    );
    await desk.close();
  });

  it('takes a message that waited past the skew window (a right clock, a late router), refuses a clock ahead', async () => {
    const now = Math.floor(Date.now() / 1000);
    // 400 s old: past the 300 s skew, within the fixture's maximum age (dedupWindowMs − timestampSkewMs = 600 s).
    const waited = await ria.send({ to: 'rik-bot', timestamp: now - 400 });
    assert.equal((await rik.next()).properties.messageId, waited);
    const ahead = await ria.send({ to: 'rik-bot', timestamp: now + 600 });
    const report = parseReport(await ria.next());
    assert.equal(report.messageId, ahead);
    assert.equal(report.reason, 'TIMESTAMP_SKEW');
  });

  it('CC/BCC choose no extra destination: refused with a report, nothing in the CC queue, audit or a loop', async () => {
    // The reported attacks: to itself (allowed) with another client, the audit stream or an
    // ingress queue in CC, in the cases a client library may write it.
    const ids = new Map<string, string>();
    for (const [name, cc] of [
      ['client in CC', { CC: ['old-bot', 'dmr.client.old-bot'] }],
      ['audit in CC', { CC: ['dmr.audit'], 'dmr-recipient': 'nobody-bot' }],
      ['ingress in CC', { cc: ['dmr.ingress.0'] }],
      ['mixed case', { Cc: ['old-bot'] }],
    ] as const) {
      const id = await ria.send({ to: 'ria-bot', body: `{"marker":"zz-marker ${name}"}`, headers: cc });
      ids.set(id ?? '', name);
      const report = parseReport(await ria.next());
      assert.equal(report.reason, 'ROUTING_HEADER_FORBIDDEN', `${name}: ${JSON.stringify(report)}`);
      assert.equal(report.messageId, id, name);
    }
    // BCC never reaches the router (RabbitMQ strips it), so it is judged at the client's own publish:
    // the consistent-hash ingress exchange hashes message_id and ignores extra routing keys.
    const bcc = await ria.send({ to: 'ria-bot', headers: { BCC: ['old-bot', 'dmr.client.old-bot', 'dmr.audit'] } });
    const delivered = await ria.next();
    assert.equal(delivered.properties.messageId, bcc);
    assert.equal(delivered.properties.headers?.BCC, undefined);
    // Every decision above is settled (reports and the delivery arrived): the queues can be read now.
    assert.deepEqual(await node.take('dmr.client.old-bot'), [], 'the suspended client received nothing');
    const rejected = await node.take('dmr.rejected');
    const refused = rejected.map((copy) => ids.get(copy.properties.message_id ?? '')).filter((name) => name);
    assert.deepEqual(refused.sort(), [...ids.values()].sort());
    // Reports are confirmed before the decision is logged: wait for the lines, then count them.
    await waitFor(
      '[...ids.keys()].every((id) => node.decisions(id).length > 0)',
      () => [...ids.keys()].every((id) => node.decisions(id).length > 0),
      { timeoutMs: 5_000 },
    );
    for (const id of ids.keys()) assert.equal(node.decisions(id).length, 1, 'decided once: no loop');
    const audit = (await node.auditRecords(300)).map((bytes) => bytes.toString('utf8'));
    assert.ok(!audit.some((record) => record.includes('zz-marker')), 'no sender bytes in the audit stream');
    assert.deepEqual(await node.take('dmr.ingress.0'), [], 'nothing looped back into ingress');
  });

  it('refuses a 64 KiB header table (raw frames amqplib cannot encode) with a report within 1 s, in a few log lines', async () => {
    const channel = await ria.connection.createChannel();
    const id = randomUUID();
    const logged = node.logLines.length;
    await rawPublish(
      ria.connection,
      channel,
      'dmr.ingress',
      {
        messageId: id,
        userId: clientUser('ria-bot'),
        type: 'ChatMessage',
        timestamp: Math.floor(Date.now() / 1000),
        deliveryMode: 2,
        headers: [
          ['dmr-recipient', { t: 'S', v: 'rik-bot' }],
          ['dmr-version', { t: 'b', v: 1 }],
          ['app-pad', { t: 'S', v: 'x'.repeat(70_000) }],
        ],
      },
      Buffer.from('{"text":"big headers"}'),
      'dmr.client.ria-bot',
    );
    const report = parseReport(await ria.next(1_000));
    assert.equal(report.reason, 'HEADERS_TOO_LARGE');
    assert.equal(report.messageId, id);
    await waitFor('node.decisions(id).length === 1', () => node.decisions(id).length === 1, { timeoutMs: 2_000 });
    const lines = node.logLines.slice(logged).filter((line) => line.messageId === id);
    assert.ok(lines.length <= 3, JSON.stringify(lines));
    assert.deepEqual(await node.take('dmr.ingress.0'), []);
    await channel.close();
    await node.take('dmr.rejected');
  });

  it('the broker refuses a 20 MiB publish before storing it (max_message_size = maxMessageBytes)', async () => {
    const connection = await node.connectAs('ria-bot');
    const channel = await connection.createConfirmChannel();
    const closed = new Promise<Error>((resolve) => channel.once('error', resolve));
    const received = await metric(node, 'dmr_router_messages_received_total');
    const big = randomUUID();
    channel.publish('dmr.ingress', '', Buffer.alloc(20 * 1_048_576), {
      messageId: big,
      userId: clientUser('ria-bot'),
      type: 'ChatMessage',
      timestamp: Math.floor(Date.now() / 1000),
      headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1 },
    });
    const error = await closed;
    assert.match(error.message, /406|larger than configured max size/, error.message);
    await connection.close().catch(() => undefined);
    // A message sent after it is routed; the big one never reached the router or the recipient.
    const after = await ria.send({ to: 'rik-bot' });
    assert.equal((await rik.next()).properties.messageId, after);
    await waitFor("node.decisions(after ?? '').length === 1", () => node.decisions(after ?? '').length === 1, {
      timeoutMs: 5_000,
    });
    assert.equal(await metric(node, 'dmr_router_messages_received_total'), received + 1);
    assert.equal(node.decisions(big).length, 0);
    // The router checked that at start, and says so when the broker would store larger bodies.
    assert.equal(await metric(node, 'dmr_router_broker_body_limit_enforced'), 1);
    const registry = new Registry();
    const lax = new Router({
      nodeId: node.nodeId,
      connect: () => node.connectAs(node.nodeId),
      policy: node.policy,
      logger: node.logger,
      metrics: new RouterMetrics(registry),
    });
    lax.applyConfig({ ...node.config, limits: { ...node.config.limits, maxMessageBytes: 1_000 } });
    const logged = node.logLines.length;
    await lax.start();
    await lax.stop();
    const gauge = (await registry.getMetricsAsJSON()).find((m) => m.name === 'dmr_router_broker_body_limit_enforced');
    assert.equal(gauge?.values[0]?.value, 0);
    assert.ok(node.logLines.slice(logged).some((line) => String(line.msg).includes('max_message_size')));
  });

  it('reports a message that expired in the ingress before a router took it: MESSAGE_EXPIRED, record, evidence', async () => {
    // Nobody takes from dmr.ingress.0: the message waits there, and its own expiration runs out (a quorum queue
    // honours a message's TTL in 3.10). The sender had its confirm: it must hear what became of it (issue 14).
    await quietInputs(node);
    await node.stopRouters();
    // CC names extra routing keys (RABBITMQ-FACTS): the input's own dead-letter routing key must replace them, or
    // this dead letter would land in rik-bot's DLQ (bound under 'rik-bot' on dmr.dead-letter).
    const id = await ria.send({ to: 'rik-bot', expiration: '1000', headers: { CC: ['rik-bot'] } });
    const copy = await node.awaitRejected(id, 15_000);
    const death = latestDeath(copy);
    assert.equal(death?.reason, 'expired');
    assert.equal(death?.queue, 'dmr.ingress.0');
    assert.equal(death?.['original-expiration'], '1000');
    assert.equal(copy?.properties.headers?.CC, undefined, 'a dead-letter routing key drops CC');
    // A router (any shard's) takes the dead letter from dmr.dead-letter-reports and tells the sender.
    await node.startRouter();
    const reportMessage = await reportAbout(ria, id);
    assert.equal(reportMessage.properties.type, 'dmr.DeliveryReport');
    const report = parseReport(reportMessage);
    assert.equal(report.messageId, id);
    assert.equal(report.reason, 'MESSAGE_EXPIRED');
    assert.equal(report.status, 'dead-lettered');
    assert.equal(report.node, 'node-a');
    assert.equal(report.detail, 'expired in dmr.ingress.0 before a router took it');
    // The report is confirmed before the record is written and the line logged.
    const failed = (): Array<Record<string, unknown>> =>
      node.logLines.filter((line) => line.messageId === id && line.event === 'delivery.failed');
    await waitFor('the delivery.failed line', () => failed().length > 0, { timeoutMs: 5_000 });
    const lines = failed();
    assert.deepEqual(
      lines.map((line) => [line.msg, line.reason, line.sender, line.input, line.report]),
      [['dead-letter', 'MESSAGE_EXPIRED', 'ria-bot', 'dmr.ingress.0', 'confirmed']],
    );
    const records = (await node.auditRecords(300)).map((bytes) => JSON.parse(bytes.toString('utf8')) as AuditRecord);
    assert.deepEqual(
      records
        .filter((record) => record.messageId === id)
        .map((record) => [record.kind, record.result, record.reason, record.sender, record.recipient]),
      [['dead-letter', 'reported', 'MESSAGE_EXPIRED', 'ria-bot', 'rik-bot']],
    );
    assert.equal(node.decisions(id ?? '').length, 0, 'never routed');
    assert.deepEqual(await rik.drain(300), [], 'never delivered');
    assert.deepEqual(await node.take('dmr.client.rik-bot.dlq'), [], 'CC routed nothing');
  });

  it('reports an ingress message taken more than ingressDeliveryLimit times without a settle, and keeps it in dmr.rejected', async () => {
    await quietInputs(node);
    await node.stopRouters();
    // Stands in for a router that crashes on the message every time: takes it and hands it back.
    const connection = await node.connectAs('node-a');
    const channel = await connection.createChannel();
    let deliveries = 0;
    await channel.consume('dmr.ingress.0', (message) => {
      if (message === null) return;
      deliveries += 1;
      channel.nack(message, false, true);
    });
    const id = await ria.send({ to: 'rik-bot' });
    const copy = await node.awaitRejected(id, 10_000);
    const death = latestDeath(copy);
    assert.equal(death?.reason, 'delivery_limit');
    assert.equal(death?.queue, 'dmr.ingress.0');
    assert.equal(deliveries, node.config.limits.ingressDeliveryLimit + 1);
    await connection.close();
    await node.startRouter();
    const report = parseReport(await reportAbout(ria, id));
    assert.equal(report.reason, 'DELIVERY_LIMIT_EXCEEDED');
    assert.equal(report.status, 'dead-lettered');
    assert.match(report.detail, /^taken from dmr\.ingress\.0 too often without a settle/);
  });

  it('gives each sender its share of the replay window: the flooder is refused, others are not', async () => {
    await node.stopRouters();
    const handle = await node.startRouter();
    handle.router.applyConfig({ ...node.config, limits: { ...node.config.limits, maxIdsPerSender: 3 } });
    flood ??= await node.client('ria-flood');
    const ids: Array<string | undefined> = [];
    for (let i = 0; i < 5; i += 1) ids.push(await flood.send({ to: 'ria-bot' }));
    const reports = [await flood.next(), await flood.next()].map((message) => parseReport(message));
    assert.deepEqual(
      reports.map((report) => report.reason),
      ['SENDER_QUOTA_EXCEEDED', 'SENDER_QUOTA_EXCEEDED'],
    );
    assert.deepEqual(reports.map((report) => report.messageId).sort(), ids.slice(3).sort());
    const other = await ria.send({ to: 'rik-bot' });
    assert.equal((await rik.next()).properties.messageId, other, 'another sender on the shard still passes');
    const arrived = [await ria.next(), await ria.next(), await ria.next()].map((m) => m.properties.messageId);
    assert.deepEqual(arrived.sort(), ids.slice(0, 3).sort());
    await node.stopRouters();
    await node.startRouter();
  });

  it('rate-limits a sender on the router with a reason, leaving other senders alone (clock held still)', async () => {
    await node.stopRouters();
    const frozen = Date.now();
    const handle = await node.startRouter({ now: () => frozen });
    handle.router.applyConfig({
      ...node.config,
      limits: { ...node.config.limits, senderRatePerSecond: 1, senderBurst: 2 },
    });
    flood ??= await node.client('ria-flood');
    const ids: Array<string | undefined> = [];
    for (let i = 0; i < 4; i += 1) ids.push(await flood.send({ to: 'ria-bot' }));
    const reports = [await flood.next(), await flood.next()].map((message) => parseReport(message));
    assert.deepEqual(
      reports.map((report) => report.reason),
      ['SENDER_RATE_LIMITED', 'SENDER_RATE_LIMITED'],
    );
    assert.deepEqual(reports.map((report) => report.messageId).sort(), ids.slice(2).sort());
    const other = await ria.send({ to: 'rik-bot' });
    assert.equal((await rik.next()).properties.messageId, other);
    assert.deepEqual(
      [await ria.next(), await ria.next()].map((m) => m.properties.messageId).sort(),
      ids.slice(0, 2).sort(),
    );
    // The report is confirmed before the audit record, the ack and the metric: wait for those.
    await waitFor(
      "(await metric(node, 'dmr_router_messages_rejected_total', { reason: 'SENDER_RATE_LIMITED' })) === 2",
      async () => (await metric(node, 'dmr_router_messages_rejected_total', { reason: 'SENDER_RATE_LIMITED' })) === 2,
      { timeoutMs: 5_000 },
    );
    await node.stopRouters();
    await node.startRouter();
  });

  it('an encoder refusal is a refusal, a bug a dead letter: neither is retried (faults injected into a real router)', async () => {
    await node.stopRouters();
    await node.take('dmr.rejected');
    // The encoder fault: amqplib throws before writing when it cannot encode a message.
    const connect = async (): Promise<ChannelModel> => {
      const model = await node.connectAs(node.nodeId);
      const create = model.createConfirmChannel.bind(model);
      model.createConfirmChannel = async () => {
        const channel = await create();
        const publish = channel.publish.bind(channel);
        channel.publish = (exchange, key, content, options, callback) => {
          if (exchange === 'dmr.delivery' && options?.headers?.['app-explode'] !== undefined) {
            throw new RangeError('Encoded field table (headers or arguments) exceeds the 65536 byte encoding buffer');
          }
          return publish(exchange, key, content, options, callback);
        };
        return channel;
      };
      return model;
    };
    // The bug: a decision without reasons makes the path throw a TypeError.
    const buggy: PolicyDecider = {
      ...node.policy,
      mode: 'wasm',
      activeRevision: '1',
      decide: (input) =>
        (input as PolicyInput).message.type === 'Malformed'
          ? Promise.resolve({ allow: true } as unknown as PolicyDecision)
          : node.policy.decide(input),
      close: () => Promise.resolve(),
    };
    const handle = await node.startRouter({ connect, policy: buggy });
    const unencodable = await ria.send({ to: 'rik-bot', headers: { 'app-explode': 'yes' } });
    const report = parseReport(await ria.next());
    assert.equal(report.reason, 'MESSAGE_UNENCODABLE');
    assert.equal(report.messageId, unencodable);
    await waitFor('the decision', () => node.decisions(unencodable ?? '').length === 1, { timeoutMs: 5_000 });

    const malformed = await ria.send({ to: 'rik-bot', type: 'Malformed' });
    const copy = await node.awaitRejected(malformed, 10_000);
    const death = latestDeath(copy);
    assert.equal(death?.reason, 'rejected');
    assert.equal(await metric(node, 'dmr_router_messages_dead_lettered_total'), 1);
    assert.equal(node.decisions(malformed ?? '').length, 0);
    // A failed delivery like the others (docs/events.md): one delivery.failed line, one count, one audit record.
    const lines = node.logLines.filter((line) => line.messageId === malformed && line.event === 'delivery.failed');
    assert.deepEqual(
      lines.map((line) => [line.msg, line.reason]),
      [['message dead-lettered after an internal error', 'INTERNAL']],
    );
    assert.equal(await metric(node, 'dmr_events_total', { kind: 'delivery.failed', reason: 'INTERNAL' }), 1);
    const records = (await node.auditRecords()).map((bytes) => JSON.parse(bytes.toString('utf8')) as AuditRecord);
    assert.deepEqual(
      records.filter((record) => record.messageId === malformed).map((record) => [record.result, record.reason]),
      [['rejected', 'INTERNAL']],
    );
    // Both were settled before this one was sent, and rik's queue is FIFO: the next message is this one.
    const clean = await ria.send({ to: 'rik-bot' });
    assert.equal((await rik.next()).properties.messageId, clean, 'neither was delivered');
    assert.equal(handle.router.state, 'running');
    await node.stopRouters();
    await node.startRouter();
  });

  it('no policy answer for longer than the ingress delivery limit: holds messages, backs off, loses none', async () => {
    await node.stopRouters();
    await node.take('dmr.rejected');
    let failing = true;
    const attempts = new Map<string, number>(); // message id → decisions asked for it
    const flaky: PolicyDecider = {
      mode: 'wasm',
      get activeRevision() {
        return failing ? undefined : node.policy.activeRevision;
      },
      decide: (input) => {
        const id = (input as PolicyInput).message.id;
        attempts.set(id, (attempts.get(id) ?? 0) + 1);
        return failing
          ? Promise.reject(new DmrError('POLICY_UNAVAILABLE', 'no policy bundle is active'))
          : node.policy.decide(input);
      },
      close: () => Promise.resolve(),
    };
    const handle = await node.startRouter({ policy: flaky, backoff: { initialMs: 50, maxMs: 200 } });
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push((await ria.send({ to: 'rik-bot' })) ?? '');
    // The router holds what it took and takes nothing new while paused. More attempts at a held message than
    // the ingress queue's delivery limit: a requeue per attempt would have dead-lettered it by now.
    const enough = node.config.limits.ingressDeliveryLimit + 2;
    const most = (): number => Math.max(0, ...attempts.values());
    await waitFor(
      () => JSON.stringify([...attempts.values()]),
      () => most() >= enough,
      { timeoutMs: 15_000 },
    );
    // Paused with back-off: one attempt per pause, not a busy loop.
    assert.ok(most() < enough + 10, JSON.stringify([...attempts.values()]));
    assert.ok((await metric(node, 'dmr_router_messages_requeued_total', { reason: 'policy' })) >= enough);
    assert.equal(handle.router.state, 'backing-off');
    failing = false;
    const delivered = new Set<string | undefined>();
    await waitFor(
      () => `delivered ${delivered.size} of 5`,
      async () => {
        for (const message of await rik.drain(300)) delivered.add(message.properties.messageId as string);
        return ids.every((id) => delivered.has(id));
      },
      { timeoutMs: 15_000 },
    );
    assert.deepEqual(await ria.drain(300), [], 'no refusal (in particular no replay) after the outage');
    assert.deepEqual(await node.take('dmr.rejected'), [], 'nothing dead-lettered');
    await waitFor("handle.router.state === 'running'", () => handle.router.state === 'running', { timeoutMs: 5_000 });
  });

  it('past the hold bound (parking refusing) the router takes nothing new until held messages settle; none lost', async () => {
    await node.stopRouters();
    await shrinkQueue(node, 'ria-poison', 1);
    // Parking takes nothing (decision 0039): without its bindings the router's mandatory publish comes back, the
    // same branch as a full parking queue's nack, so the messages for the full recipient are held past its share.
    // (A parking queue bounded at 1 is not a way to test this: a quorum queue's reject-publish lags, and a burst of
    // concurrent publishes from the router's window is taken far past the bound.)
    await node.resizeQueue('dmr.parking.0', node.config.limits.queueMaxLength, []);
    const handle = await node.startRouter({ hold: { maxMessages: 3, maxPerKey: 1 } });
    const ids = new Set<string>();
    for (let i = 0; i < 8; i += 1) ids.add((await ria.send({ to: 'ria-poison' })) ?? '');
    // The router says so once it cancelled its consumers. (The queue's consumer count cannot show it: a quorum
    // queue keeps a cancelled consumer while it still has the consumer's unacked messages, the held ones.)
    await waitFor('the router to stop taking its inputs', () => node.logLines.some((l) => l.msg === 'inputs stopped'), {
      timeoutMs: 15_000,
    });
    assert.ok((await metric(node, 'dmr_router_messages_held')) >= 3);
    // Said once, not once per message held past its share (an overload would flood the log otherwise).
    assert.equal(node.logLines.filter((l) => String(l.msg).startsWith('parking does not take messages')).length, 1);
    // Nothing new is taken: a message for another recipient stays ready in the ingress queue.
    const waiting = await ria.send({ to: 'rik-bot' });
    await waitFor('it to stay ready in dmr.ingress.0', async () => (await ingressReady(node)) >= 1, {
      timeoutMs: 15_000,
    });
    assert.equal(handle.router.state, 'running', 'a full hold is not a paused router: it settles what it holds');
    // The recipient consumes: the hold drains, the router takes the ingress again, everything arrives.
    const poison = await node.client('ria-poison');
    const received = new Set<string>();
    while (received.size < ids.size) received.add(String((await poison.next(15_000)).properties.messageId));
    assert.deepEqual(received, ids);
    assert.equal((await rik.next(15_000)).properties.messageId, waiting);
    assert.equal(await metric(node, 'dmr_router_messages_rejected_total', { reason: 'RECIPIENT_QUEUE_FULL' }), 0);
    await poison.close();
    await node.resizeQueue('dmr.parking.0', node.config.limits.queueMaxLength, PARKING_BINDINGS);
  });

  it('parks what one stuck recipient cannot hold: the shard keeps flowing to others, all arrive once', async (t) => {
    await node.stopRouters();
    await shrinkQueue(node, 'ria-poison', 2);
    // ria-desk sends too and never reads its reports (room for one): its refusals wait for their reports.
    await shrinkQueue(node, 'ria-desk', 1);
    const desk = await node.client('ria-desk');
    const handle = await node.startRouter({ hold: { maxMessages: 8, maxPerKey: 2 } });
    const logged = node.logLines.length;
    // Far more for the stuck recipient than the shard could hold, and refusals waiting for reports, interleaved
    // with traffic to rik-bot on the same shard: rik-bot's messages all arrive while ria-poison is stuck.
    const stuck = new Set<string>();
    const refused = new Set<string>();
    const others: string[] = [];
    const sending: Array<Promise<unknown>> = [];
    for (let i = 0; i < 400; i += 1) {
      sending.push(ria.send({ to: 'ria-poison' }).then((id) => stuck.add(id ?? '')));
      if (i % 30 === 0) sending.push(desk.send({ to: 'nobody-bot' }).then((id) => refused.add(id ?? '')));
      if (i % 20 === 0) sending.push(ria.send({ to: 'rik-bot' }).then((id) => others.push(id ?? '')));
      if (sending.length >= 50) await Promise.all(sending.splice(0));
    }
    await Promise.all(sending);
    const arrived: string[] = [];
    while (arrived.length < others.length) arrived.push(String((await rik.next(15_000)).properties.messageId));
    assert.deepEqual(arrived.sort(), [...others].sort());
    // A parked message whose TTL runs out gets its report when it comes back, while the recipient is still stuck.
    // (Its TTL must outlast its wait in dmr.ingress.0 behind a batch of returning parked messages: one that expires
    // there goes to dmr.rejected without a report.)
    const cpu = process.cpuUsage();
    const unparked = await metric(node, 'dmr_router_messages_unparked_total');
    const expiring = await ria.send({ to: 'ria-poison', expiration: '4000' });
    const expired = parseReport(await ria.next(30_000));
    assert.equal(expired.messageId, expiring);
    assert.equal(expired.reason, 'MESSAGE_EXPIRED', JSON.stringify(expired));
    assert.equal(expired.status, 'rejected', 'refused by the router when it came back, not dead-lettered');
    const { user, system } = process.cpuUsage(cpu);
    const cycled = (await metric(node, 'dmr_router_messages_unparked_total')) - unparked;
    t.diagnostic(
      `${cycled} parked messages came back and were parked again: ${((user + system) / 1000 / cycled).toFixed(2)} ms of this process's CPU each (router and clients)`,
    );
    assert.ok((await metric(node, 'dmr_router_messages_parked_total', { kind: 'recipient' })) > 0);
    assert.ok((await metric(node, 'dmr_router_messages_parked_total', { kind: 'report' })) > 0);
    assert.ok((await metric(node, 'dmr_router_messages_unparked_total')) > 0, 'parked messages came back');
    assert.ok((await metric(node, 'dmr_router_messages_held')) <= 4, 'two per destination, whatever waits');
    assert.ok(!node.logLines.slice(logged).some((line) => line.msg === 'inputs stopped'), 'the shard never stopped');
    assert.equal(handle.router.state, 'running');

    // The stuck recipient consumes, and the sender reads its reports: every message arrives once, every refusal
    // is reported once with one rejected copy.
    const poison = await node.client('ria-poison');
    const received = new Set<string>();
    let copies = 0;
    while (received.size < stuck.size) {
      const id = String((await poison.next(30_000)).properties.messageId);
      if (received.has(id)) copies += 1;
      received.add(id);
    }
    const reports = new Map<string, string>();
    while (reports.size < refused.size) {
      const report = parseReport(await desk.next(30_000));
      assert.ok(!reports.has(report.messageId ?? ''), `a second report about ${String(report.messageId)}`);
      reports.set(report.messageId ?? '', report.reason);
    }
    assert.deepEqual(new Set(reports.keys()), refused);
    assert.ok([...reports.values()].every((reason) => reason === 'RECIPIENT_UNKNOWN'));
    assert.deepEqual(received, stuck);
    assert.equal(copies, 0, 'no message twice');
    await waitFor('every decision logged', () => [...stuck, ...refused].every((id) => node.decisions(id).length > 0), {
      timeoutMs: 10_000,
    });
    for (const id of stuck)
      assert.deepEqual(
        node.decisions(id).map((line) => line.result),
        ['routed'],
        id,
      );
    assert.deepEqual(await poison.drain(300), [], 'nothing more');
    const rejectedCopies = (await node.take('dmr.rejected')).filter((copy) =>
      refused.has(String(copy.properties.message_id)),
    );
    assert.equal(rejectedCopies.length, refused.size, 'one rejected copy per refusal, parked or not');
    assert.equal(await metric(node, 'dmr_router_messages_rejected_total', { reason: 'RECIPIENT_QUEUE_FULL' }), 0);
    await poison.close();
    await desk.close();
    await node.stopRouters();
    await node.startRouter();
  });

  it('wrote one audit record per decision, in an unbroken hash chain per router instance', async () => {
    await node.stopRouters();
    const records = await node.auditRecords();
    const byWriter = new Map<string, Buffer[]>();
    for (const bytes of records) {
      const { writer } = JSON.parse(bytes.toString('utf8')) as AuditRecord;
      byWriter.set(writer, [...(byWriter.get(writer) ?? []), bytes]);
    }
    assert.ok(byWriter.size >= 2, 'one chain per router instance of this file');
    for (const [writer, chain] of byWriter) assert.equal(firstBrokenRecord(writer, chain), -1, writer);
    const audited = new Set(records.map((bytes) => (JSON.parse(bytes.toString('utf8')) as AuditRecord).messageId));
    const decided = node.logLines.filter((line) => line.msg === 'route' && typeof line.messageId === 'string');
    assert.ok(decided.length > 20);
    for (const line of decided)
      assert.ok(audited.has(line.messageId as string), `no audit record for ${String(line.messageId)}`);
    assert.ok(!records.some((bytes) => bytes.toString('utf8').includes('tere')), 'no payload in audit records');
  });
});
