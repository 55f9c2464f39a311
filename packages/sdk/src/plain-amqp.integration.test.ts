/**
 * docs/amqp-clients.md, executed: a plain amqplib client (no DMR code) with
 * a client certificate sends, receives and reads a delivery report through
 * a real DMR node. The code between the `doc:` markers is the code shown in
 * the document; keep them identical.
 */
import assert from 'node:assert/strict';
import { X509Certificate, randomUUID } from 'node:crypto';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { NodeFixture, waitFor } from '@dmr/testkit';
import amqp from 'amqplib';

describe('plain AMQP client (docs/amqp-clients.md)', () => {
  let node: NodeFixture;
  const pem = new Map<string, { cert: string; key: string }>();

  before(async () => {
    node = await NodeFixture.start({ label: 'sdk-plain' });
    for (const id of ['ria-bot', 'rik-bot']) {
      const issued = await node.ca.issueWithKey({ kind: 'client', id });
      pem.set(id, { cert: issued.chainPem, key: issued.privateKeyPem });
    }
  });

  after(async () => {
    await node.stop();
  });

  it('sends, receives and reads a report exactly as the document shows', async () => {
    const port = node.harness.node(0).amqpsPort;
    const ca = node.harness.trustBundlePem;

    // doc: connect
    // The broker must be node-a's: the chain (ca), the host name, and the node's SPIFFE id.
    function pinNodeA(host: string, peer: PeerCertificate): Error | undefined {
      const hostError = checkServerIdentity(host, peer);
      if (hostError !== undefined) return hostError;
      const uris = (new X509Certificate(peer.raw).subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:'));
      const pinned = uris.length === 1 && uris[0] === 'URI:spiffe://dmr.test/node/node-a';
      return pinned ? undefined : new Error(`the broker is not node-a: ${uris.join(', ')}`);
    }

    async function connectAs(id: string, cert: string, key: string): Promise<amqp.ChannelModel> {
      return amqp.connect(
        { protocol: 'amqps', hostname: '127.0.0.1', port, vhost: 'dmr-node-a', heartbeat: 30 },
        {
          cert,
          key,
          ca,
          servername: 'localhost',
          checkServerIdentity: pinNodeA,
          credentials: amqp.credentials.external(),
        },
      );
    }
    // doc: end

    const riaPem = pem.get('ria-bot') as { cert: string; key: string };
    const rikPem = pem.get('rik-bot') as { cert: string; key: string };
    const ria = await connectAs('ria-bot', riaPem.cert, riaPem.key);
    const rik = await connectAs('rik-bot', rikPem.cert, rikPem.key);
    try {
      // doc: send
      const channel = await ria.createConfirmChannel();
      const messageId = randomUUID();
      channel.publish(
        'dmr.ingress', // the only exchange a client may write to
        '', // routing key: unused (the exchange hashes message_id)
        Buffer.from(JSON.stringify({ text: 'tere' })),
        {
          messageId, // UUID, the idempotency key
          userId: 'spiffe://dmr.test/client/ria-bot', // your certificate's SPIFFE id (RabbitMQ checks it)
          type: 'ChatMessage',
          timestamp: Math.floor(Date.now() / 1000), // POSIX seconds
          expiration: '60000', // optional, ms, capped by the node
          persistent: true,
          contentType: 'application/json',
          headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1 },
        },
      );
      await channel.waitForConfirms(); // the node has the message once this resolves
      // doc: end

      const messages: amqp.ConsumeMessage[] = [];
      const reports: Array<Record<string, unknown>> = [];
      const handleMessage = (message: amqp.ConsumeMessage): void => void messages.push(message);
      const handleReport = (report: Record<string, unknown>): void => void reports.push(report);

      // doc: receive
      const inbox = await rik.createChannel();
      await inbox.prefetch(16);
      await inbox.consume('dmr.client.rik-bot', (message) => {
        if (message === null) return; // the broker cancelled the consumer: reconnect and consume again
        if (message.properties.headers?.['dmr-recipient'] !== 'rik-bot') {
          inbox.nack(message, false, false); // not for rik-bot: never process it; dead-lettered as evidence
          return;
        }
        if (message.properties.type === 'dmr.DeliveryReport') {
          // About a message rik-bot sent: correlation_id = its message id; JSON body.
          handleReport(JSON.parse(message.content.toString('utf8')) as Record<string, unknown>);
        } else {
          // headers['dmr-sender'] is the authenticated sender. Delivery is at least once:
          // skip a message id you have already processed (but still ack it).
          handleMessage(message);
        }
        inbox.ack(message); // only once the message is safely processed
      });
      // doc: end
      await waitFor('messages.length === 1', () => messages.length === 1);
      const message = messages[0] as amqp.ConsumeMessage;
      assert.equal(message.properties.messageId, messageId);
      assert.equal(message.properties.type, 'ChatMessage');
      assert.equal(message.properties.headers?.['dmr-sender'], 'ria-bot');
      assert.equal(message.properties.headers?.['dmr-origin'], 'node-a');
      assert.equal(message.properties.userId, undefined, 'the router removes user_id');
      assert.equal(message.properties.headers?.['dmr-recipient'], 'rik-bot');
      const hops = JSON.parse(String(message.properties.headers?.['dmr-hops'])) as Array<{ node: string; at: string }>;
      assert.deepEqual(
        hops.map((hop) => hop.node),
        ['node-a'],
      );
      assert.deepEqual(JSON.parse(message.content.toString('utf8')), { text: 'tere' });
      const expiration = Number(message.properties.expiration);
      assert.ok(expiration > 0 && expiration <= 60_000, String(message.properties.expiration));

      // A refused send: rik → ria has no grant, so rik-bot's own queue gets a report.
      const rikOut = await rik.createConfirmChannel();
      const deniedId = randomUUID();
      rikOut.publish('dmr.ingress', '', Buffer.from('{}'), {
        messageId: deniedId,
        userId: 'spiffe://dmr.test/client/rik-bot',
        type: 'ChatMessage',
        timestamp: Math.floor(Date.now() / 1000),
        persistent: true,
        headers: { 'dmr-recipient': 'ria-bot', 'dmr-version': 1 },
      });
      await rikOut.waitForConfirms();
      await waitFor('reports.length === 1', () => reports.length === 1);
      const body = reports[0] as Record<string, unknown>;
      assert.equal(body.messageId, deniedId);
      assert.equal(body.status, 'rejected');
      assert.equal(body.reason, 'POLICY_DENIED');
      assert.equal(body.node, 'node-a');
      assert.ok(Array.isArray((body.policy as { reasons?: unknown }).reasons));

      // A client cannot read another client's queue: the channel is closed with 403.
      const nosy = await ria.createChannel();
      nosy.on('error', () => undefined);
      await assert.rejects(
        nosy.consume('dmr.client.rik-bot', () => undefined),
        /403|ACCESS_REFUSED/,
      );
    } finally {
      await Promise.all([ria.close().catch(() => undefined), rik.close().catch(() => undefined)]);
    }
  });
});
