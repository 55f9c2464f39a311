/**
 * The consistent-hash exchange (rabbitmq_consistent_hash_exchange, enabled on
 * harness nodes) hashing on the message_id property, as DMR uses it to spread
 * one stream over several queues while keeping one message id on one queue.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConfirmChannel, ChannelModel, Message } from 'amqplib';
import { type BrokerHarness } from './harness.js';
import { startBrokers } from './start-brokers.js';
import { issueClient, makeTempDir, makeTestCa, reportBoot, reportStop } from './testing.js';

const EXCHANGE = 'by-message-id';
const QUEUES = ['shard-a', 'shard-b'] as const;

describe('x-consistent-hash exchange on message_id', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let harness: BrokerHarness;
  let connection: ChannelModel;
  let channel: ConfirmChannel;

  before(async () => {
    temp = await makeTempDir('chash');
    const ca = await makeTestCa(`${temp.path}/pki`);
    harness = await startBrokers({ dir: `${temp.path}/brokers`, ca, namePrefix: 'chash' });
    reportBoot('consistent-hash', harness);
    const alice = await issueClient(ca, 'alice-bot');
    await harness.management().createCertificateUser(alice.user);
    await harness.management().setPermissions('/', alice.user, { configure: '.*', write: '.*', read: '.*' });
    connection = await harness.connect(alice);
    channel = await connection.createConfirmChannel();
    await channel.assertExchange(EXCHANGE, 'x-consistent-hash', {
      durable: false,
      arguments: { 'hash-property': 'message_id' },
    });
    for (const queue of QUEUES) {
      await channel.assertQueue(queue, { durable: false });
      // The routing key of a binding is its weight (number of points on the hash ring).
      await channel.bindQueue(queue, EXCHANGE, '1');
    }
  });

  after(async () => {
    await connection?.close().catch(() => undefined);
    if (harness) reportStop('consistent-hash', (await harness.stop()).ms);
    await temp?.remove();
  });

  async function drain(queue: string): Promise<Message[]> {
    const messages: Message[] = [];
    for (;;) {
      const message = await channel.get(queue, { noAck: true });
      if (!message) return messages;
      messages.push(message);
    }
  }

  /** Which queue each message id landed in. */
  async function placement(): Promise<Map<string, string>> {
    const where = new Map<string, string>();
    for (const queue of QUEUES) {
      for (const message of await drain(queue)) {
        const id = message.properties.messageId as string | undefined;
        where.set(id ?? `(none #${where.size})`, queue);
      }
    }
    return where;
  }

  it('spreads distinct message ids over both queues and always puts one id in the same queue', async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `2f1d7c1e-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const publishAll = async (): Promise<void> => {
      // A routing key that differs per message shows it plays no part: only message_id is hashed.
      ids.forEach((id, i) => channel.publish(EXCHANGE, `rk-${i % 7}`, Buffer.from(id), { messageId: id }));
      await channel.waitForConfirms();
    };
    await publishAll();
    const first = await placement();
    assert.equal(first.size, 100);
    const counts = QUEUES.map((queue) => [...first.values()].filter((where) => where === queue).length);
    process.stdout.write(`# consistent hash: ${QUEUES.map((q, i) => `${q}=${counts[i]}`).join(' ')}\n`);
    for (const count of counts) assert.ok(count > 0, `a queue got nothing: ${counts.join('/')}`);

    await publishAll();
    const second = await placement();
    assert.deepEqual(second, first);
  });

  it('routes every message WITHOUT a message_id to one and the same queue (it hashes the absent value)', async () => {
    const returned: Message[] = [];
    const onReturn = (message: Message): void => {
      returned.push(message);
    };
    channel.on('return', onReturn);
    try {
      for (let i = 0; i < 20; i++) {
        channel.publish(EXCHANGE, `rk-${i}`, Buffer.from(`no id ${i}`), { mandatory: true });
      }
      await channel.waitForConfirms();
      const landed = await placement();
      const queues = new Set(landed.values());
      process.stdout.write(
        `# no message_id: ${landed.size} routed (${[...queues].join(', ') || 'nowhere'}), ${returned.length} returned\n`,
      );
      // Not dropped and not returned (even with mandatory): the exchange hashes the missing property like a
      // value of its own, so all id-less messages pile onto a single queue. DMR must refuse them before this exchange.
      assert.equal(returned.length, 0);
      assert.equal(landed.size, 20);
      assert.equal(queues.size, 1);
    } finally {
      channel.off('return', onReturn);
    }
  });
});
