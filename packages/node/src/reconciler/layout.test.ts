import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planChanges, type ActualState } from './apply.js';
import { denyClient, denyNode, sampleConfig } from './test-support.js';
import { DrainTracker } from './links.js';
import { desiredLayout, escapeRegex, exactNames } from './layout.js';
import { CLIENT_USER_TAG, INGRESS_EXCHANGE, PEER_USER_TAG, ROUTER_USER_TAG, vhostName } from '@dmr/contract';

const link = { peer: 'node-b', amqpsEndpoint: 'amqps://127.0.0.1:5672', cost: 1, peerCertificates: [] };
const ALPHA = 'spiffe://dmr.test/client/alpha-bot';
const NODE_A = 'spiffe://dmr.test/node/node-a';
const NODE_B = 'spiffe://dmr.test/node/node-b';
const LIMITS = { 'max-connections': 10, 'max-channels': 100 };

/** What a broker holding exactly `layout` answers. */
function matchingState(layout: ReturnType<typeof desiredLayout>): ActualState {
  return {
    vhostExists: true,
    exchanges: new Map(
      layout.exchanges.map((exchange) => [
        exchange.name,
        { type: exchange.type, arguments: { ...exchange.arguments } },
      ]),
    ),
    queues: new Map(layout.queues.map((queue) => [queue.name, { arguments: { ...queue.arguments }, durable: true }])),
    bindings: new Map(
      layout.bindings.map((binding) => [
        `${binding.source} -> ${binding.destination} [${binding.routingKey}]`,
        { ...binding, propertiesKey: binding.routingKey },
      ]),
    ),
    users: new Map([
      ['harness_admin', { tags: ['administrator'] }],
      ...layout.users.map((user): [string, { tags: string[] }] => [user.name, { tags: [user.tag] }]),
    ]),
    permissions: new Map(layout.users.map((user) => [user.name, { ...user.permissions }])),
    userLimits: new Map(layout.users.flatMap((user) => (user.limits ? [[user.name, { ...user.limits }]] : []))),
    shovels: new Map((layout.shovels ?? []).map((shovel) => [shovel.name, { ...shovel.spec }])),
  };
}

function summary(changes: ReadonlyArray<{ action: string; kind: string; name: string; limit?: string }>): string[] {
  return changes.map((change) =>
    [change.action, change.kind, change.name, ...(change.limit === undefined ? [] : [change.limit])].join(' '),
  );
}

describe('reconciler layout', () => {
  it('escapes every regex metacharacter and anchors names', () => {
    assert.equal(escapeRegex('dmr.client.a-b'), 'dmr\\.client\\.a\\-b');
    assert.equal(escapeRegex('a*+?^$()[]{}|\\/'), 'a\\*\\+\\?\\^\\$\\(\\)\\[\\]\\{\\}\\|\\\\\\/');
    assert.equal(exactNames([INGRESS_EXCHANGE]), '^dmr\\.ingress$');
    assert.equal(exactNames(['b.x', 'a.y', 'b.x']), '^(a\\.y|b\\.x)$');
    assert.equal(exactNames([]), '');
    const regex = new RegExp(exactNames(['dmr.ingress']));
    assert.ok(regex.test('dmr.ingress'));
    for (const other of ['dmrXingress', 'dmr.ingress2', 'xdmr.ingress', 'dmr.mesh-ingress']) {
      assert.ok(!regex.test(other), other);
    }
  });

  it('derives vhost, exchanges, queues with limits and least-privilege users', () => {
    const layout = desiredLayout(sampleConfig(['alpha-bot', 'beta-bot'], { links: [link] }));
    assert.equal(layout.vhost, vhostName('node-a'));
    assert.deepEqual(
      layout.exchanges.map((exchange) => `${exchange.name}:${exchange.type}`),
      [
        'dmr.dead-letter:topic',
        'dmr.delivery:direct',
        'dmr.ingress:x-consistent-hash',
        'dmr.mesh-ingress:x-consistent-hash',
        'dmr.parking:direct',
        'dmr.rejected:fanout',
      ],
    );
    // Router inputs: bounded in count and bytes; what dies in one (expired, or taken too often without a settle)
    // dead-letters to the routers' reports under the input's name (decision 0042).
    for (const input of ['dmr.ingress.0', 'dmr.mesh-ingress.0']) {
      assert.deepEqual(layout.queues.find((queue) => queue.name === input)?.arguments, {
        'x-queue-type': 'quorum',
        'x-max-length': 10_000,
        'x-max-length-bytes': 268_435_456,
        'x-overflow': 'reject-publish',
        'x-delivery-limit': 10,
        'x-dead-letter-exchange': 'dmr.dead-letter',
        'x-dead-letter-routing-key': input,
        'x-dead-letter-strategy': 'at-least-once',
      });
    }
    // A full reports queue refuses (the dead letter waits in its source), never drops a report owed.
    assert.deepEqual(layout.queues.find((queue) => queue.name === 'dmr.dead-letter-reports')?.arguments, {
      'x-queue-type': 'quorum',
      'x-max-length': 10_000,
      'x-overflow': 'reject-publish',
    });
    assert.deepEqual(layout.queues.find((queue) => queue.name === 'dmr.rejected')?.arguments, {
      'x-queue-type': 'quorum',
      'x-message-ttl': 86_400_000,
      'x-max-length': 10_000,
      'x-max-length-bytes': 268_435_456,
      'x-overflow': 'drop-head',
    });
    assert.ok(
      layout.bindings.some(
        (b) => b.source === 'dmr.rejected' && b.destination === 'dmr.rejected' && b.routingKey === '',
      ),
    );
    assert.deepEqual(layout.exchanges.find((exchange) => exchange.name === 'dmr.ingress')?.arguments, {
      'hash-property': 'message_id',
    });
    assert.deepEqual(
      layout.queues.map((queue) => queue.name),
      [
        'dmr.audit',
        'dmr.client.alpha-bot',
        'dmr.client.alpha-bot.dlq',
        'dmr.client.beta-bot',
        'dmr.client.beta-bot.dlq',
        'dmr.dead-letter-reports',
        'dmr.ingress.0',
        'dmr.mesh-ingress.0',
        'dmr.outbound.node-b',
        'dmr.parking.0',
        'dmr.rejected',
      ],
    );
    // Parking (decision 0039): a TTL, then dead-lettered through the default exchange under the routing key it was
    // parked with (the input's name), at least once; bounded with reject-publish, which at-least-once needs.
    assert.deepEqual(layout.queues.find((queue) => queue.name === 'dmr.parking.0')?.arguments, {
      'x-queue-type': 'quorum',
      'x-message-ttl': 5_000,
      'x-max-length': 10_000,
      'x-max-length-bytes': 268_435_456,
      'x-overflow': 'reject-publish',
      'x-dead-letter-exchange': '',
      'x-dead-letter-strategy': 'at-least-once',
    });
    assert.deepEqual(
      layout.bindings
        .filter((binding) => binding.source === 'dmr.parking')
        .map((binding) => `${binding.routingKey}→${binding.destination}`),
      ['dmr.ingress.0→dmr.parking.0', 'dmr.mesh-ingress.0→dmr.parking.0', 'dmr.dead-letter-reports→dmr.parking.0'],
    );
    const alpha = layout.queues.find((queue) => queue.name === 'dmr.client.alpha-bot');
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
    assert.equal(layout.queues.find((queue) => queue.name === 'dmr.audit')?.arguments['x-queue-type'], 'stream');
    const users = new Map(layout.users.map((user) => [user.name, user]));
    assert.deepEqual(users.get(ALPHA), {
      name: ALPHA,
      tag: CLIENT_USER_TAG,
      permissions: { configure: '', write: '^dmr\\.ingress$', read: '^dmr\\.client\\.alpha\\-bot$' },
      limits: LIMITS,
    });
    assert.equal(users.get(NODE_B)?.tag, PEER_USER_TAG);
    assert.equal(users.get(NODE_B)?.permissions.write, '^dmr\\.mesh\\-ingress$');
    assert.deepEqual(users.get(NODE_B)?.limits, LIMITS);
    assert.equal(users.get(NODE_A)?.tag, ROUTER_USER_TAG);
    assert.equal(users.get(NODE_A)?.limits, undefined, 'the router’s own connections are not limited');
    const routerRead = new RegExp(users.get(NODE_A)?.permissions.read ?? '');
    assert.ok(routerRead.test('dmr.ingress.0') && routerRead.test('dmr.dead-letter-reports'));
    for (const denied of ['dmr.client.alpha-bot', 'dmr.client.alpha-bot.dlq', 'dmr.ingress.1', 'dmr.rejected']) {
      assert.ok(!routerRead.test(denied), denied);
    }
    const routerWrite = new RegExp(users.get('node-a')?.permissions.write ?? '');
    for (const allowed of ['dmr.delivery', 'dmr.rejected', 'dmr.parking', 'amq.default'])
      assert.ok(routerWrite.test(allowed), allowed);
    assert.deepEqual(
      layout.bindings.filter((binding) => binding.source === 'dmr.delivery').map((binding) => binding.routingKey),
      ['alpha-bot', 'beta-bot'],
    );
    // Each dead letter reaches the report queue (everything), a client queue's its DLQ (by client id), a router
    // input's dmr.rejected (by the input's name).
    assert.deepEqual(
      layout.bindings
        .filter((binding) => binding.source === 'dmr.dead-letter')
        .map((binding) => `${binding.routingKey}→${binding.destination}`)
        .sort(),
      [
        '#→dmr.dead-letter-reports',
        'alpha-bot→dmr.client.alpha-bot.dlq',
        'beta-bot→dmr.client.beta-bot.dlq',
        'dmr.ingress.0→dmr.rejected',
        'dmr.mesh-ingress.0→dmr.rejected',
      ],
    );
  });

  it('shards ingress: one weighted queue per router, all readable by the router user only', () => {
    const layout = desiredLayout(sampleConfig(['alpha-bot']), { routerShards: 3 });
    const ingress = layout.bindings.filter((binding) => binding.source === 'dmr.ingress');
    assert.deepEqual(
      ingress.map((binding) => `${binding.destination}:${binding.routingKey}`),
      ['dmr.ingress.0:1', 'dmr.ingress.1:1', 'dmr.ingress.2:1'],
    );
    const routerRead = new RegExp(layout.users.find((user) => user.tag === ROUTER_USER_TAG)?.permissions.read ?? '');
    assert.ok(['dmr.ingress.0', 'dmr.ingress.1', 'dmr.ingress.2'].every((queue) => routerRead.test(queue)));
    assert.ok(!routerRead.test('dmr.ingress.3'));
    assert.throws(() => desiredLayout(sampleConfig([]), { routerShards: 0 }), RangeError);
  });

  it('gives denylisted and inactive clients no user but keeps their queues', () => {
    const layout = desiredLayout(
      sampleConfig(['alpha-bot', { id: 'beta-bot', status: 'suspended' }, 'gamma-bot'], {
        denylist: [denyClient('gamma-bot'), { ...denyClient('node-b'), kind: 'node' }],
        links: [link],
      }),
    );
    assert.deepEqual(
      layout.users.map((user) => user.name),
      [ALPHA, NODE_A],
    );
    assert.ok(layout.queues.some((queue) => queue.name === 'dmr.client.gamma-bot'));
    assert.ok(!layout.queues.some((queue) => queue.name === 'dmr.outbound.node-b'));
  });

  it('plans everything on an empty broker, nothing when matching, and conflicts on changed arguments', () => {
    const layout = desiredLayout(sampleConfig(['alpha-bot']));
    const empty: ActualState = {
      vhostExists: false,
      exchanges: new Map(),
      queues: new Map(),
      bindings: new Map(),
      users: new Map([['harness_admin', { tags: ['administrator'] }]]),
      permissions: new Map(),
      userLimits: new Map(),
      shovels: new Map(),
    };
    const first = planChanges(layout, empty);
    assert.equal(first.changes[0]?.kind, 'vhost');
    assert.equal(first.conflicts.length, 0);
    const matching = matchingState(layout);
    matching.users.set('old-bot', { tags: [CLIENT_USER_TAG] });
    const second = planChanges(layout, matching);
    assert.deepEqual(
      second.changes.map((change) => `${change.action} ${change.kind} ${change.name}`),
      ['delete user old-bot'],
    );
    matching.queues.set('dmr.client.alpha-bot', { arguments: { 'x-queue-type': 'quorum' }, durable: true });
    const third = planChanges(layout, matching);
    assert.deepEqual(
      third.conflicts.map((conflict) => conflict.name),
      ['dmr.client.alpha-bot'],
    );
    assert.ok(!third.changes.some((change) => change.name === 'dmr.client.alpha-bot'));
    matching.exchanges.set('dmr.ingress', { type: 'x-consistent-hash', arguments: {} });
    assert.ok(planChanges(layout, matching).conflicts.some((conflict) => conflict.name === 'dmr.ingress'));
  });
});

describe('reconciler users and user limits', () => {
  const layout = desiredLayout(sampleConfig(['alpha-bot'], { links: [link] }));

  it('names users by SPIFFE id from the document’s trust domain', () => {
    const other = desiredLayout({ ...sampleConfig(['alpha-bot'], { links: [link] }), trustDomain: 'dmr.example.ee' });
    assert.deepEqual(
      other.users.map((user) => user.name),
      [
        'spiffe://dmr.example.ee/client/alpha-bot',
        'spiffe://dmr.example.ee/node/node-a',
        'spiffe://dmr.example.ee/node/node-b',
      ],
    );
  });

  it('creates each client and peer user, then its permissions, then its limits; the router gets none', () => {
    const plan = planChanges(layout, {
      ...matchingState(layout),
      users: new Map(),
      permissions: new Map(),
      userLimits: new Map(),
    });
    const users = summary(plan.changes).filter((line) => / (user|permissions|user-limit) /.test(line));
    assert.deepEqual(users, [
      `create user ${ALPHA}`,
      `create permissions ${ALPHA}`,
      `create user-limit ${ALPHA} max-connections`,
      `create user-limit ${ALPHA} max-channels`,
      `create user ${NODE_A}`,
      `create permissions ${NODE_A}`,
      `create user ${NODE_B}`,
      `create permissions ${NODE_B}`,
      `create user-limit ${NODE_B} max-connections`,
      `create user-limit ${NODE_B} max-channels`,
    ]);
    assert.deepEqual(
      plan.changes
        .filter((change) => change.kind === 'user-limit')
        .map((change) => ('value' in change ? change.value : undefined)),
      [10, 100, 10, 100],
    );
  });

  it('updates a limit that differs, and touches no limit it does not own', () => {
    const actual = matchingState(layout);
    actual.userLimits.set(ALPHA, { 'max-connections': 3, 'max-channels': 100 });
    // An operator's limit on the router user, and one on a user the reconciler does not manage.
    actual.userLimits.set(NODE_A, { 'max-connections': 7 });
    actual.users.set('ops-person', { tags: ['management'] });
    actual.userLimits.set('ops-person', { 'max-channels': 1 });
    const plan = planChanges(layout, actual);
    assert.deepEqual(summary(plan.changes), [`update user-limit ${ALPHA} max-connections`]);
    assert.deepEqual(planChanges(layout, matchingState(layout)).changes, []);
  });

  it('keeps the user of a peer whose link left for the drain grace (the peer drains towards us as it), a denylisted one not', () => {
    const unlinked = desiredLayout(sampleConfig(['alpha-bot']));
    const actual = matchingState(layout);
    const drains = new DrainTracker({ graceMs: 1_000 });
    const peerDeletions = (plan: ReturnType<typeof planChanges>): string[] =>
      summary(plan.changes).filter((line) => line === `delete user ${NODE_B}`);
    assert.deepEqual(peerDeletions(planChanges(unlinked, actual, { drains, now: 0 })), []);
    assert.deepEqual(peerDeletions(planChanges(unlinked, actual, { drains, now: 999 })), []);
    assert.deepEqual(peerDeletions(planChanges(unlinked, actual, { drains, now: 1_000 })), [`delete user ${NODE_B}`]);
    // Linked again before the grace ended: the grace starts over at the next removal.
    planChanges(unlinked, actual, { drains, now: 2_000 });
    planChanges(layout, actual, { drains, now: 2_500 });
    assert.deepEqual(peerDeletions(planChanges(unlinked, actual, { drains, now: 3_000 })), []);
    const denied = desiredLayout(sampleConfig(['alpha-bot'], { denylist: [denyNode('node-b')] }));
    assert.deepEqual(peerDeletions(planChanges(denied, actual, { drains: new DrainTracker(), now: 0 })), [
      `delete user ${NODE_B}`,
    ]);
  });

  it('replaces users named by CN (before SPIFFE logins) with users named by SPIFFE id', () => {
    const actual = matchingState(layout);
    for (const user of layout.users) {
      actual.users.delete(user.name);
      actual.permissions.delete(user.name);
      actual.userLimits.delete(user.name);
    }
    // What a broker reconciled before the change holds: the same users under their plain ids.
    actual.users.set('alpha-bot', { tags: [CLIENT_USER_TAG] });
    actual.users.set('node-a', { tags: [ROUTER_USER_TAG] });
    actual.users.set('node-b', { tags: [PEER_USER_TAG] });
    // Not the reconciler's: left alone.
    actual.users.set('someone', { tags: [] });
    const plan = planChanges(layout, actual);
    const lines = summary(plan.changes);
    assert.deepEqual(lines.slice(0, 3), ['delete user alpha-bot', 'delete user node-a', 'delete user node-b']);
    assert.ok(lines.includes(`create user ${ALPHA}`) && lines.includes(`create user ${NODE_A}`));
    assert.ok(!lines.some((line) => line.includes('someone')));
  });
});
