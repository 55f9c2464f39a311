/**
 * The reconciler keeps the links between two nodes on two real TLS-only
 * harness brokers (shared by the whole file): node-a's layout on broker 0,
 * node-b's on broker 1, a link each way. node-a's shovel reaches node-b
 * through a TcpProxy, so the tests can take node-b away from it.
 *
 * The tests run in order and each leaves both links as it found them:
 * running, node-a → node-b through the proxy.
 *
 * Lines starting with "# links" are measurements (docs/mesh-links.md).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LinkTlsFiles, ManagementClient } from '@dmr/broker';
import { startBrokers, TcpProxy, type BrokerHarness } from '@dmr/broker-harness';
import {
  DEAD_LETTER_REPORTS_QUEUE,
  meshIngressQueueName,
  outboundQueueName,
  vhostName,
  type NodeConfig,
} from '@dmr/contract';
import { waitFor } from '@dmr/core/testing';
import { CertificateAuthority } from '@dmr/pki';
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { reconcile, type ApplyResult } from './apply.js';
import { desiredLayout } from './layout.js';
import {
  DrainTracker,
  StuckLinkWatch,
  installLinkTlsFiles,
  readLinkStatuses,
  removeUnusedLinkFiles,
  tlsFilesOf,
  type LinkTlsMaterial,
} from './links.js';
import { denyNode, sampleConfig } from './test-support.js';

const TD = 'dmr.test';
const SHARDS = 2;
const A = 'node-a';
const B = 'node-b';
const nodeUser = (id: string): string => `spiffe://${TD}/node/${id}`;

function measure(line: string): void {
  process.stdout.write(`# links ${line}\n`);
}

interface Identity {
  certificatePem: string;
  privateKeyPem: string;
}

/** A node's router as a test client: publishes to its outbound queues, reads its mesh ingress. */
class Router {
  readonly received = new Map<string, { count: number; userId: unknown; queue: string }>();
  connection!: ChannelModel;
  channel!: ConfirmChannel;

  constructor(
    readonly id: string,
    readonly vhost: string,
  ) {}

  async start(harness: BrokerHarness, node: number, identity: Identity, consume = true): Promise<void> {
    this.connection = await harness.connect({ ...identity, node, vhost: this.vhost });
    this.connection.on('error', () => undefined);
    this.channel = await this.connection.createConfirmChannel();
    this.channel.on('error', () => undefined);
    if (!consume) return;
    for (let shard = 0; shard < SHARDS; shard++) {
      const queue = meshIngressQueueName(shard);
      await this.channel.consume(queue, (message) => {
        if (message === null) return;
        const id = String(message.properties.messageId);
        const seen = this.received.get(id);
        if (seen) seen.count += 1;
        else this.received.set(id, { count: 1, userId: message.properties.userId, queue });
        this.channel.ack(message);
      });
    }
  }

  /** Publishes to `dmr.outbound.<peer>` through the default exchange as the router does: user_id = its node id. */
  publish(peer: string, id: string, extra: { expiration?: string } = {}): Promise<boolean> {
    return new Promise((resolve) => {
      this.channel.publish(
        '',
        outboundQueueName(peer),
        Buffer.from(`body of ${id}`),
        {
          messageId: id,
          userId: nodeUser(this.id),
          persistent: true,
          mandatory: true,
          ...extra,
        },
        (error: unknown) => resolve(error === null || error === undefined),
      );
    });
  }

  async publishAll(peer: string, count: number, prefix: string): Promise<string[]> {
    const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}-${randomUUID()}`);
    const confirmed = await Promise.all(ids.map((id) => this.publish(peer, id)));
    assert.ok(confirmed.every(Boolean), 'every publish confirmed');
    return ids;
  }

  async awaitReceived(ids: readonly string[], timeoutMs = 30_000): Promise<void> {
    await waitFor(
      () => `${ids.filter((id) => !this.received.has(id)).length} of ${ids.length} messages to reach ${this.id}`,
      () => ids.every((id) => this.received.has(id)),
      { timeoutMs, intervalMs: 50 },
    );
  }
}

describe('link shovels kept by the reconciler, between two harness brokers', () => {
  let dir: string;
  let harness: BrokerHarness;
  let ca: CertificateAuthority;
  let managementA: ManagementClient;
  let managementB: ManagementClient;
  let proxy: TcpProxy;
  let identityA: Identity;
  let identityB: Identity;
  let filesA: LinkTlsFiles;
  let filesB: LinkTlsFiles;
  const linkDirA = (): string => join(dir, 'broker-a-links');
  const routerA = new Router(A, vhostName(A));
  const routerB = new Router(B, vhostName(B));
  const drainsA = new DrainTracker({ graceMs: 1000 });
  const drainsB = new DrainTracker({ graceMs: 1000 });

  const link = (peer: string, port: number, host = 'localhost'): NodeConfig['links'][number] => ({
    peer,
    amqpsEndpoint: `amqps://${host}:${port}`,
    cost: 1,
    peerCertificates: [],
  });
  const configA = (extra: Parameters<typeof sampleConfig>[1] = {}): NodeConfig =>
    sampleConfig([], { node: A, links: [link(B, proxy.port)], ...extra });
  const configB = (extra: Parameters<typeof sampleConfig>[1] = {}): NodeConfig =>
    // An IP endpoint: no host check (serverNameFor), the certificate chain still is.
    sampleConfig([], { node: B, links: [link(A, harness.node(0).amqpsPort, '127.0.0.1')], ...extra });

  function reconcileA(config: NodeConfig = configA(), vhost?: string): Promise<ApplyResult> {
    const layout = desiredLayout(config, {
      routerShards: SHARDS,
      links: { tls: filesA, reconnectDelaySeconds: 1 },
      ...(vhost === undefined ? {} : { vhost }),
    });
    return reconcile(managementA, layout, { drains: drainsA });
  }
  function reconcileB(config: NodeConfig = configB()): Promise<ApplyResult> {
    const layout = desiredLayout(config, { routerShards: SHARDS, links: { tls: filesB, reconnectDelaySeconds: 1 } });
    return reconcile(managementB, layout, { drains: drainsB });
  }

  async function awaitShovel(
    management: ManagementClient,
    vhost: string,
    name: string,
    state: 'running' | 'absent',
  ): Promise<void> {
    let last: unknown;
    await waitFor(
      () => `${name} in ${vhost} to be ${state}; last ${JSON.stringify(last)}`,
      async () => {
        const status = await management.shovelStatus(vhost, name);
        last = status;
        return state === 'absent' ? status === undefined : status?.state === 'running';
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
  }

  /** Names of the connections user `user` has open on the management's broker. */
  async function connectionsOf(management: ManagementClient, user: string): Promise<string[]> {
    return (await management.listConnections()).filter((c) => c.user === user).map((c) => c.name);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-links-test-'));
    ca = await CertificateAuthority.init(join(dir, 'pki'), { trustDomain: TD });
    harness = await startBrokers({ dir: join(dir, 'brokers'), ca, nodes: 2, namePrefix: 'links' });
    managementA = harness.management(0);
    managementB = harness.management(1);
    proxy = await TcpProxy.start({ targetPort: harness.node(1).amqpsPort });
    const issue = async (id: string): Promise<Identity> => {
      const issued = await ca.issueWithKey({ kind: 'node', id });
      return { certificatePem: issued.chainPem, privateKeyPem: issued.privateKeyPem };
    };
    [identityA, identityB] = await Promise.all([issue(A), issue(B)]);
    const material = (identity: Identity): LinkTlsMaterial => ({
      chainPem: identity.certificatePem,
      privateKeyPem: identity.privateKeyPem,
      trustPem: harness.trustBundlePem,
    });
    filesA = await installLinkTlsFiles(linkDirA(), material(identityA));
    filesB = await installLinkTlsFiles(join(dir, 'broker-b-links'), material(identityB));
  });

  after(async () => {
    await routerA.connection?.close().catch(() => undefined);
    await routerB.connection?.close().catch(() => undefined);
    await proxy?.close();
    await harness?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('links both ways: a message A’s router publishes reaches a mesh-ingress shard of B with A’s user_id', async () => {
    const [resultA, resultB] = await Promise.all([reconcileA(), reconcileB()]);
    for (const result of [resultA, resultB]) {
      const kinds = result.changes.map((change) => `${change.action} ${change.kind}`);
      // The queue is declared before the shovel that reads it (the shovel would create a classic one).
      assert.ok(kinds.indexOf('create queue') < kinds.indexOf('create shovel'));
      assert.deepEqual(result.conflicts, []);
    }
    await awaitShovel(managementA, vhostName(A), 'dmr.link.node-b', 'running');
    await awaitShovel(managementB, vhostName(B), 'dmr.link.node-a', 'running');
    const outbound = (await managementA.request('GET', `/queues/${vhostName(A)}/dmr.outbound.node-b`)) as {
      type: string;
    };
    assert.equal(outbound.type, 'quorum');

    await routerA.start(harness, 0, identityA);
    await routerB.start(harness, 1, identityB);
    const toB = await routerA.publishAll(B, 20, 'a-to-b');
    const toA = await routerB.publishAll(A, 5, 'b-to-a');
    await routerB.awaitReceived(toB);
    await routerA.awaitReceived(toA);
    const shards = new Set(toB.map((id) => routerB.received.get(id)?.queue));
    measure(`a-to-b 20 messages over shards ${[...shards].sort().join(' ')}`);
    assert.ok([...shards].every((queue) => queue?.startsWith('dmr.mesh-ingress.')));
    for (const id of toB) assert.equal(routerB.received.get(id)?.userId, nodeUser(A));

    // Re-reconciling plans nothing, so the shovel is not PUT again (a changed definition would restart it).
    const again = await reconcileA();
    assert.deepEqual(again.changes, []);
    assert.deepEqual(again.draining, []);
    assert.equal((await managementA.shovelStatus(vhostName(A), 'dmr.link.node-b'))?.state, 'running');
    const { links } = await readLinkStatuses(managementA, vhostName(A), configA());
    assert.deepEqual(links, [{ peer: B, state: 'running', messages: 0 }]);
  });

  it('re-creates the shovel for a renewed certificate and loses nothing sent before, during or after', async () => {
    const connectionBefore = await connectionsOf(managementB, nodeUser(A));
    const oldFiles = filesA;
    const renewed = await ca.issueWithKey({ kind: 'node', id: A });
    const confirmed: string[] = [];
    let stop = false;
    let sequence = 0;
    // A steady sender across the renewal: each message confirmed before the next (a router's pace).
    const sender = (async () => {
      while (!stop) {
        const id = `renewal-${sequence++}-${randomUUID()}`;
        if (await routerA.publish(B, id)) confirmed.push(id);
        await sleep(5);
      }
    })();
    try {
      await waitFor('some messages before the renewal', () => confirmed.length >= 20);
      filesA = await installLinkTlsFiles(linkDirA(), {
        chainPem: renewed.chainPem,
        privateKeyPem: renewed.privateKeyPem,
        trustPem: harness.trustBundlePem,
      });
      assert.notEqual(filesA.certFile, oldFiles.certFile);
      const result = await reconcileA();
      assert.deepEqual(
        result.changes.map((change) => `${change.action} ${change.kind} ${change.name}`),
        ['update shovel dmr.link.node-b'],
      );
      // The new worker is up on a new connection; then the old files can go.
      await waitFor('a new link connection on B', async () => {
        const now = await connectionsOf(managementB, nodeUser(A));
        return now.length === 1 && now[0] !== connectionBefore[0];
      });
      const inUse = [...Object.values(filesA)];
      for (const definition of (await managementA.listShovelDefinitions(vhostName(A))).values()) {
        inUse.push(...tlsFilesOf(definition));
      }
      const removed = await removeUnusedLinkFiles(linkDirA(), inUse);
      assert.deepEqual(removed.sort(), [oldFiles.certFile, oldFiles.keyFile].sort());
      const atRenewal = confirmed.length;
      await waitFor('more messages after the renewal', () => confirmed.length >= atRenewal + 20);
    } finally {
      stop = true;
      await sender;
    }
    await routerB.awaitReceived(confirmed);
    measure(`renewal: ${confirmed.length} confirmed at A, 0 lost at B`);
    // The worker reads the new files when it connects again: cut its connection and see it come back.
    await managementB.closeUserConnections(nodeUser(A), 'test: reconnect with the renewed certificate');
    assert.ok(!existsSync(oldFiles.certFile));
    await awaitShovel(managementA, vhostName(A), 'dmr.link.node-b', 'running');
    const after = await routerA.publishAll(B, 5, 'after-renewal');
    await routerB.awaitReceived(after);
  });

  it('bounds the outbound queue: past x-max-length the router’s publish is nacked (reject-publish)', async () => {
    const dead = await TcpProxy.start({ targetPort: harness.node(1).amqpsPort });
    dead.cut();
    const vhost = 'dmr-node-a-bounds';
    const router = new Router(A, vhost);
    try {
      const config = sampleConfig([], {
        node: A,
        links: [link(B, dead.port)],
        limits: { ...configA().limits, queueMaxLength: 5 },
      });
      assert.deepEqual((await reconcileA(config, vhost)).conflicts, []);
      await router.start(harness, 0, identityA, false);
      const outcomes: boolean[] = [];
      // One at a time: the bound is checked in order.
      for (let i = 0; i < 8; i++) outcomes.push(await router.publish(B, `bounded-${i}-${randomUUID()}`));
      measure(`bound: x-max-length 5, publish outcomes ${outcomes.map((ok) => (ok ? 'ack' : 'nack')).join(' ')}`);
      // Trap 4: a quorum queue accepts one message past the bound.
      assert.deepEqual(outcomes.slice(0, 5), [true, true, true, true, true]);
      assert.deepEqual(outcomes.slice(6), [false, false]);
    } finally {
      await router.connection?.close().catch(() => undefined);
      await managementA.deleteVhost(vhost);
      await dead.close();
    }
  });

  it('dead-letters what expires in a link whose peer is down to dmr.dead-letter under dmr.outbound.<peer>', async () => {
    const dead = await TcpProxy.start({ targetPort: harness.node(1).amqpsPort });
    dead.cut();
    const vhost = 'dmr-node-a-ttl';
    const router = new Router(A, vhost);
    try {
      const config = sampleConfig([], {
        node: A,
        links: [link(B, dead.port)],
        limits: { ...configA().limits, maxTtlMs: 1500 },
      });
      assert.deepEqual((await reconcileA(config, vhost)).conflicts, []);
      await router.start(harness, 0, identityA, false);
      const deadLetters: ConsumeMessage[] = [];
      await router.channel.consume(DEAD_LETTER_REPORTS_QUEUE, (message) => {
        if (message === null) return;
        deadLetters.push(message);
        router.channel.ack(message);
      });
      const id = `expiring-${randomUUID()}`;
      const started = performance.now();
      assert.ok(await router.publish(B, id));
      const message = await waitFor('the expired message in dmr.dead-letter-reports', () =>
        deadLetters.find((m) => m.properties.messageId === id),
      );
      measure(
        `ttl: expired in the link and dead-lettered ${Math.round(performance.now() - started)} ms after publishing (x-message-ttl 1500)`,
      );
      assert.equal(message.fields.exchange, 'dmr.dead-letter');
      assert.equal(message.fields.routingKey, outboundQueueName(B));
      const death = (message.properties.headers?.['x-death'] as Array<Record<string, unknown>> | undefined)?.[0];
      assert.equal(death?.reason, 'expired');
      assert.equal(death?.queue, outboundQueueName(B));
    } finally {
      await router.connection?.close().catch(() => undefined);
      await managementA.deleteVhost(vhost);
      await dead.close();
    }
  });

  it('drains a link removed from the configuration, then removes its shovel and queue', async () => {
    proxy.cut();
    let waiting: string[] = [];
    try {
      waiting = await routerA.publishAll(B, 15, 'draining');
      const removed = configA({ links: [] });
      const first = await reconcileA(removed);
      assert.deepEqual(
        first.draining.map((link) => [link.peer, link.shovel]),
        [[B, true]],
      );
      assert.ok(!first.changes.some((change) => change.kind === 'shovel' || change.name === outboundQueueName(B)));
      await waitFor(
        'the removed link to report draining with its messages',
        async () => {
          const { links } = await readLinkStatuses(managementA, vhostName(A), removed);
          return links.length === 1 && links[0]?.state === 'draining' && links[0].messages === waiting.length;
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );
      const still = await reconcileA(removed);
      assert.equal(still.draining[0]?.messages, waiting.length);
    } finally {
      proxy.restore();
    }
    await routerB.awaitReceived(waiting);
    let passes = 0;
    await waitFor(
      'the drained link to be removed',
      async () => {
        passes += 1;
        const result = await reconcileA(configA({ links: [] }));
        return (
          result.draining.length === 0 &&
          (await managementA.shovelStatus(vhostName(A), 'dmr.link.node-b')) === undefined
        );
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    measure(
      `drain: ${waiting.length} messages delivered after the link was removed; gone after ${passes} more reconciles`,
    );
    const queues = await managementA.listQueues(vhostName(A));
    assert.ok(!queues.some((queue) => queue.name === outboundQueueName(B)));
    assert.equal(await managementA.getShovel(vhostName(A), 'dmr.link.node-b'), undefined);

    // Configured again: queue and shovel come back, and B's link into A (its peer user on A) works again.
    await reconcileA();
    await awaitShovel(managementA, vhostName(A), 'dmr.link.node-b', 'running');
    await awaitShovel(managementB, vhostName(B), 'dmr.link.node-a', 'running');
    await routerB.awaitReceived(await routerA.publishAll(B, 3, 'relinked'));
    await routerA.awaitReceived(await routerB.publishAll(A, 3, 'relinked'));
  });

  it('restarts a link stuck “running” after a 403 at the peer, once its unacknowledged messages stop moving', async () => {
    await awaitShovel(managementA, vhostName(A), 'dmr.link.node-b', 'running');
    const outbound = outboundQueueName(B);
    // B takes node-a's write away. A channel keeps the permissions it already used (RABBITMQ-FACTS), so the
    // link starts again on a fresh one: its next publish is refused with 403 and that channel dies.
    await managementB.setPermissions(vhostName(B), nodeUser(A), { configure: '', write: '', read: '' });
    await managementA.restartShovel(vhostName(A), 'dmr.link.node-b');
    await awaitShovel(managementA, vhostName(A), 'dmr.link.node-b', 'running');
    const [id] = await routerA.publishAll(B, 1, 'stuck');
    assert.ok(id);
    let seen: unknown;
    await waitFor(
      () => `the message held unacknowledged at A; last ${JSON.stringify(seen)}`,
      async () => {
        const depth = (await managementA.listQueues(vhostName(A))).find((q) => q.name === outbound);
        const status = await managementA.shovelStatus(vhostName(A), 'dmr.link.node-b');
        seen = { depth, state: status?.state, reason: status?.reason };
        return depth?.messagesUnacknowledged === 1;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    // The next apply puts the permission back; the link still says running and moves nothing (trap 2).
    assert.ok((await reconcileB()).changes.some((change) => change.kind === 'permissions'));
    const watch = new StuckLinkWatch({ stuckAfterMs: 2000 });
    const started = performance.now();
    await waitFor(
      'the watch to call the link stuck',
      async () => {
        const read = await readLinkStatuses(managementA, vhostName(A), configA());
        const state = read.shovels.find((shovel) => shovel.name === 'dmr.link.node-b')?.state;
        return watch.observe(
          B,
          state,
          read.queues.find((q) => q.name === outbound),
          Date.now(),
        );
      },
      { timeoutMs: 40_000, intervalMs: 250 },
    );
    const stuckMs = performance.now() - started;
    assert.equal(routerB.received.has(id), false, 'nothing moved before the restart');
    await managementA.restartShovel(vhostName(A), 'dmr.link.node-b');
    await routerB.awaitReceived([id]);
    measure(
      `stuck: called stuck ${Math.round(stuckMs)} ms after the permission came back (stuckAfterMs 2000 + statistics lag); delivered ${Math.round(performance.now() - started - stuckMs)} ms after the restart`,
    );
  });

  it('cuts a denylisted peer off: its link deleted, its user deleted, its live connection closed', async () => {
    await awaitShovel(managementA, vhostName(A), 'dmr.link.node-b', 'running');
    // The connection list is the management's statistics: wait until it shows the link's connection.
    await waitFor(
      'node-a’s link connection listed on B',
      async () => (await connectionsOf(managementB, nodeUser(A))).length === 1,
    );
    let stoppedMs = Number.NaN;
    const started = performance.now();
    // How long node-a's shovel keeps running: it notices that B closed its connection.
    const watch = waitFor(
      'node-a’s link to leave running',
      async () => (await managementA.shovelStatus(vhostName(A), 'dmr.link.node-b'))?.state !== 'running',
      { intervalMs: 5 },
    ).then(() => {
      stoppedMs = performance.now() - started;
    });
    const result = await reconcileB(configB({ links: [], denylist: [denyNode(A)] }));
    const reconciled = performance.now() - started;
    await waitFor(
      'no connection of node-a on B',
      async () => (await connectionsOf(managementB, nodeUser(A))).length === 0,
      { intervalMs: 5 },
    );
    const closed = performance.now() - started;
    await watch;
    measure(
      `denylist: apply → node-a's connection gone from B's list ${Math.round(closed)} ms, node-a's shovel out of running ${Math.round(stoppedMs)} ms (reconcile ${Math.round(reconciled)} ms)`,
    );
    const order = result.changes.map((change) => `${change.action} ${change.kind} ${change.name}`);
    assert.deepEqual(order.slice(0, 2), ['delete shovel dmr.link.node-a', `delete user ${nodeUser(A)}`]);
    assert.equal(await managementB.getShovel(vhostName(B), 'dmr.link.node-a'), undefined);
    assert.ok(!(await managementB.listUsers()).includes(nodeUser(A)));
    // It reconnects every second and is refused at login: it does not run again.
    await waitFor(
      'node-a’s link to be refused at login',
      async () => (await managementA.shovelStatus(vhostName(A), 'dmr.link.node-b'))?.state === 'starting',
    );
  });
});
