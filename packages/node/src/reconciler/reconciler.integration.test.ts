/**
 * The reconciler against a real TLS-only harness broker (one per file):
 * layout created with the right arguments, idempotence, least privilege as
 * clients with certificates see it, removal, denylisting a live connection,
 * reject-publish back-pressure, user limits as a client meets them, and the
 * move from users named by CN to users named by SPIFFE id.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ManagementClient } from '@dmr/broker';
import { startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import { isDmrError } from '@dmr/core';
import { CertificateAuthority } from '@dmr/pki';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { reconcile } from './apply.js';
import { denyClient, sampleConfig } from './test-support.js';
import { desiredLayout } from './layout.js';
import { CLIENT_USER_TAG, ROUTER_USER_TAG, vhostName } from '@dmr/contract';
import { channelCloseOf, waitFor } from '@dmr/core/testing';

const VHOST = vhostName('node-a');
const TD = 'dmr.test';
const user = (id: string): string => `spiffe://${TD}/${id.startsWith('node-') ? 'node' : 'client'}/${id}`;

interface Material {
  certificatePem: string;
  privateKeyPem: string;
}

function publishConfirmed(channel: ConfirmChannel, exchange: string, key: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.publish(exchange, key, Buffer.from(body), { persistent: true }, (error: unknown) =>
      error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(),
    );
  });
}

async function queueInfo(management: ManagementClient, name: string): Promise<Record<string, unknown> | undefined> {
  try {
    return (await management.request('GET', `/queues/${encodeURIComponent(VHOST)}/${encodeURIComponent(name)}`)) as
      Record<string, unknown> | undefined;
  } catch (error) {
    // Only "no such queue" means gone; a 401 or an unreachable API must fail the test.
    if (isDmrError(error) && error.details.status === 404) return undefined;
    throw error;
  }
}

describe('reconciler on a harness broker', () => {
  let dir: string;
  let harness: BrokerHarness | undefined;
  let management: ManagementClient;
  const material = new Map<string, Material>();
  const connections: ChannelModel[] = [];

  async function connectAs(id: string): Promise<ChannelModel> {
    const client = material.get(id);
    assert.ok(client, id);
    assert.ok(harness);
    const connection = await harness.connect({ ...client, vhost: VHOST });
    connection.on('error', () => undefined);
    connections.push(connection);
    return connection;
  }

  async function channelOf(id: string, confirm: true): Promise<ConfirmChannel>;
  async function channelOf(id: string, confirm?: false): Promise<Channel>;
  async function channelOf(id: string, confirm = false): Promise<Channel> {
    const connection = await connectAs(id);
    const channel = confirm ? await connection.createConfirmChannel() : await connection.createChannel();
    channel.on('error', () => undefined);
    return channel;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-reconciler-test-'));
    const ca = await CertificateAuthority.init(join(dir, 'pki'), { trustDomain: 'dmr.test' });
    harness = await startBrokers({ dir: join(dir, 'brokers'), ca, namePrefix: 'reconciler' });
    management = harness.management();
    for (const id of ['alpha-bot', 'beta-bot', 'gamma-bot', 'delta-bot']) {
      const issued = await ca.issueWithKey({ kind: 'client', id });
      material.set(id, { certificatePem: issued.chainPem, privateKeyPem: issued.privateKeyPem });
    }
    const router = await ca.issueWithKey({ kind: 'node', id: 'node-a' });
    material.set('node-a', { certificatePem: router.chainPem, privateKeyPem: router.privateKeyPem });
    const peer = await ca.issueWithKey({ kind: 'node', id: 'node-b' });
    material.set('node-b', { certificatePem: peer.chainPem, privateKeyPem: peer.privateKeyPem });
  });

  after(async () => {
    await Promise.allSettled(connections.map((connection) => connection.close()));
    await harness?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('creates the layout for two clients with the configured arguments', async () => {
    const result = await reconcile(management, desiredLayout(sampleConfig(['alpha-bot', 'beta-bot'])));
    assert.equal(result.conflicts.length, 0);
    assert.ok(result.changes.length > 0);
    const alpha = await queueInfo(management, 'dmr.client.alpha-bot');
    assert.equal(alpha?.type, 'quorum');
    assert.equal(alpha?.durable, true);
    assert.deepEqual(alpha?.arguments, {
      'x-queue-type': 'quorum',
      'x-message-ttl': 86_400_000,
      'x-delivery-limit': 5,
      'x-max-length': 10_000,
      'x-overflow': 'reject-publish',
      'x-dead-letter-exchange': 'dmr.dead-letter',
      'x-dead-letter-routing-key': 'alpha-bot',
      'x-dead-letter-strategy': 'at-least-once',
    });
    const ingress = (await management.request('GET', `/exchanges/${VHOST}/dmr.ingress`)) as Record<string, unknown>;
    assert.equal(ingress.type, 'x-consistent-hash');
    assert.deepEqual(ingress.arguments, { 'hash-property': 'message_id' });
    assert.equal((await queueInfo(management, 'dmr.audit'))?.type, 'stream');
    assert.ok(await queueInfo(management, 'dmr.client.beta-bot.dlq'));
    assert.ok(await queueInfo(management, 'dmr.rejected'));
    const users = (await management.request('GET', '/users')) as Array<{ name: string; tags: unknown }>;
    const alphaUser = users.find((entry) => entry.name === user('alpha-bot'));
    assert.deepEqual(alphaUser?.tags, [CLIENT_USER_TAG]);
    const permissions = await management.request(
      'GET',
      `/permissions/${VHOST}/${encodeURIComponent(user('alpha-bot'))}`,
    );
    assert.deepEqual(
      { ...(permissions as Record<string, unknown>), user: undefined, vhost: undefined },
      {
        user: undefined,
        vhost: undefined,
        configure: '',
        write: '^dmr\\.ingress$',
        read: '^dmr\\.client\\.alpha\\-bot$',
      },
    );
    const limits = await management.listUserLimits();
    assert.deepEqual(limits.get(user('alpha-bot')), { 'max-connections': 10, 'max-channels': 100 });
    assert.equal(limits.get(user('node-a')), undefined, 'the router user has no limits');
  });

  it('plans nothing on a second apply', async () => {
    const result = await reconcile(management, desiredLayout(sampleConfig(['alpha-bot', 'beta-bot'])));
    assert.deepEqual(result.changes, []);
    assert.deepEqual(result.conflicts, []);
    assert.ok(result.unchanged > 10);
  });

  it('lets a client publish only to dmr.ingress', async () => {
    const alpha = await channelOf('alpha-bot', true);
    await publishConfirmed(alpha, 'dmr.ingress', 'beta-bot', 'hello');
    await waitFor(
      "(await queueInfo(management, 'dmr.ingress.0'))?.messages === 1",
      async () => (await queueInfo(management, 'dmr.ingress.0'))?.messages === 1,
      { timeoutMs: 10_000 },
    );
    for (const exchange of ['dmr.delivery', 'dmr.mesh-ingress', '']) {
      const channel = await channelOf('alpha-bot', true);
      const { code } = await channelCloseOf(channel, () => publishConfirmed(channel, exchange, 'beta-bot', 'sneaky'));
      assert.equal(code, 403, exchange || '(default exchange)');
    }
  });

  it('lets a client consume only its own queue', async () => {
    const own = await channelOf('alpha-bot');
    assert.ok((await own.consume('dmr.client.alpha-bot', () => undefined)).consumerTag);
    for (const queue of ['dmr.client.beta-bot', 'dmr.ingress.0', 'dmr.client.alpha-bot.dlq']) {
      const channel = await channelOf('alpha-bot');
      assert.equal((await channelCloseOf(channel, () => channel.consume(queue, () => undefined))).code, 403, queue);
    }
  });

  it('only the router writes dmr.audit: a client and a peer link are refused; the router may read it back', async () => {
    const link = { peer: 'node-b', amqpsEndpoint: 'amqps://127.0.0.1:5672', cost: 1, peerCertificates: [] };
    await reconcile(management, desiredLayout(sampleConfig(['alpha-bot', 'beta-bot'], { links: [link] })));
    const router = await channelOf('node-a', true);
    await publishConfirmed(router, '', 'dmr.audit', '{"v":2}');
    for (const id of ['alpha-bot', 'node-b']) {
      // One connection per identity, closed after: client users have a connection limit the next tests need.
      const connection = await connectAs(id);
      for (const exchange of ['', 'amq.direct']) {
        const channel = await connection.createConfirmChannel();
        channel.on('error', () => undefined);
        const { code } = await channelCloseOf(channel, () =>
          publishConfirmed(channel, exchange, 'dmr.audit', 'forged'),
        );
        assert.equal(code, 403, `${id} via ${exchange || '(default exchange)'}`);
      }
      await connection.close();
    }
    // What the stream holds: the router's one record, nothing forged (read as the router, as `dmr audit export` does).
    const reader = await channelOf('node-a');
    await reader.prefetch(10);
    const bodies: string[] = [];
    await reader.consume('dmr.audit', (message) => message && bodies.push(message.content.toString()), {
      arguments: { 'x-stream-offset': 'first' },
    });
    await waitFor('the router record read back', () => bodies.length >= 1, { timeoutMs: 10_000 });
    assert.deepEqual(bodies, ['{"v":2}']);
    await reconcile(management, desiredLayout(sampleConfig(['alpha-bot', 'beta-bot'])));
  });

  it('removes the queues and user of a client no longer configured', async () => {
    const result = await reconcile(management, desiredLayout(sampleConfig(['alpha-bot'])));
    const summary = result.changes.map((change) => `${change.action} ${change.kind} ${change.name}`);
    assert.ok(summary.includes(`delete user ${user('beta-bot')}`), summary.join('; '));
    assert.equal(await queueInfo(management, 'dmr.client.beta-bot'), undefined);
    assert.equal(await queueInfo(management, 'dmr.client.beta-bot.dlq'), undefined);
    assert.ok(!(await management.listUsers()).includes(user('beta-bot')));
    assert.deepEqual((await reconcile(management, desiredLayout(sampleConfig(['alpha-bot'])))).changes, []);
  });

  it('closes a denylisted client’s live connection and refuses its reconnect in the same apply', async () => {
    const connection = await connectAs('alpha-bot');
    const closed = new Promise<void>((resolve) => connection.once('close', () => resolve()));
    const started = Date.now();
    const result = await reconcile(
      management,
      desiredLayout(sampleConfig(['alpha-bot'], { denylist: [denyClient('alpha-bot')] })),
    );
    assert.deepEqual(
      result.changes.map((change) => `${change.action} ${change.kind} ${change.name}`),
      [`delete user ${user('alpha-bot')}`],
    );
    await closed;
    assert.ok(Date.now() - started < 1000, `closed after ${Date.now() - started} ms`);
    await assert.rejects(connectAs('alpha-bot'), /403|ACCESS.REFUSED/);
    // Its queue is kept while it is configured: nothing queued for it is lost.
    assert.ok(await queueInfo(management, 'dmr.client.alpha-bot'));
  });

  it('nacks a publisher once a client queue is full (reject-publish), and reports changed limits as conflicts', async () => {
    const limits = { ...sampleConfig([]).limits, queueMaxLength: 2 };
    const config = sampleConfig(['alpha-bot', 'gamma-bot'], { denylist: [denyClient('alpha-bot')], limits });
    const result = await reconcile(management, desiredLayout(config));
    // Existing queues keep their old arguments and are reported, not re-created.
    const conflicted = result.conflicts.map((conflict) => conflict.name).sort();
    assert.deepEqual(conflicted, [
      'dmr.client.alpha-bot',
      'dmr.client.alpha-bot.dlq',
      'dmr.dead-letter-reports',
      'dmr.ingress.0',
      'dmr.mesh-ingress.0',
      'dmr.parking.0',
      'dmr.rejected',
    ]);
    assert.equal((await queueInfo(management, 'dmr.client.gamma-bot'))?.arguments !== undefined, true);
    // The router (node certificate) delivers through dmr.delivery.
    const router = await channelOf('node-a', true);
    const outcomes: boolean[] = [];
    for (let i = 0; i < 10; i += 1) {
      outcomes.push(
        await publishConfirmed(router, 'dmr.delivery', 'gamma-bot', `message ${i}`).then(
          () => true,
          () => false,
        ),
      );
    }
    // A quorum queue checks the limit before each enqueue, so it may overshoot by one (measured: 3 of max 2).
    assert.deepEqual(outcomes.slice(0, 2), [true, true]);
    assert.deepEqual(outcomes.slice(3), [false, false, false, false, false, false, false]);
    const length = async (): Promise<unknown> => (await queueInfo(management, 'dmr.client.gamma-bot'))?.messages;
    await waitFor("typeof (await length()) === 'number'", async () => typeof (await length()) === 'number', {
      timeoutMs: 10_000,
    });
    const messages = await length();
    assert.ok(typeof messages === 'number' && messages <= 3, `queue holds ${String(messages)}`);
  });

  it('shards ingress by message id; a message without one still reaches a shard', async () => {
    const result = await reconcile(management, desiredLayout(sampleConfig(['gamma-bot']), { routerShards: 2 }));
    assert.ok(!result.conflicts.some((conflict) => conflict.name.startsWith('dmr.ingress')), JSON.stringify(result));
    await management.request('DELETE', `/queues/${VHOST}/dmr.ingress.0/contents`);
    const gamma = await channelOf('gamma-bot', true);
    const publish = (options: { messageId?: string }): Promise<void> =>
      new Promise((resolve, reject) =>
        gamma.publish('dmr.ingress', '', Buffer.from('x'), options, (error: unknown) =>
          error ? reject(new Error(String(error))) : resolve(),
        ),
      );
    for (let i = 0; i < 40; i += 1) await publish({ messageId: randomUUID() });
    for (let i = 0; i < 3; i += 1) await publish({});
    const depth = async (queue: string): Promise<number> => {
      const messages = (await queueInfo(management, queue))?.messages;
      return typeof messages === 'number' ? messages : 0;
    };
    await waitFor(
      'the 43 messages in the two shards',
      async () => (await depth('dmr.ingress.0')) + (await depth('dmr.ingress.1')) === 43,
      { timeoutMs: 10_000 },
    );
    assert.ok((await depth('dmr.ingress.0')) > 0 && (await depth('dmr.ingress.1')) > 0, 'both shards get work');
    // The router reads its inputs and nothing else.
    for (const queue of ['dmr.ingress.0', 'dmr.ingress.1', 'dmr.dead-letter-reports']) {
      const channel = await channelOf('node-a');
      assert.ok((await channel.consume(queue, () => undefined)).consumerTag, queue);
      await channel.close();
    }
    const channel = await channelOf('node-a');
    assert.equal(
      (await channelCloseOf(channel, () => channel.consume('dmr.client.gamma-bot.dlq', () => undefined))).code,
      403,
    );
  });

  it('sets user limits: the (N+1)th connection is refused and the (N+1)th channel closes its connection (530)', async () => {
    const config = sampleConfig(['gamma-bot', 'delta-bot'], {
      limits: { ...sampleConfig([]).limits, maxConnectionsPerUser: 2, maxChannelsPerUser: 3 },
    });
    const first = await reconcile(management, desiredLayout(config, { routerShards: 2 }));
    const limitChanges = first.changes
      .filter((change) => change.kind === 'user-limit')
      .map((change) => `${change.action} ${change.name} ${'limit' in change ? change.limit : ''}`);
    assert.deepEqual(limitChanges, [
      `create ${user('delta-bot')} max-connections`,
      `create ${user('delta-bot')} max-channels`,
      `update ${user('gamma-bot')} max-connections`,
      `update ${user('gamma-bot')} max-channels`,
    ]);
    assert.deepEqual((await reconcile(management, desiredLayout(config, { routerShards: 2 }))).changes, []);
    assert.deepEqual((await management.listUserLimits()).get(user('delta-bot')), {
      'max-connections': 2,
      'max-channels': 3,
    });

    // delta-bot never connected before: nothing of an earlier test counts against it.
    const one = await connectAs('delta-bot');
    const two = await connectAs('delta-bot');
    let started = performance.now();
    const refused = await connectAs('delta-bot').then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    const connectionMs = performance.now() - started;
    assert.ok(refused, 'a third connection was accepted');
    // amqplib 2.3.1 drops the broker's reply code and text during the handshake; the broker's log has them.
    assert.equal(refused.message, 'Expected ConnectionOpenOk; got <ConnectionClose channel:0>');
    const logged = `connection refused for user '${user('delta-bot')}': user connection limit (2) is reached`;
    await waitFor(
      `the broker to log: ${logged}`,
      async () => (await readFile(harness?.node().logFile ?? '', 'utf8')).includes(logged),
      { timeoutMs: 10_000 },
    );

    // Channels count over all the user's connections: 2 on one, 1 on the other, then a 4th.
    const channels: Channel[] = [];
    for (const connection of [one, one, two]) {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      channels.push(channel);
    }
    const twoClosed = new Promise<Error>((resolve) => two.once('close', (error: Error) => resolve(error)));
    started = performance.now();
    const channelRefused = await two.createChannel().then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    const channelMs = performance.now() - started;
    assert.ok(channelRefused, 'a fourth channel was opened');
    const closeReason = await twoClosed;
    assert.match(closeReason.message, /530 \(NOT-ALLOWED\)/);
    assert.match(
      closeReason.message,
      /number of channels opened for user .* has reached the maximum allowed user limit of \(3\)/,
    );
    // The user's other connection is untouched: a synchronous round trip on its open channel still answers.
    await channels[0]?.checkExchange('dmr.ingress');
    process.stdout.write(
      `# user limits: connection refused in ${connectionMs.toFixed(1)} ms ("${refused.message}"); ` +
        `4th channel refused in ${channelMs.toFixed(1)} ms, its connection closed: "${closeReason.message}"\n`,
    );
  });

  it('replaces users named by CN (before SPIFFE logins) and leaves untagged users alone', async () => {
    // What a broker reconciled by the previous version holds (e.g. a local mesh in .dmr/mesh).
    for (const [name, tag] of [
      ['gamma-bot', CLIENT_USER_TAG],
      ['node-a', ROUTER_USER_TAG],
      ['legacy-tool', undefined],
    ] as const) {
      await management.createCertificateUser(name, tag === undefined ? [] : [tag]);
      await management.setPermissions(VHOST, name, { configure: '', write: '', read: '' });
    }
    const config = sampleConfig(['gamma-bot', 'delta-bot']);
    const result = await reconcile(management, desiredLayout(config, { routerShards: 2 }));
    const users = result.changes.filter((change) => change.kind === 'user');
    assert.deepEqual(
      users.map((change) => `${change.action} ${change.name}`),
      ['delete gamma-bot', 'delete node-a'],
    );
    const left = await management.listUsers();
    assert.ok(!left.includes('gamma-bot') && !left.includes('node-a'), left.join(', '));
    for (const name of ['legacy-tool', user('gamma-bot'), user('delta-bot'), user('node-a')]) {
      assert.ok(left.includes(name), name);
    }
    assert.deepEqual((await reconcile(management, desiredLayout(config, { routerShards: 2 }))).changes, []);
  });
});
