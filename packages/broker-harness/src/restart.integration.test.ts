/**
 * restartNode(): a real stop of the node's server process and a new one on
 * the same data directory and ports. Confirmed messages in a durable quorum
 * queue survive; clients lose their connections and reconnect.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CertificateAuthority } from '@dmr/pki';
import type { ConsumeMessage } from 'amqplib';
import { brokerStatus } from './control.js';
import { type BrokerHarness, type NodeExitEvent } from './harness.js';
import { DEAD_LETTER_RESEND_MS } from './node-config.js';
import { startBrokers } from './start-brokers.js';
import { readState } from './state.js';
import {
  issueClient,
  leftoverProcesses,
  makeTempDir,
  makeTestCa,
  reportBoot,
  reportStop,
  type ClientMaterial,
} from './testing.js';
import { waitFor } from '@dmr/core/testing';

const QUEUE = 'orders-quorum';
const COUNT = 200;

describe('restartNode keeps the data', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: CertificateAuthority;
  let harness: BrokerHarness;
  let alice: ClientMaterial;
  const exits: NodeExitEvent[] = [];

  before(async () => {
    temp = await makeTempDir('restart');
    ca = await makeTestCa(`${temp.path}/pki`);
    harness = await startBrokers({
      dir: `${temp.path}/brokers`,
      ca,
      namePrefix: 'rst',
      onNodeExit: (event) => exits.push(event),
    });
    reportBoot('restart', harness);
    alice = await issueClient(ca, 'alice-bot');
    await harness.management().createCertificateUser(alice.user);
    await harness.management().setPermissions('/', alice.user, { configure: '.*', write: '.*', read: '.*' });
  });

  after(async () => {
    if (harness) reportStop('restart', (await harness.stop()).ms);
    await temp?.remove();
  });

  it(`loses none of ${COUNT} confirmed persistent messages in a quorum queue across a restart`, async () => {
    const before = harness.node();
    const publisher = await harness.connect(alice);
    let closedWith: unknown;
    let closed = false;
    publisher.on('error', () => undefined);
    publisher.on('close', (error: unknown) => {
      closedWith = error;
      closed = true;
    });
    const channel = await publisher.createConfirmChannel();
    channel.on('error', () => undefined);
    await channel.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    for (let i = 0; i < COUNT; i++) {
      channel.sendToQueue(QUEUE, Buffer.from(`order ${i}`), { persistent: true, messageId: `order-${i}` });
    }
    await channel.waitForConfirms();

    const report = await harness.restartNode(0);
    process.stdout.write(
      `# broker-timing restart down_ms=${report.downMs} boot_ms=${report.bootMs} graceful=${report.graceful}\n`,
    );
    assert.equal(report.graceful, true);

    // Every client connection dropped (RabbitMQ closes them on shutdown: 320 CONNECTION_FORCED).
    await waitFor('the publisher connection to close', () => closed, { timeoutMs: 5000 });
    process.stdout.write(`# publisher connection closed with: ${String(closedWith)}\n`);

    // Same ports and TLS files, new processes, recorded for stop/status/watchdog.
    const after = harness.node();
    assert.equal(after.amqpsPort, before.amqpsPort);
    assert.deepEqual(after.ports, before.ports);
    assert.deepEqual(after.tls, before.tls);
    assert.notEqual(after.pid, before.pid);
    const onDisk = await readState(harness.dir);
    assert.equal(onDisk.nodes[0]?.beam?.pid, after.pid);
    assert.equal(onDisk.status, 'running');
    const status = await brokerStatus(harness.dir);
    assert.equal(status.nodes[0]?.running, true);
    assert.equal(status.nodes[0]?.listening, true);
    assert.equal(status.watchdogRunning, true);
    // The old server process's exit was announced as expected.
    assert.ok(exits.length >= 1);
    assert.ok(exits.every((event) => event.expected));

    // Users and permissions survived too: the same certificate gets in and finds every message.
    const consumer = await harness.connect(alice);
    try {
      const readChannel = await consumer.createChannel();
      await readChannel.prefetch(50);
      const seen = new Set<string>();
      let all: () => void = () => undefined;
      const done = new Promise<void>((resolve) => {
        all = resolve;
      });
      await readChannel.consume(QUEUE, (message: ConsumeMessage | null) => {
        if (!message) return;
        seen.add(String(message.properties.messageId));
        readChannel.ack(message);
        if (seen.size === COUNT) all();
      });
      const timeout = setTimeout(all, 20_000);
      await done;
      clearTimeout(timeout);
      assert.equal(seen.size, COUNT, `only ${seen.size} of ${COUNT} messages came back`);
      for (let i = 0; i < COUNT; i++) assert.ok(seen.has(`order-${i}`), `order-${i} was lost`);
    } finally {
      await consumer.close();
    }
  });

  it('re-sends a dead letter its full target refused after DEAD_LETTER_RESEND_MS, not 3.10’s 180 s', async () => {
    // DMR's parking queues (decision 0039) in miniature: a source whose messages expire into a full target,
    // at-least-once. RabbitMQ ignores an advanced.config key it does not know, so only this shows the setting acts.
    const connection = await harness.connect(alice);
    try {
      const channel = await connection.createConfirmChannel();
      const target = 'dlx-resend-target';
      const source = 'dlx-resend-source';
      await channel.assertQueue(target, {
        durable: true,
        arguments: { 'x-queue-type': 'quorum', 'x-max-length': 1, 'x-overflow': 'reject-publish' },
      });
      await channel.assertQueue(source, {
        durable: true,
        arguments: {
          'x-queue-type': 'quorum',
          'x-message-ttl': 200,
          'x-overflow': 'reject-publish',
          'x-dead-letter-exchange': '',
          'x-dead-letter-routing-key': target,
          'x-dead-letter-strategy': 'at-least-once',
        },
      });
      // A quorum queue refuses only once it is over its bound (one message of slack, docs/mesh-links.md trap 4).
      for (const id of ['filler-1', 'filler-2'])
        channel.sendToQueue(target, Buffer.from(id), { persistent: true, messageId: id });
      channel.sendToQueue(source, Buffer.from('parked'), { persistent: true, messageId: 'parked' });
      await channel.waitForConfirms();
      // The copy expired and was refused by the full target: it waits in the source's dead-letter worker.
      await waitFor('the dead letter refused by the full target', async () => {
        const [from, to] = await Promise.all([channel.checkQueue(source), channel.checkQueue(target)]);
        return from.messageCount === 0 && to.messageCount === 2;
      });
      const freedAt = Date.now();
      for (const id of ['filler-1', 'filler-2']) {
        const filler = await channel.get(target, { noAck: true });
        assert.ok(filler !== false && filler.properties.messageId === id, `${id} first`);
      }
      const arrived = await waitFor(
        'the refused dead letter re-sent into the freed target',
        async () => {
          const got = await channel.get(target, { noAck: true });
          return got === false ? false : got;
        },
        { timeoutMs: DEAD_LETTER_RESEND_MS + 60_000 },
      );
      assert.equal(arrived.properties.messageId, 'parked');
      process.stdout.write(`# broker-timing dead-letter re-send after the target freed: ${Date.now() - freedAt} ms\n`);
      await channel.deleteQueue(source);
      await channel.deleteQueue(target);
    } finally {
      await connection.close();
    }
  });

  it('stops cleanly after a restart: nothing of the node is left running', async () => {
    const report = await harness.stop();
    assert.ok(report.nodes.every((node) => node.graceful));
    assert.deepEqual(leftoverProcesses(harness.dir), []);
  });
});
