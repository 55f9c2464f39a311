import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { QueueDepth, ShovelStatus } from '@dmr/broker';
import { planChanges, type ActualState } from './apply.js';
import { desiredLayout } from './layout.js';
import {
  DrainTracker,
  StuckLinkWatch,
  installLinkTlsFiles,
  linkPeerOf,
  linkStatuses,
  parseAmqpsEndpoint,
  removeUnusedLinkFiles,
  sameShovel,
  serverNameFor,
  tlsFilesOf,
  type LinkOptions,
} from './links.js';
import { sampleConfig } from './test-support.js';

const TLS = { certFile: '/b/link-1.crt', keyFile: '/b/link-1.key', caFile: '/b/trust-1.pem' };
const OPTIONS: LinkOptions = { tls: TLS, reconnectDelaySeconds: 1 };
const linkTo = (peer: string, endpoint = 'amqps://peer.example:5671') => ({
  peer,
  amqpsEndpoint: endpoint,
  cost: 1,
  peerCertificates: [],
});
const denyNode = (id: string) => ({ id, kind: 'node' as const, reason: 'test', since: '2026-01-01T00:00:00.000Z' });

/** What a broker holding exactly `layout` answers, with `messages` in every queue. */
function brokerWith(layout: ReturnType<typeof desiredLayout>, messages = 0): ActualState {
  return {
    vhostExists: true,
    exchanges: new Map(layout.exchanges.map((e) => [e.name, { type: e.type, arguments: { ...e.arguments } }])),
    queues: new Map(layout.queues.map((q) => [q.name, { arguments: { ...q.arguments }, durable: true, messages }])),
    bindings: new Map(
      layout.bindings.map((b) => [`${b.source} -> ${b.destination} [${b.routingKey}]`, { ...b, propertiesKey: '~' }]),
    ),
    users: new Map(layout.users.map((user): [string, { tags: string[] }] => [user.name, { tags: [user.tag] }])),
    permissions: new Map(layout.users.map((user) => [user.name, { ...user.permissions }])),
    userLimits: new Map(layout.users.flatMap((user) => (user.limits ? [[user.name, { ...user.limits }]] : []))),
    shovels: new Map((layout.shovels ?? []).map((shovel) => [shovel.name, { ...shovel.spec }])),
  };
}

function summary(changes: ReadonlyArray<{ action: string; kind: string; name: string }>): string[] {
  return changes.map((change) => `${change.action} ${change.kind} ${change.name}`);
}

describe('link shovels in the layout', () => {
  it('bounds the outbound queue and dead-letters what expires in it under dmr.outbound.<peer>', () => {
    const config = sampleConfig([], { links: [linkTo('node-b')] });
    const queue = desiredLayout(config).queues.find((q) => q.name === 'dmr.outbound.node-b');
    assert.deepEqual(queue?.arguments, {
      'x-queue-type': 'quorum',
      'x-max-length': config.limits.queueMaxLength,
      'x-max-length-bytes': config.limits.queueMaxBytes,
      'x-overflow': 'reject-publish',
      'x-message-ttl': config.limits.maxTtlMs,
      'x-dead-letter-exchange': 'dmr.dead-letter',
      'x-dead-letter-routing-key': 'dmr.outbound.node-b',
      'x-dead-letter-strategy': 'at-least-once',
    });
  });

  it('derives one shovel per link not denylisted, to the peer vhost, with the same queue arguments', () => {
    const config = sampleConfig([], {
      links: [linkTo('node-b', 'amqps://node-b.example'), linkTo('node-c', 'amqps://[::1]:5700')],
      denylist: [denyNode('node-c')],
    });
    assert.equal(desiredLayout(config).shovels, undefined, 'without LinkOptions no shovel is managed');
    const layout = desiredLayout(config, { links: OPTIONS });
    assert.deepEqual(layout.deniedPeers, ['node-c']);
    assert.deepEqual(
      layout.shovels?.map((shovel) => shovel.name),
      ['dmr.link.node-b'],
    );
    const spec = layout.shovels?.[0]?.spec;
    assert.equal(spec?.['src-uri'], 'amqp:///dmr-node-a');
    assert.equal(spec?.['src-queue'], 'dmr.outbound.node-b');
    assert.equal(spec?.['dest-exchange'], 'dmr.mesh-ingress');
    assert.equal(spec?.['ack-mode'], 'on-confirm');
    assert.equal(spec?.['reconnect-delay'], 1);
    assert.match(
      spec?.['dest-uri'] ?? '',
      /^amqps:\/\/node-b\.example:5671\/dmr-node-b\?cacertfile=%2Fb%2Ftrust-1\.pem&/,
    );
    assert.match(spec?.['dest-uri'] ?? '', /server_name_indication=node-b\.example&auth_mechanism=external$/);
    const { 'x-dead-letter-routing-key': key, ...rest } =
      layout.queues.find((q) => q.name === 'dmr.outbound.node-b')?.arguments ?? {};
    assert.equal(key, 'dmr.outbound.node-b');
    assert.deepEqual(spec?.['src-queue-args'], rest, 'all but the routing key RabbitMQ refuses there');
    assert.deepEqual(tlsFilesOf({ ...spec }), ['/b/trust-1.pem', '/b/link-1.crt', '/b/link-1.key']);
    assert.equal(serverNameFor('node-b.example'), 'node-b.example');
    // Erlang checks SNI as a DNS name: an IP address there never matches (measured), so no host check for one.
    assert.equal(serverNameFor('10.0.0.5'), 'disable');
    assert.equal(serverNameFor('::1'), 'disable');
    const named = desiredLayout(config, { links: { ...OPTIONS, serverName: (peer) => `${peer}.internal` } });
    assert.match(named.shovels?.[0]?.spec['dest-uri'] ?? '', /server_name_indication=node-b\.internal&/);
  });

  it('refuses an endpoint no shovel could use', () => {
    // What CentOps' registry accepts for a node's amqpsEndpoint (store/validate.ts): amqps://host[:port][/].
    assert.deepEqual(parseAmqpsEndpoint('amqps://[::1]:5700', 'p'), { host: '::1', port: 5700 });
    assert.deepEqual(parseAmqpsEndpoint('amqps://dmr-tartu.example.ee/', 'p'), {
      host: 'dmr-tartu.example.ee',
      port: 5671,
    });
    assert.deepEqual(parseAmqpsEndpoint('amqps://10.0.0.5:5671', 'p'), { host: '10.0.0.5', port: 5671 });
    for (const bad of ['amqp://host:5672', 'https://host', 'amqps://user:pw@host', 'amqps://host?x=1', 'nonsense']) {
      assert.throws(() => parseAmqpsEndpoint(bad, 'node-b'), { code: 'CONFIG_INVALID' });
    }
    const config = sampleConfig([], { links: [linkTo('node-b', 'amqp://plain:5672')] });
    assert.throws(() => desiredLayout(config, { links: OPTIONS }), { code: 'CONFIG_INVALID' });
  });

  it('compares definitions by content, not key order', () => {
    const spec = desiredLayout(sampleConfig([], { links: [linkTo('node-b')] }), { links: OPTIONS }).shovels?.[0]?.spec;
    assert.ok(spec);
    const reversed = Object.fromEntries(Object.entries(spec).reverse());
    assert.ok(sameShovel(spec, reversed));
    assert.ok(!sameShovel(spec, { ...reversed, 'reconnect-delay': 5 }));
    assert.equal(linkPeerOf('dmr.link.node-b'), 'node-b');
    assert.equal(linkPeerOf('dmr.outbound.node-b'), 'node-b');
    assert.equal(linkPeerOf('dmr.ingress.0'), undefined);
  });
});

describe('planning links', () => {
  const withLink = sampleConfig([], { links: [linkTo('node-b')] });
  const withoutLink = sampleConfig([]);

  it('creates the shovel after its queue, leaves a matching one alone, replaces a changed one', () => {
    const layout = desiredLayout(withLink, { links: OPTIONS });
    const empty = { ...brokerWith(desiredLayout(withoutLink, { links: OPTIONS })) };
    const created = summary(planChanges(layout, empty).changes);
    assert.ok(created.indexOf('create queue dmr.outbound.node-b') < created.indexOf('create shovel dmr.link.node-b'));
    assert.deepEqual(planChanges(layout, brokerWith(layout)).changes, []);
    const renewed = desiredLayout(withLink, { links: { ...OPTIONS, tls: { ...TLS, certFile: '/b/link-2.crt' } } });
    assert.deepEqual(summary(planChanges(renewed, brokerWith(layout)).changes), ['update shovel dmr.link.node-b']);
  });

  it('drains a removed link: kept while its queue holds messages or within the grace, then shovel before queue', () => {
    const before = brokerWith(desiredLayout(withLink, { links: OPTIONS }), 3);
    const after = desiredLayout(withoutLink, { links: OPTIONS });
    const drains = new DrainTracker({ graceMs: 1000 });
    const busy = planChanges(after, before, { drains, now: 0 });
    assert.deepEqual(busy.draining, [{ peer: 'node-b', messages: 3, shovel: true }]);
    assert.ok(!summary(busy.changes).some((change) => change.includes('outbound') || change.includes('link')));
    const emptied = { ...before, queues: new Map([...before.queues].map(([n, q]) => [n, { ...q, messages: 0 }])) };
    assert.equal(planChanges(after, emptied, { drains, now: 999 }).draining.length, 1, 'still within the grace');
    const done = planChanges(after, emptied, { drains, now: 1000 });
    assert.deepEqual(done.draining, []);
    assert.deepEqual(
      summary(done.changes).filter((change) => change.includes('node-b')),
      [
        'delete user spiffe://dmr.test/node/node-b',
        'delete shovel dmr.link.node-b',
        'delete queue dmr.outbound.node-b',
      ],
    );
    assert.deepEqual(drains.draining, []);
    // Without statistics a queue is not known to be empty.
    const unknown = {
      ...before,
      queues: new Map([...before.queues].map(([n, q]) => [n, { ...q, messages: undefined }])),
    };
    assert.equal(planChanges(after, unknown, { drains: new DrainTracker({ graceMs: 0 }) }).draining.length, 1);
  });

  it('deletes the shovel to a denylisted peer first, and keeps its queue until it is empty', () => {
    const before = brokerWith(desiredLayout(withLink, { links: OPTIONS }), 2);
    const denied = desiredLayout(sampleConfig([], { denylist: [denyNode('node-b')] }), { links: OPTIONS });
    const plan = planChanges(denied, before, { drains: new DrainTracker({ graceMs: 0 }) });
    assert.deepEqual(summary(plan.changes).slice(0, 2), [
      'delete shovel dmr.link.node-b',
      'delete user spiffe://dmr.test/node/node-b',
    ]);
    assert.deepEqual(plan.draining, [{ peer: 'node-b', messages: 2, shovel: false }]);
  });

  it('leaves shovels alone without LinkOptions, but never deletes an outbound queue that holds messages', () => {
    const before = brokerWith(desiredLayout(withLink, { links: OPTIONS }), 1);
    const plan = planChanges(desiredLayout(withoutLink), before, { drains: new DrainTracker({ graceMs: 0 }) });
    assert.ok(!summary(plan.changes).some((change) => change.includes('shovel') || change.includes('outbound')));
    assert.deepEqual(plan.draining, [{ peer: 'node-b', messages: 1, shovel: false }]);
  });
});

describe('link state', () => {
  const depth = (name: string, extra: Partial<QueueDepth> = {}): QueueDepth => ({
    name,
    messages: 4,
    messagesReady: 4,
    messagesUnacknowledged: 0,
    consumers: 1,
    acked: 0,
    ...extra,
  });
  const worker = (name: string, state: ShovelStatus['state']): ShovelStatus => ({
    name,
    vhost: 'dmr-node-a',
    type: 'dynamic',
    state,
    timestamp: '',
    node: '',
  });

  it('reports configured links by their worker, removed ones as draining, missing ones as absent', () => {
    const config = sampleConfig([], { links: [linkTo('node-b'), linkTo('node-c'), linkTo('node-d')] });
    const links = linkStatuses(
      config,
      [worker('dmr.link.node-b', 'running'), worker('dmr.link.node-c', 'starting'), worker('dmr.link.old', 'running')],
      [depth('dmr.outbound.node-b'), depth('dmr.outbound.old', { messages: 7 }), depth('dmr.ingress.0')],
    );
    assert.deepEqual(links, [
      { peer: 'node-b', state: 'running', messages: 4 },
      { peer: 'node-c', state: 'starting', messages: 0 },
      { peer: 'node-d', state: 'absent', messages: 0 },
      { peer: 'old', state: 'draining', messages: 7 },
    ]);
  });

  it('calls a running link stuck when unacknowledged messages do not move for stuckAfterMs', () => {
    const watch = new StuckLinkWatch({ stuckAfterMs: 100 });
    const held = depth('dmr.outbound.node-b', { messagesUnacknowledged: 1, acked: 5 });
    assert.equal(watch.observe('node-b', 'running', held, 0), false);
    assert.equal(watch.observe('node-b', 'running', held, 99), false);
    assert.equal(watch.observe('node-b', 'running', held, 100), true);
    assert.equal(watch.observe('node-b', 'running', held, 150), false, 'the watch starts over after a restart');
    assert.equal(watch.observe('node-b', 'running', { ...held, acked: 6 }, 250), false, 'acks moved');
    assert.equal(watch.observe('node-b', 'running', { ...held, acked: 6 }, 300), false);
    assert.equal(watch.observe('node-b', 'starting', { ...held, acked: 6 }, 1000), false, 'not running: not trap 2');
    assert.equal(watch.observe('node-b', 'running', { ...held, messagesUnacknowledged: 0 }, 2000), false);
  });
});

describe('link TLS files', () => {
  it('names copies by content, rewrites nothing that exists, and removes only unused link files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'link-files-'));
    try {
      const first = await installLinkTlsFiles(dir, { chainPem: 'CERT 1', privateKeyPem: 'KEY 1', trustPem: 'CA 1' });
      assert.deepEqual(
        await installLinkTlsFiles(dir, { chainPem: 'CERT 1', privateKeyPem: 'KEY 1', trustPem: 'CA 1' }),
        first,
      );
      assert.equal((await stat(first.keyFile)).mode & 0o777, 0o600);
      const second = await installLinkTlsFiles(dir, { chainPem: 'CERT 2', privateKeyPem: 'KEY 2', trustPem: 'CA 1' });
      assert.notEqual(second.certFile, first.certFile);
      assert.equal(second.caFile, first.caFile, 'an unchanged trust bundle keeps its name');
      assert.equal((await readdir(dir)).length, 5);
      const removed = await removeUnusedLinkFiles(dir, Object.values(second));
      assert.deepEqual(removed.sort(), [first.certFile, first.keyFile].sort());
      assert.deepEqual(
        (await readdir(dir)).sort(),
        Object.values(second)
          .map((p) => p.slice(dir.length + 1))
          .sort(),
      );
      assert.deepEqual(await removeUnusedLinkFiles(join(dir, 'missing'), []), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
