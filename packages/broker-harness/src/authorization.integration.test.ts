/**
 * What an authenticated client may do on a harness node, with the broker
 * layout DMR uses: clients write only to the ingress exchange, read only
 * their own queue, configure nothing, and cannot claim another identity in
 * `user_id`, which must be the SPIFFE id the client logged in as.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { type BrokerHarness } from './harness.js';
import { startBrokers } from './start-brokers.js';
import { issueClient, makeTempDir, makeTestCa, reportBoot, reportStop, type ClientMaterial } from './testing.js';
import { channelCloseOf, waitFor } from '@dmr/core/testing';

const INGRESS = 'ingress';
const CLIENTS = ['alpha-bot', 'beta-bot'] as const;

function publishConfirmed(
  channel: ConfirmChannel,
  exchange: string,
  key: string,
  body: string,
  userId?: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.publish(
      exchange,
      key,
      Buffer.from(body),
      { persistent: true, ...(userId ? { userId } : {}) },
      (error: unknown) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve()),
    );
  });
}

describe('authorization of authenticated clients on a harness node', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let harness: BrokerHarness;
  const material = new Map<string, ClientMaterial>();
  const connections: ChannelModel[] = [];

  async function connectAs(id: string): Promise<ChannelModel> {
    const client = material.get(id);
    assert.ok(client, id);
    const connection = await harness.connect(client);
    connection.on('error', () => undefined);
    connections.push(connection);
    return connection;
  }

  async function confirmChannel(id: string): Promise<ConfirmChannel> {
    const channel = await (await connectAs(id)).createConfirmChannel();
    channel.on('error', () => undefined);
    return channel;
  }

  async function plainChannel(id: string): Promise<Channel> {
    const channel = await (await connectAs(id)).createChannel();
    channel.on('error', () => undefined);
    return channel;
  }

  before(async () => {
    temp = await makeTempDir('authz-test');
    const ca = await makeTestCa(`${temp.path}/pki`);
    harness = await startBrokers({ dir: `${temp.path}/brokers`, ca, namePrefix: 'authz' });
    reportBoot('authz', harness);
    const management = harness.management();
    await management.declareExchange('/', INGRESS, 'direct');
    await management.declareExchange('/', 'mesh-ingress', 'direct');
    for (const id of CLIENTS) {
      const client = await issueClient(ca, id);
      material.set(id, client);
      await management.createCertificateUser(client.user);
      await management.declareQueue('/', id);
      await management.bindQueue('/', INGRESS, id, id);
      await management.setPermissions('/', client.user, {
        configure: '^$',
        write: `^${INGRESS}$`,
        read: `^${id}$`,
      });
    }
  });

  after(async () => {
    await Promise.allSettled(connections.map((connection) => connection.close()));
    if (harness) reportStop('authz', (await harness.stop()).ms);
    await temp?.remove();
  });

  function userOf(id: string): string {
    const client = material.get(id);
    assert.ok(client, id);
    return client.user;
  }

  it('delivers what a client publishes to ingress, with its own user_id, into the addressee’s queue', async () => {
    const alpha = await confirmChannel('alpha-bot');
    await publishConfirmed(alpha, INGRESS, 'beta-bot', 'hello beta', userOf('alpha-bot'));

    const beta = await plainChannel('beta-bot');
    const received: ConsumeMessage[] = [];
    await beta.consume('beta-bot', (message) => {
      if (message) {
        received.push(message);
        beta.ack(message);
      }
    });
    await waitFor('a message in beta-bot', () => received.length > 0, { timeoutMs: 5000 });
    assert.equal(received[0]?.content.toString(), 'hello beta');
    assert.equal(received[0]?.properties.userId, 'spiffe://dmr.test/client/alpha-bot');
  });

  it('closes the channel (406 PRECONDITION_FAILED) when user_id is another client’s SPIFFE id', async () => {
    const alpha = await confirmChannel('alpha-bot');
    const close = await channelCloseOf(alpha, () =>
      publishConfirmed(alpha, INGRESS, 'beta-bot', 'forged', userOf('beta-bot')),
    );
    assert.equal(close.code, 406, close.message);
    assert.match(close.message, /PRECONDITION_FAILED/);
  });

  it('closes the channel (406) when user_id is the plain id (the contract before SPIFFE logins)', async () => {
    const alpha = await confirmChannel('alpha-bot');
    const close = await channelCloseOf(alpha, () =>
      publishConfirmed(alpha, INGRESS, 'beta-bot', 'old style', 'alpha-bot'),
    );
    assert.equal(close.code, 406, close.message);
    assert.match(close.message, /user_id property set to 'alpha-bot' but authenticated user was/);
  });

  it('refuses publishing to an exchange the permissions do not allow (403)', async () => {
    for (const exchange of ['mesh-ingress', 'amq.topic', '']) {
      const alpha = await confirmChannel('alpha-bot');
      const close = await channelCloseOf(alpha, () => publishConfirmed(alpha, exchange, 'beta-bot', 'sneaky'));
      assert.equal(close.code, 403, `${exchange || '(default exchange)'}: ${close.message}`);
      assert.match(close.message, /ACCESS_REFUSED/);
    }
  });

  it('refuses consuming from another client’s queue (403)', async () => {
    const alpha = await plainChannel('alpha-bot');
    const close = await channelCloseOf(alpha, () => alpha.consume('beta-bot', () => undefined));
    assert.equal(close.code, 403, close.message);
    assert.match(close.message, /ACCESS_REFUSED/);
  });

  it('refuses basic.get from another client’s queue (403)', async () => {
    const alpha = await plainChannel('alpha-bot');
    const close = await channelCloseOf(alpha, () => alpha.get('beta-bot'));
    assert.equal(close.code, 403, close.message);
  });

  it('refuses declaring queues or exchanges (configure permission is empty)', async () => {
    const alpha = await plainChannel('alpha-bot');
    const queue = await channelCloseOf(alpha, () => alpha.assertQueue('alpha-bot-private', { durable: true }));
    assert.equal(queue.code, 403, queue.message);
    const other = await plainChannel('alpha-bot');
    const exchange = await channelCloseOf(other, () => other.assertExchange('alpha-exchange', 'fanout'));
    assert.equal(exchange.code, 403, exchange.message);
  });

  it('lets a client consume its own queue', async () => {
    const alpha = await plainChannel('alpha-bot');
    const { consumerTag } = await alpha.consume('alpha-bot', () => undefined);
    assert.ok(consumerTag.length > 0);
  });
});
