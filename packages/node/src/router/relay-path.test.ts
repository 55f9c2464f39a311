/**
 * The relay path without a broker: a channel that confirms every publish.
 * A message from a peer is verified before anything else, delivered once
 * with this node's final hop entry, and a second copy is dropped without a
 * report; a refusal ends in the shared tail.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NodeConfig } from '@dmr/contract';
import type { PolicyDecider, PolicyDecision } from '@dmr/policy';
import type { ConsumeMessage, Options } from 'amqplib';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { parseHopChain } from '../message/hop-chain.js';
import { originated, testMesh, type TestMesh } from '../message/mesh-test-support.js';
import { SenderRateLimit } from '../message/rate-limit.js';
import { ReplayGuard } from '../message/replay.js';
import { NOW, testConfig, testMessage } from '../message/test-support.js';
import { DELIVERY_EXCHANGE, REJECTED_EXCHANGE, relayHeaderCap, type SignableMessage } from '@dmr/contract';
import type { AuditEvent } from './audit.js';
import { REASON_HEADER, routingContext } from './envelope.js';
import { MeshContextBuilder } from './mesh-context.js';
import { RouterMetrics } from './metrics.js';
import { Outcomes, type Session } from './outcome.js';
import { RelayPath } from './relay-path.js';
import type { RoutingState } from './origin-path.js';

/** The certificates of the test mesh are valid from now, not from the fixtures' fixed NOW. */
const CLOCK = Date.now();

interface Published {
  exchange: string;
  routingKey: string;
  options: Options.Publish;
}

function harness(): {
  session: Session;
  published: Published[];
  acked: ConsumeMessage[];
  audited: AuditEvent[];
  outcome: Outcomes;
  metrics: RouterMetrics;
} {
  const published: Published[] = [];
  const acked: ConsumeMessage[] = [];
  const audited: AuditEvent[] = [];
  // Only what the tail touches: a channel that confirms every publish, and the ack batcher.
  const session = {
    alive: true,
    returned: new Set<string>(),
    inflightIds: new Set<string>(),
    channel: {
      publish: (
        exchange: string,
        routingKey: string,
        _content: Buffer,
        options: Options.Publish,
        confirmed: (error: unknown) => void,
      ) => {
        published.push({ exchange, routingKey, options });
        confirmed(null);
        return true;
      },
    },
    acks: { ack: (message: ConsumeMessage) => acked.push(message) },
    // Nothing is held: every destination takes what it is given.
    holds: { blocks: () => false, holding: () => false, keys: [] },
  } as unknown as Session;
  const metrics = new RouterMetrics(new Registry());
  const outcome = new Outcomes({
    nodeId: 'dmr-tallinn',
    now: () => CLOCK,
    logger: pino({ level: 'silent' }),
    metrics,
    audit: {
      append: (event) => {
        audited.push(event);
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    },
  });
  return { session, published, acked, audited, outcome, metrics };
}

const allow: PolicyDecider = {
  mode: 'wasm',
  decide: () => Promise.resolve({ allow: true, reasons: [], revision: '1' } satisfies PolicyDecision),
  close: () => Promise.resolve(),
} as unknown as PolicyDecider;

/** The path as tallinn runs it, settling through `outcome`. */
function relayPath(outcome: Outcomes, metrics: RouterMetrics): RelayPath {
  return new RelayPath({
    nodeId: 'dmr-tallinn',
    now: () => CLOCK,
    policy: allow,
    logger: pino({ level: 'silent' }),
    metrics,
    outcome,
  });
}

function delivery(message: SignableMessage): ConsumeMessage {
  return {
    ...message,
    content: Buffer.from(message.content),
    fields: { deliveryTag: 1, redelivered: false, exchange: 'dmr.mesh-ingress', routingKey: '' },
  } as unknown as ConsumeMessage;
}

describe('RelayPath', () => {
  let mesh: TestMesh;
  let state: RoutingState;

  before(async () => {
    mesh = await testMesh(['dmr-tallinn', 'dmr-tartu']);
    const tallinn = mesh.node('dmr-tallinn');
    const config = {
      ...testConfig(),
      apiVersion: 'dmr.ee/v1',
      kind: 'NodeConfig',
      revision: 7,
      issuedAt: new Date(NOW).toISOString(),
      clients: [{ id: 'police-bot', organisation: 'org', roles: [], labels: {}, status: 'active' }],
      links: [{ peer: 'dmr-tartu', amqpsEndpoint: 'amqps://tartu:5671', cost: 1, peerCertificates: [] }],
      routes: [{ destination: 'dmr-tartu', reachable: true, nextHop: 'dmr-tartu', cost: 1 }],
    } as NodeConfig;
    state = {
      context: routingContext(config),
      guard: new ReplayGuard({ windowMs: config.limits.dedupWindowMs, maxEntries: 100 }),
      rate: new SenderRateLimit({ ratePerSecond: 100, burst: 100 }),
      mesh: new MeshContextBuilder().build(config, {
        certificateChainPem: tallinn.chainPem,
        privateKeyPem: tallinn.privateKeyPem,
        trustBundlePem: mesh.ca.trustBundlePem(),
      }),
    };
  });
  after(() => mesh.cleanup());

  it('delivers a verified message once, with its final entry, and drops the second copy without a report', async () => {
    const { session, published, acked, audited, outcome, metrics } = harness();
    const path = relayPath(outcome, metrics);
    const sent = originated(mesh.node('dmr-tartu'), 'dmr-tallinn', new Date(CLOCK - 5), testMessage(), 'edu-bot');
    const first = delivery(sent);
    await path.route(session, first, state);
    assert.deepEqual(
      published.map((publish) => [publish.exchange, publish.routingKey]),
      [[DELIVERY_EXCHANGE, 'police-bot']],
    );
    const delivered = published[0]?.options;
    assert.equal(delivered?.userId, undefined);
    assert.equal(delivered?.headers?.['dmr-sender'], 'edu-bot');
    assert.equal(delivered?.headers?.['dmr-origin'], 'dmr-tartu');
    const chain = parseHopChain(delivered?.headers?.['dmr-hops'], 8);
    assert.ok(chain.ok);
    assert.deepEqual(
      chain.message.map((entry) => [entry.node, entry.to]),
      [
        ['dmr-tartu', 'dmr-tallinn'],
        ['dmr-tallinn', null],
      ],
    );
    assert.deepEqual(
      audited.map((event) => [event.result, event.hops]),
      [['routed', ['dmr-tartu']]],
    );

    const second = delivery(sent);
    await path.route(session, second, state);
    assert.equal(published.length, 1, 'nothing published for the copy: no delivery, no report');
    assert.deepEqual(acked, [first, second]);
    assert.equal(audited[1]?.result, 'duplicate');
    assert.equal((await metrics.duplicatesDropped.get()).values[0]?.value, 1);
  });

  it('refuses a message whose user_id is no link peer (PEER_UNKNOWN): rejected copy, audit, ack', async () => {
    const { session, published, acked, audited, outcome, metrics } = harness();
    const path = relayPath(outcome, metrics);
    const sent = originated(mesh.node('dmr-tartu'), 'dmr-tallinn', new Date(CLOCK - 5), testMessage(), 'edu-bot');
    const forged = delivery({
      ...sent,
      properties: { ...sent.properties, userId: 'spiffe://dmr.test/node/dmr-narva' },
    });
    await path.route(session, forged, state);
    // The sender edu-bot is homed on dmr-tartu: its report goes back over the link, signed by this node.
    assert.deepEqual(published.map((publish) => publish.exchange).sort(), ['', REJECTED_EXCHANGE].sort());
    const rejected = published.find((publish) => publish.exchange === REJECTED_EXCHANGE);
    assert.equal(rejected?.options.headers?.[REASON_HEADER], 'PEER_UNKNOWN');
    const report = published.find((publish) => publish.exchange === '');
    assert.equal(report?.routingKey, 'dmr.outbound.dmr-tartu');
    assert.equal(report?.options.type, 'dmr.DeliveryReport');
    assert.equal(report?.options.headers?.['dmr-sender'], 'dmr-tallinn');
    assert.equal(report?.options.headers?.['dmr-recipient'], 'edu-bot');
    assert.equal(report?.options.userId, 'spiffe://dmr.test/node/dmr-tallinn');
    assert.equal(audited[0]?.result, 'rejected');
    assert.equal(audited[0]?.reason, 'PEER_UNKNOWN');
    assert.deepEqual(acked, [forged]);
  });

  it('refuses a message whose header table exceeds the relay cap (HEADERS_TOO_LARGE) before verifying anything', async () => {
    const { session, published, acked, audited, outcome, metrics } = harness();
    const path = relayPath(outcome, metrics);
    const sent = originated(mesh.node('dmr-tartu'), 'dmr-tallinn', new Date(CLOCK - 5), testMessage(), 'edu-bot');
    // One byte over the cap (the origin's limit plus one hop entry's allowance per link) in a single header.
    const cap = relayHeaderCap(state.context.message.limits.maxHeaderBytes, state.mesh?.maxHops);
    const bloated = delivery({
      ...sent,
      properties: { ...sent.properties, headers: { ...sent.properties.headers, 'x-padding': 'p'.repeat(cap + 1) } },
    });
    await path.route(session, bloated, state);
    const rejected = published.find((publish) => publish.exchange === REJECTED_EXCHANGE);
    assert.equal(rejected?.options.headers?.[REASON_HEADER], 'HEADERS_TOO_LARGE');
    assert.ok(!published.some((publish) => publish.exchange === DELIVERY_EXCHANGE), 'nothing delivered');
    assert.equal(audited[0]?.reason, 'HEADERS_TOO_LARGE');
    assert.deepEqual(acked, [bloated]);
  });
});
