/**
 * The SDK against a real single-node DMR data plane (NodeFixture: TLS-only
 * broker with EXTERNAL auth, reconciled layout, signed policy bundle, a
 * running router). Default grants: organisation ria → rik only.
 *
 * Each test opens its own DmrClients and closes them, so at most one
 * consumer reads a client queue at a time.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect as connectTcp, createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDmrError } from '@dmr/core';
import { clientUser, NodeFixture, waitFor } from '@dmr/testkit';
import { DmrClient, type ClientState, type ConnectOptions, type ReceivedMessage } from './client.js';
import { fixtureConnection, receivedProtected } from './test-support.js';
import { protectPayload } from './protect.js';
import type { DeliveryReport } from './report.js';

interface Identity {
  chainPem: string;
  privateKeyPem: string;
}

/**
 * A TCP relay between a client and the broker (TLS passes through untouched)
 * that can hold back what the broker sends — so a publish reaches the broker
 * but its confirm never reaches the client — and cut every connection.
 */
interface Relay {
  port: number;
  holdDownstream: boolean;
  cut(): void;
  close(): Promise<void>;
}

async function startRelay(brokerPort: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connectTcp(brokerPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => {
      if (!relay.holdDownstream) client.write(chunk);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const relay: Relay = {
    port: (server.address() as AddressInfo).port,
    holdDownstream: false,
    cut: () => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        relay.cut();
        server.close(() => resolve());
      }),
  };
  return relay;
}

describe('DmrClient against a DMR node', () => {
  let node: NodeFixture;
  const identities = new Map<string, Identity>();
  const open: DmrClient[] = [];

  async function connect(id: string, extra: Partial<ConnectOptions> = {}): Promise<DmrClient> {
    let identity = identities.get(id);
    if (identity === undefined) {
      // A second certificate for the same id: the broker user is the CN, so it works like the fixture's own.
      identity = await node.ca.issueWithKey({ kind: 'client', id });
      identities.set(id, identity);
    }
    const client = await DmrClient.connect({
      ...fixtureConnection(node, id),
      tls: { cert: identity.chainPem, key: identity.privateKeyPem, ca: node.harness.trustBundlePem },
      ...extra,
    });
    open.push(client);
    return client;
  }

  before(async () => {
    node = await NodeFixture.start({ label: 'sdk' });
  });

  after(async () => {
    await Promise.all(open.map((client) => client.close({ drainTimeoutMs: 1_000 })));
    await node.stop();
  });

  it('round trip: send resolves on confirm, the recipient handler gets from/type/body', async () => {
    const ria = await connect('ria-bot');
    const rik = await connect('rik-bot');
    const got: ReceivedMessage[] = [];
    const subscription = await rik.receive((message) => {
      got.push(message);
    });
    const id = await ria.send({
      to: 'rik-bot',
      type: 'ChatMessage',
      body: { text: 'tere' },
      headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    });
    await waitFor('the message', () => got.length === 1);
    const [message] = got;
    assert.ok(message);
    assert.equal(message.id, id);
    assert.equal(message.from, 'ria-bot');
    assert.equal(message.to, 'rik-bot');
    assert.equal(message.type, 'ChatMessage');
    assert.deepEqual(JSON.parse(message.body.toString('utf8')), { text: 'tere' });
    assert.equal(message.contentType, 'application/json');
    assert.equal(message.origin, node.nodeId);
    assert.deepEqual(
      message.hops.map((hop) => hop.node),
      [node.nodeId],
    );
    assert.ok(Math.abs(message.sentAt.getTime() - Date.now()) < 60_000);
    assert.equal(message.headers.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    assert.equal(message.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    assert.equal(ria.state, 'open');
    await subscription.cancel();
    await Promise.all([ria.close(), rik.close()]);
    assert.equal(ria.state, 'closed');
    await assert.rejects(ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'late' }), { code: 'CLIENT_CLOSED' });
  });

  it('a second send of a message id still under way joins the first: one publish, both resolve', async () => {
    const ria = await connect('ria-bot');
    const rik = await connect('rik-bot');
    const handled: string[] = [];
    await rik.receive((message) => {
      handled.push(message.id);
    });
    const id = randomUUID();
    // The second call comes before the first copy's confirm could: it is under way.
    const first = ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'once', messageId: id });
    const second = ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'once', messageId: id });
    assert.deepEqual(await Promise.all([first, second]), [id, id]);
    await waitFor('the message', () => handled.includes(id));
    // One copy reached the node: a second would have been decided (MESSAGE_REPLAYED) as well.
    const barrier = await ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'barrier' });
    await waitFor('the barrier', () => handled.includes(barrier));
    assert.equal(node.decisions(id).length, 1, JSON.stringify(node.decisions(id)));
    await Promise.all([ria.close(), rik.close()]);
  });

  it('a second send of an id under way with another body or recipient is refused, never joined', async () => {
    const ria = await connect('ria-bot');
    const rik = await connect('rik-bot');
    const handled: string[] = [];
    await rik.receive((message) => {
      handled.push(message.id);
    });
    const id = randomUUID();
    const first = ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'once', messageId: id });
    await assert.rejects(ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'other', messageId: id }), {
      code: 'INVALID_ARGUMENT',
    });
    await assert.rejects(ria.send({ to: 'ria-bot', type: 'ChatMessage', body: 'once', messageId: id }), {
      code: 'INVALID_ARGUMENT',
    });
    assert.equal(await first, id);
    // The first message goes through, and is consumed here: later tests must not find it in rik-bot's queue.
    await waitFor('the message', () => handled.includes(id));
    await Promise.all([ria.close(), rik.close()]);
  });

  it('a policy-denied send becomes a typed report event with POLICY_DENIED, never a handler call', async () => {
    const rik = await connect('rik-bot');
    const handled: ReceivedMessage[] = [];
    const reports: DeliveryReport[] = [];
    rik.on('report', (report) => reports.push(report));
    await rik.receive((message) => {
      handled.push(message);
    });
    // rik → ria has no grant (only ria → rik).
    const id = await rik.send({ to: 'ria-bot', type: 'ChatMessage', body: 'may I?' });
    await waitFor('the report', () => reports.length === 1);
    const [report] = reports;
    assert.ok(report);
    assert.equal(report.messageId, id);
    assert.equal(report.status, 'rejected');
    assert.equal(report.reason, 'POLICY_DENIED');
    assert.ok(report.policy?.reasons.includes('NO_GRANT'), JSON.stringify(report.policy));
    assert.equal(report.node, node.nodeId);
    assert.equal(handled.length, 0);
    await rik.close();
  });

  it('a handler that throws once with onError requeue gets the message again, then it is done', async () => {
    const ria = await connect('ria-bot');
    const rik = await connect('rik-bot');
    let calls = 0;
    const barrier = randomUUID();
    let barrierSeen = false;
    await rik.receive(
      (message) => {
        if (message.id === barrier) {
          barrierSeen = true;
          return;
        }
        calls += 1;
        if (calls === 1) throw new Error('transient application failure');
      },
      { onError: 'requeue' },
    );
    await ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'again' });
    await waitFor('two handler calls', () => calls === 2);
    // A flush barrier instead of a pause: a requeued copy goes back to the head of the queue, so it would
    // reach the handler before a message sent now does.
    await ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'barrier', messageId: barrier });
    await waitFor('the barrier message', () => barrierSeen);
    assert.equal(calls, 2);
    await Promise.all([ria.close(), rik.close()]);
  });

  it('dedup: a second copy of a message id (router restarted, so its replay guard forgot) is acked without the handler', async () => {
    // Real mechanism: the router's replay guard is per-process memory (packages/node/README.md "Replays"),
    // so after a router restart the same message id passes the node again and reaches the queue twice,
    // exactly like a redelivery after a lost ack.
    const ria = await connect('ria-bot');
    const rik = await connect('rik-bot');
    const handled: string[] = [];
    const duplicates: string[] = [];
    rik.on('duplicate', (id) => duplicates.push(id));
    await rik.receive((message) => {
      handled.push(message.id);
    });
    const messageId = randomUUID();
    await ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'once', messageId });
    await waitFor('the first copy', () => handled.length === 1);
    await node.stopRouters();
    await node.startRouter();
    await ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'once', messageId });
    await waitFor('the second copy', () => duplicates.length === 1);
    assert.deepEqual(handled, [messageId]);
    assert.deepEqual(duplicates, [messageId]);
    await Promise.all([ria.close(), rik.close()]);
  });

  it('end-to-end protection: encrypted and signed round trip; a tampered ciphertext is refused and dead-lettered', async () => {
    const ria = await connect('ria-bot');
    const rik = await connect('rik-bot');
    const riaIdentity = identities.get('ria-bot') as Identity;
    const rikIdentity = identities.get('rik-bot') as Identity;
    const handled: ReceivedMessage[] = [];
    const errors: Error[] = [];
    rik.on('error', (error) => errors.push(error));
    await rik.receive(
      (message) => {
        handled.push(message);
      },
      {
        unprotect: {
          decryptWith: rikIdentity.privateKeyPem,
          verifySender: (id) => (identities.get(id) as Identity).chainPem,
        },
      },
    );
    const id = await ria.send({
      to: 'rik-bot',
      type: 'ChatMessage',
      body: { text: 'confidential' },
      protect: { signWith: riaIdentity.privateKeyPem, encryptFor: rikIdentity.chainPem },
    });
    await receivedProtected(handled, id, { text: 'confidential' });

    // The default certificate check: the certificate to encrypt for must be the recipient's.
    await assert.rejects(
      ria.send({
        to: 'rik-bot',
        type: 'ChatMessage',
        body: 'wrong key',
        protect: { signWith: riaIdentity.privateKeyPem, encryptFor: riaIdentity.chainPem },
      }),
      { code: 'CERTIFICATE_INVALID' },
    );

    // A ciphertext altered in transit, published as ria with a plain AMQP client (what a tampering party could do).
    const tamperedId = randomUUID();
    const body = await protectPayload(
      Buffer.from('{"text":"pay 10 €"}'),
      { id: tamperedId, from: 'ria-bot', to: 'rik-bot', type: 'ChatMessage' },
      { signWith: riaIdentity.privateKeyPem, encryptFor: rikIdentity.chainPem },
    );
    const parts = body.toString('utf8').split('.');
    const ciphertext = Buffer.from(parts[3] ?? '', 'base64url');
    ciphertext[2] = (ciphertext[2] ?? 0) ^ 0x20;
    parts[3] = ciphertext.toString('base64url');
    const raw = await node.client('ria-bot');
    await raw.send({
      to: 'rik-bot',
      messageId: tamperedId,
      body: Buffer.from(parts.join('.')),
      properties: { contentType: 'application/jose' },
    });
    await waitFor('the refusal', () => errors.length === 1);
    assert.equal((errors[0] as Error & { code?: string }).code, 'PROTECTION_INVALID');
    assert.equal(handled.length, 1);
    let dead: string[] = [];
    await waitFor(
      () => `${tamperedId} in the DLQ; it holds ${JSON.stringify(dead)}`,
      async () => {
        dead = [
          ...dead,
          ...(await node.take('dmr.client.rik-bot.dlq')).map((item) => item.properties.message_id ?? ''),
        ];
        return dead.includes(tamperedId);
      },
      { timeoutMs: 10_000, intervalMs: 250 },
    );
    await raw.close();
    await Promise.all([ria.close(), rik.close()]);
  });

  it('a send while the connection is down waits, goes out after the reconnect and is delivered once', async () => {
    const ria = await connect('ria-bot');
    const rik = await connect('rik-bot');
    const got: string[] = [];
    await rik.receive((message) => {
      got.push(message.id);
    });
    const states: ClientState[] = [];
    let unconfirmedOffline = -1;
    // Sent from the 'reconnecting' event itself: certainly while there is no connection.
    const sending = new Promise<string>((resolve, reject) => {
      ria.on('state', (state) => {
        states.push(state);
        if (state !== 'reconnecting') return;
        ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'sent while offline' }).then(resolve, reject);
        unconfirmedOffline = ria.unconfirmed;
      });
    });
    // An operator (or a denylist apply) closing the connection: ria-bot's user keeps existing, so it comes back.
    await node.management.request('DELETE', `/connections/username/${encodeURIComponent(clientUser('ria-bot'))}`);
    const id = await sending;
    assert.equal(unconfirmedOffline, 1);
    assert.equal(ria.state, 'open');
    await waitFor('the message', () => got.includes(id));
    assert.deepEqual(states, ['reconnecting', 'open']);
    assert.equal(ria.stats.reconnects, 1);
    await Promise.all([ria.close(), rik.close()]);
  });

  it('re-sends a message whose confirm was lost with the same id; the node drops the copy, the SDK hides its report', async () => {
    const relay = await startRelay(node.harness.node(0).amqpsPort);
    try {
      const ria = await connect('ria-bot', { url: `amqps://127.0.0.1:${relay.port}` });
      const rik = await connect('rik-bot');
      const reports: DeliveryReport[] = [];
      ria.on('report', (report) => reports.push(report));
      await ria.receive(() => undefined);
      const handled: string[] = [];
      await rik.receive((message) => {
        handled.push(message.id);
      });

      relay.holdDownstream = true;
      let resolved = false;
      const sending = ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'confirm lost' }).then((id) => {
        resolved = true;
        return id;
      });
      // The broker took it (the recipient has it) but ria-bot never heard the confirm.
      await waitFor('the delivery', () => handled.length === 1);
      assert.equal(resolved, false);
      assert.equal(ria.unconfirmed, 1);
      relay.holdDownstream = false;
      relay.cut();

      const id = await sending;
      assert.deepEqual(handled, [id]);
      assert.equal(ria.stats.resent, 1);
      // The router refused the second copy as MESSAGE_REPLAYED and reported it to ria-bot: recognised, not emitted.
      await waitFor('the replay report', () => ria.stats.replayReportsSuppressed === 1);
      assert.deepEqual(reports, []);
      // The router logs its decision after the audit record is confirmed, which may be after the report.
      await waitFor('the MESSAGE_REPLAYED decision', () =>
        node.decisions(id).some((line) => line.reason === 'MESSAGE_REPLAYED'),
      );
      // A flush barrier instead of a pause: a second copy would reach rik-bot's queue before a message sent now.
      const barrier = await ria.send({ to: 'rik-bot', type: 'ChatMessage', body: 'barrier' });
      await waitFor('the barrier message', () => handled.includes(barrier));
      assert.deepEqual(handled, [id, barrier], 'handled once');
      await Promise.all([ria.close(), rik.close()]);
    } finally {
      await relay.close();
    }
  });

  it('refuses to connect with a certificate of another id or kind, or as a client the node does not know', async () => {
    const ghost = await node.ca.issueWithKey({ kind: 'client', id: 'ghost-bot' });
    const base = {
      url: `amqps://127.0.0.1:${node.harness.node(0).amqpsPort}`,
      servername: 'localhost',
      node: node.nodeId,
      tls: { cert: ghost.chainPem, key: ghost.privateKeyPem, ca: node.harness.trustBundlePem },
    };
    await assert.rejects(DmrClient.connect({ ...base, id: 'ria-bot' }), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(DmrClient.connect({ ...base, id: 'ghost-bot' }), { code: 'NODE_UNREACHABLE' });
    await assert.rejects(DmrClient.connect({ ...base, id: 'ghost-bot', url: 'amqp://127.0.0.1:5672' }), {
      code: 'INVALID_ARGUMENT',
    });
    // CN ria-bot, but an operator's SPIFFE id: the broker would log it in as no client at all.
    const operator = await node.ca.issueWithKey({ kind: 'operator', id: 'ria-bot', role: 'admin' });
    await assert.rejects(
      DmrClient.connect({
        ...base,
        id: 'ria-bot',
        tls: { cert: operator.chainPem, key: operator.privateKeyPem, ca: node.harness.trustBundlePem },
      }),
      {
        code: 'INVALID_ARGUMENT',
        message: "the certificate's SPIFFE id is spiffe://dmr.test/operator/ria-bot, not that of client ria-bot",
      },
    );
  });

  it("pins the broker's SPIFFE id: another node's certificate where node-a's is expected is refused", async () => {
    const hosts = { dns: ['localhost'], ips: ['127.0.0.1'] };
    const expectMismatch = (presented: string, expected: string) => (error: unknown) => {
      assert.ok(isDmrError(error), String(error));
      assert.equal(error.code, 'SERVER_IDENTITY_MISMATCH', error.message);
      assert.deepEqual(error.details.presented, [presented]);
      assert.equal(error.details.expected, expected);
      assert.ok((error.hint ?? '').length > 0);
      return true;
    };
    // The broker presents node-a's certificate; a client that expects node-b (same vhost) refuses it.
    await assert.rejects(
      connect('ria-bot', { node: 'node-b', vhost: node.vhost }),
      expectMismatch('spiffe://dmr.test/node/node-a', 'spiffe://dmr.test/node/node-b'),
    );
    // node-b's key on this broker (same CA, same host names): a client of node-a refuses it.
    await node.harness.installServerCertificate(
      0,
      await node.ca.issueWithKey({ kind: 'node', id: 'node-b', ...hosts }),
    );
    try {
      await assert.rejects(
        connect('ria-bot'),
        expectMismatch('spiffe://dmr.test/node/node-b', 'spiffe://dmr.test/node/node-a'),
      );
    } finally {
      await node.harness.installServerCertificate(
        0,
        await node.ca.issueWithKey({ kind: 'node', id: node.nodeId, ...hosts }),
      );
    }
    const ria = await connect('ria-bot');
    assert.equal(ria.state, 'open');
    await ria.close();
  });

  it('drops what is not addressed to it: never the handler or a report event, dead-lettered as evidence', async () => {
    const rik = await connect('rik-bot');
    const handled: string[] = [];
    const reports: DeliveryReport[] = [];
    const errors: Error[] = [];
    rik.on('report', (report) => reports.push(report));
    rik.on('error', (error) => errors.push(error));
    await rik.receive((message) => {
      handled.push(message.id);
    });
    // A routing flaw upstream, played by the node's own identity: straight into rik-bot's queue.
    const connection = await node.connectAs(node.nodeId);
    const channel = await connection.createConfirmChannel();
    const forged = randomUUID();
    const forgedReport = randomUUID();
    const publish = (body: string, options: Record<string, unknown>): Promise<void> =>
      new Promise((resolve, reject) =>
        channel.publish('dmr.delivery', 'rik-bot', Buffer.from(body), { persistent: true, ...options }, (error) =>
          error ? reject(error as Error) : resolve(),
        ),
      );
    const headers = { 'dmr-sender': 'ria-bot', 'dmr-origin': node.nodeId, 'dmr-version': 1 };
    await publish('{"text":"for ppa-bot"}', {
      messageId: forged,
      type: 'ChatMessage',
      timestamp: Math.floor(Date.now() / 1000),
      headers: { ...headers, 'dmr-recipient': 'ppa-bot' },
    });
    await publish(
      JSON.stringify({
        messageId: randomUUID(),
        status: 'rejected',
        reason: 'POLICY_DENIED',
        detail: 'x',
        node: 'n',
        at: new Date().toISOString(),
      }),
      { messageId: forgedReport, type: 'dmr.DeliveryReport', headers: { 'dmr-origin': node.nodeId, 'dmr-version': 1 } },
    );
    await connection.close();
    // And a real message for rik-bot behind them.
    const ria = await connect('ria-bot');
    const real = await ria.send({ to: 'rik-bot', type: 'ChatMessage', body: { text: 'for rik-bot' } });
    await waitFor(
      'both dropped and the real one handled',
      () => rik.stats.misaddressed === 2 && handled.includes(real),
    );
    assert.deepEqual(handled, [real]);
    assert.deepEqual(reports, []);
    const dropped = errors.filter((error) => isDmrError(error) && error.code === 'MESSAGE_MISADDRESSED');
    assert.equal(dropped.length, 2);
    assert.match(dropped[0]?.message ?? '', /dmr-recipient ppa-bot, not rik-bot/);
    assert.match(dropped[1]?.message ?? '', /delivery report .* no dmr-recipient/);
    assert.ok(!dropped.some((error) => error.message.includes('for ppa-bot')));
    // Dead-lettered without requeue (no loop), and without a report to anyone: the DLQ holds them as evidence.
    const evidence: string[] = [];
    await waitFor('both in the DLQ', async () => {
      evidence.push(...(await node.take('dmr.client.rik-bot.dlq')).map((item) => item.properties.message_id ?? ''));
      return evidence.length >= 2;
    });
    assert.deepEqual(evidence.sort(), [forged, forgedReport].sort());
    await ria.close();
    await rik.close();
  });

  it('reconnects across a broker restart: every send that resolved is handled exactly once', async (t) => {
    const ria = await connect('ria-bot');
    const rik = await connect('rik-bot');
    const states: ClientState[] = [];
    ria.on('state', (state) => states.push(state));
    const reports: DeliveryReport[] = [];
    ria.on('report', (report) => reports.push(report));
    await ria.receive(() => undefined);
    const handled = new Map<string, number>();
    let duplicates = 0;
    rik.on('duplicate', () => (duplicates += 1));
    await rik.receive((message) => {
      handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
    });

    const confirmed: string[] = [];
    const failed: unknown[] = [];
    let sending = true;
    const sender = (async () => {
      let n = 0;
      while (sending) {
        // Not awaited one by one: some sends are in flight when the connection drops.
        const batch = Array.from({ length: 5 }, () =>
          ria.send({ to: 'rik-bot', type: 'ChatMessage', body: { n: n++ } }).then(
            (id) => confirmed.push(id),
            (error: unknown) => failed.push(error),
          ),
        );
        await Promise.all(batch);
        await sleep(20);
      }
    })();
    await waitFor('some traffic', () => confirmed.length >= 20);
    await node.harness.restartNode(0);
    await waitFor('the reconnect', () => states.includes('reconnecting') && ria.state === 'open', {
      timeoutMs: 60_000,
    });
    const afterRestart = confirmed.length;
    await waitFor('traffic after the restart', () => confirmed.length >= afterRestart + 20, { timeoutMs: 60_000 });
    sending = false;
    await sender;

    assert.deepEqual(failed, []);
    await waitFor('every confirmed message', () => confirmed.every((id) => handled.has(id)), {
      timeoutMs: 60_000,
    }).catch(() => undefined);
    const missing = confirmed.filter((id) => !handled.has(id));
    assert.deepEqual(missing, [], `${missing.length} of ${confirmed.length} confirmed messages never handled`);
    t.diagnostic(
      `confirmed ${confirmed.length} (${afterRestart} before the reconnect), handled ${handled.size}, wire duplicates acked without the handler ${duplicates}, states ${states.join(' → ')}, ria ${JSON.stringify(ria.stats)}, rik ${JSON.stringify(rik.stats)}`,
    );
    const twice = [...handled].filter(([, count]) => count > 1);
    assert.deepEqual(twice, [], 'a message reached the handler twice');
    assert.deepEqual(
      reports.map((report) => report.reason),
      [],
      'no refusals (resends the node had already taken are not reported)',
    );
    await Promise.all([ria.close(), rik.close()]);
  });
});
