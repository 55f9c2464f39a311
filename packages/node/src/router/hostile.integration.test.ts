/**
 * Hostile input, property-tested against a real node (one harness broker
 * and one in-process router for the file). fast-check builds AMQP properties
 * and header tables of every field type RabbitMQ accepts (b B s u I i l f d D
 * S x t T V A F), sizes up to past amqplib's 64 KiB table buffer, nesting,
 * repeated keys, `__proto__`, CC/BCC in any case, forged DMR headers and
 * shortstr properties that are not UTF-8. amqplib cannot encode most of
 * these, so each message is written as raw frames (src/testing/raw-amqp.ts)
 * on a channel of the sender's own connection, followed by a synchronous
 * round trip on that channel.
 *
 * The invariant, message by message: exactly one of
 * - delivered: to its addressed recipient only, with allowlisted headers;
 * - refused: one decision with a catalogue reason, DMR's metadata only in
 *   `dmr.rejected`, a report to the sender when it had a user_id;
 * - dead-lettered (expired in the ingress before the router took it): in
 *   `dmr.rejected` with an x-death, no route decision, one dead-letter
 *   record, a MESSAGE_EXPIRED report to the sender when it had a user_id
 *   (and was not a report itself);
 * or the broker refused the publish itself (the sender's channel closed:
 * the sender knows), and the router stays healthy throughout.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Channel } from 'amqplib';
import fc from 'fast-check';
import { ERROR_CATALOGUE } from '@dmr/core';
import { waitFor } from '@dmr/core/testing';
import { NodeFixture, clientUser, parseReport, type PeekedMessage } from '../testing/node-fixture.js';
import { rawPublish, type RawProperties, type WireTable, type WireValue } from '../testing/raw-amqp.js';

/** ria-bot's broker user: the only user_id the broker accepts on its connection. */
const RIA = clientUser('ria-bot');

const CLIENTS = [
  { id: 'ria-bot', organisation: 'ria', roles: ['bot'] },
  { id: 'ria-desk', organisation: 'ria', roles: ['desk'] },
  { id: 'rik-bot', organisation: 'rik', roles: ['bot'] },
  { id: 'old-bot', organisation: 'ppa', status: 'suspended' as const },
  { id: 'far-bot', organisation: 'ria', homeNode: 'node-far' },
];
/** Every queue a message could wrongly land in besides the sender's own. */
const OTHER_QUEUES = ['dmr.client.ria-desk', 'dmr.client.rik-bot', 'dmr.client.old-bot'];
const SENDER_QUEUE = 'dmr.client.ria-bot';
const RUNS = 150;

/** What a delivered copy may carry: the allowlist, DMR's headers, and the quorum queue's own delivery count. */
const FORWARDABLE =
  /^(dmr-(recipient|version|sender|origin|hops|e2e-content-type)|traceparent|tracestate|app-.*|x-delivery-count)$/;

function scalar(): fc.Arbitrary<WireValue> {
  return fc.oneof(
    fc.string({ unit: 'binary', maxLength: 30 }).map((v) => ({ t: 'S' as const, v })),
    fc.uint8Array({ maxLength: 30 }).map((v) => ({ t: 'S' as const, v: Buffer.from(v) })),
    fc.uint8Array({ maxLength: 30 }).map((v) => ({ t: 'x' as const, v: Buffer.from(v) })),
    fc.integer({ min: -128, max: 127 }).map((v) => ({ t: 'b' as const, v })),
    fc.integer({ min: 0, max: 255 }).map((v) => ({ t: 'B' as const, v })),
    fc.integer({ min: -32768, max: 32767 }).map((v) => ({ t: 's' as const, v })),
    fc.integer({ min: 0, max: 65535 }).map((v) => ({ t: 'u' as const, v })),
    fc.integer().map((v) => ({ t: 'I' as const, v })),
    fc.integer({ min: 0, max: 0xffffffff }).map((v) => ({ t: 'i' as const, v })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v) => ({ t: 'l' as const, v })),
    fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }).map((v) => ({ t: 'T' as const, v })),
    fc.float({ noNaN: true }).map((v) => ({ t: 'f' as const, v })),
    fc.double({ noNaN: true }).map((v) => ({ t: 'd' as const, v })),
    fc
      .record({ places: fc.integer({ min: 0, max: 255 }), digits: fc.integer({ min: 0, max: 0xffffffff }) })
      .map((d) => ({ t: 'D' as const, ...d })),
    fc.boolean().map((v) => ({ t: 't' as const, v })),
    fc.constant({ t: 'V' as const }),
  );
}

const value: fc.Arbitrary<WireValue> = fc.letrec<{ value: WireValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar(),
    fc.array(tie('value'), { maxLength: 3 }).map((v) => ({ t: 'A' as const, v })),
    fc
      .array(fc.tuple(fc.string({ maxLength: 8 }), tie('value')), { maxLength: 3 })
      .map((v) => ({ t: 'F' as const, v })),
  ),
})).value;

/** Header names a hostile client would try. */
const hostileName = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom(
    'CC',
    'BCC',
    'cc',
    'Bcc',
    '__proto__',
    'constructor',
    '!',
    'dmr-sender',
    'dmr-origin',
    'dmr-hops',
    'dmr-sig',
    'dmr-recipient',
    'dmr-version',
    'x-death',
    'x-first-death-reason',
    'traceparent',
    'tracestate',
    'dmr-e2e-content-type',
    'app-ticket',
    'app-Bad',
  ),
);

/** A value for a routing header: mostly the array of strings RabbitMQ routes by. */
const routingValue: fc.Arbitrary<WireValue> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .array(fc.constantFrom('old-bot', 'dmr.client.old-bot', 'dmr.audit', 'dmr.ingress.0', 'dmr.rejected'), {
        minLength: 1,
        maxLength: 3,
      })
      .map((names) => ({ t: 'A' as const, v: names.map((v) => ({ t: 'S' as const, v })) })),
  },
  value,
);

const shortstr = fc.oneof(
  fc.string({ maxLength: 40 }),
  // Not UTF-8: decodes with replacement characters, which can re-encode past 255 bytes.
  fc.uint8Array({ minLength: 1, maxLength: 255 }).map((bytes) => Buffer.from(bytes)),
);

interface Hostile {
  properties: RawProperties;
  body: Buffer;
}

function hostileMessage(now: number): fc.Arbitrary<Hostile> {
  const recipient = fc.constantFrom('rik-bot', 'ria-desk', 'old-bot', 'far-bot', 'nobody-bot', 'Not An Id', '');
  const headers: fc.Arbitrary<WireTable> = fc
    .record({
      recipient: fc.option(recipient, { nil: undefined, freq: 8 }),
      version: fc.option(
        fc.constantFrom<WireValue>({ t: 'b', v: 1 }, { t: 'S', v: '1' }, { t: 'I', v: 2 }, { t: 'd', v: 1.0 }),
        { nil: undefined, freq: 8 },
      ),
      extra: fc.array(
        fc.oneof(fc.tuple(hostileName, value), fc.tuple(fc.constantFrom('CC', 'BCC', 'cc', 'bCc'), routingValue)),
        { maxLength: 4 },
      ),
      // One large entry at most: the whole header frame must still fit the negotiated frame_max (128 KiB).
      pad: fc.option(
        fc
          .tuple(fc.constantFrom('app-pad', 'pad'), fc.integer({ min: 1_000, max: 70_000 }))
          .map(([name, size]): [string, WireValue] => [name, { t: 'S', v: 'x'.repeat(size) }]),
        { nil: undefined, freq: 4 },
      ),
    })
    .map(({ recipient: to, version, extra, pad }) => [
      ...(to === undefined ? [] : ([['dmr-recipient', { t: 'S', v: to }]] as WireTable)),
      ...(version === undefined ? [] : ([['dmr-version', version]] as WireTable)),
      ...extra,
      ...(pad === undefined ? [] : [pad]),
    ]);
  const seconds = Math.floor(now / 1000);
  return fc.record({
    properties: fc.record(
      {
        messageId: fc.oneof(
          { weight: 6, arbitrary: fc.constant(undefined).map(() => randomUUID()) },
          fc.constant(undefined).map(() => randomUUID().toUpperCase()),
          shortstr,
        ),
        userId: fc.constantFrom(RIA, RIA, RIA, undefined),
        type: fc.oneof(
          { weight: 4, arbitrary: fc.constant('ChatMessage') },
          fc.constant('dmr.DeliveryReport'),
          shortstr,
        ),
        timestamp: fc.oneof(
          { weight: 6, arbitrary: fc.constant(seconds) },
          fc.integer({ min: 0, max: 2 ** 40 }),
          fc.constant(seconds - 3_600),
        ),
        // No short TTL that could expire after delivery, in a later run's window: 0 (may expire in the ingress
        // queue: dead-lettered), a minute, over the cap, or not a number (RabbitMQ refuses it at publish).
        expiration: fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom('60000', '0', '99999999999') },
          shortstr.filter((text) => !/^[0-9]+$/.test(text.toString())),
        ),
        headers,
        contentType: shortstr,
        contentEncoding: shortstr,
        correlationId: shortstr,
        replyTo: shortstr,
        appId: shortstr,
        priority: fc.integer({ min: 0, max: 255 }),
        deliveryMode: fc.constantFrom(1, 2),
      },
      { requiredKeys: ['messageId', 'type', 'timestamp', 'headers'] },
    ),
    body: fc.uint8Array({ maxLength: 2_048 }).map((bytes) => Buffer.from(bytes)),
  }) as fc.Arbitrary<Hostile>;
}

/**
 * Half of the inputs keep the contract (valid id, sender, type, time, recipient, version) and stay hostile
 * only where a well-formed message may be: odd bytes in the other properties, strange extra headers.
 */
function benign(message: Hostile): Hostile {
  const extra = (message.properties.headers ?? []).filter(
    ([name]) => !/^(cc|bcc)$/i.test(name) && !name.startsWith('dmr-') && !name.includes('pad'),
  );
  const properties: RawProperties = {
    ...message.properties,
    messageId: randomUUID(),
    userId: RIA,
    type: 'ChatMessage',
    timestamp: Math.floor(Date.now() / 1000),
    expiration: '60000',
    headers: [
      ['dmr-recipient', { t: 'S', v: extra.length % 2 === 0 ? 'rik-bot' : 'ria-desk' }],
      ['dmr-version', { t: 'b', v: 1 }],
      ...extra,
    ],
  };
  return { ...message, properties };
}

type Outcome = 'delivered' | 'refused' | 'dead-lettered' | 'refused by the broker';

describe('hostile input (property test on a real node)', () => {
  let node: NodeFixture;

  before(async () => {
    node = await NodeFixture.start({ label: 'hostile', clients: CLIENTS, grants: [{ from: 'ria', to: 'rik' }] });
  });

  after(async () => {
    await node?.stop();
  });

  it('every message ends in exactly one outcome, and the router stays healthy', async () => {
    const sender = await node.client('ria-bot');
    let channel: Channel = await sender.connection.createChannel();
    channel.on('error', () => undefined);
    const tally = new Map<string, number>();
    const count = (key: string): void => void tally.set(key, (tally.get(key) ?? 0) + 1);
    let tried = 0;

    await fc.assert(
      fc.asyncProperty(fc.tuple(fc.boolean(), hostileMessage(Date.now())), async ([keep, hostile]) => {
        const { properties, body } = keep ? benign(hostile) : hostile;
        tried += 1;
        const seen = node.logLines.length;
        try {
          await rawPublish(sender.connection, channel, 'dmr.ingress', properties, body, SENDER_QUEUE);
        } catch {
          // The broker closed the channel (e.g. an expiration it cannot parse, CC that is not an array).
          count('refused by the broker');
          channel = await sender.connection.createChannel();
          channel.on('error', () => undefined);
          return;
        }
        const decision = async (): Promise<Record<string, unknown> | undefined> =>
          node.logLines.slice(seen).find((line) => line.msg === 'route');
        let decided: Record<string, unknown> | undefined;
        let rejected: PeekedMessage[] = [];
        const deadline = Date.now() + 20_000;
        const isDeadLetter = (copy: PeekedMessage): boolean => Array.isArray(copy.properties.headers?.['x-death']);
        while (Date.now() < deadline) {
          decided = await decision();
          if (decided !== undefined) break;
          // A refusal's copy is confirmed before its decision is logged: keep it and wait for the decision.
          rejected = [...rejected, ...(await node.take('dmr.rejected'))];
          if (rejected.some(isDeadLetter)) break;
          await sleep(20);
        }
        let outcome: Outcome;
        const delivered = new Map<string, PeekedMessage[]>();
        for (const queue of OTHER_QUEUES) delivered.set(queue, await node.take(queue));
        const reports = await node.take(SENDER_QUEUE);
        if (decided === undefined) {
          assert.equal(rejected.length, 1, 'no decision: dead-lettered, once');
          assert.ok(rejected.every(isDeadLetter), 'a dead letter carries x-death');
          // The routers take it from the dead-letter reports too: its one line comes after any report it sends.
          const settled = (): Record<string, unknown> | undefined =>
            node.logLines.slice(seen).find((line) => line.msg === 'dead-letter');
          await waitFor('the dead letter settled', () => settled() !== undefined, { timeoutMs: 10_000 });
          const all = [...reports, ...(await node.take(SENDER_QUEUE))];
          if (properties.userId === RIA && properties.type !== 'dmr.DeliveryReport') {
            assert.equal(all.length, 1, 'a report to the sender');
            const report = parseReport({ content: Buffer.from(all[0]?.payload ?? '') });
            assert.equal(report.reason, 'MESSAGE_EXPIRED');
            assert.equal(settled()?.report, 'confirmed');
          } else assert.equal(all.length, 0, 'nobody to report to without user_id, never about a report');
          outcome = 'dead-lettered';
          count('dead-lettered');
        } else {
          rejected = [...rejected, ...(await node.take('dmr.rejected'))];
          assert.equal(node.logLines.slice(seen).filter((line) => line.msg === 'route').length, 1, 'one decision');
          const to = properties.headers?.find(([name]) => name === 'dmr-recipient')?.[1];
          if (decided.result === 'routed') {
            outcome = 'delivered';
            count('delivered');
            const recipient = `dmr.client.${String(decided.recipient)}`;
            assert.equal(to?.t === 'S' ? `dmr.client.${String(to.v)}` : undefined, recipient);
            for (const [queue, messages] of delivered) {
              assert.equal(messages.length, queue === recipient ? 1 : 0, `${queue}: ${messages.length}`);
            }
            const copy = delivered.get(recipient)?.[0];
            assert.equal(copy?.properties.message_id, decided.messageId);
            for (const name of Object.keys(copy?.properties.headers ?? {})) {
              assert.match(name, FORWARDABLE, `header ${name} was forwarded`);
            }
            assert.equal(rejected.length, 0);
            assert.equal(reports.length, 0);
          } else {
            outcome = 'refused';
            const reason = String(decided.reason);
            assert.ok(reason in ERROR_CATALOGUE, reason);
            count(`refused ${reason}`);
            for (const [queue, messages] of delivered) assert.equal(messages.length, 0, queue);
            assert.equal(rejected.length, 1, 'one rejected copy');
            const copy = rejected[0] as PeekedMessage;
            assert.equal(copy.properties.headers?.['dmr-reason'], reason);
            assert.equal(copy.payload, '', 'no body in dmr.rejected');
            for (const name of Object.keys(copy.properties.headers ?? {})) {
              assert.ok(name.startsWith('dmr-') || name === 'x-delivery-count', `header ${name} in dmr.rejected`);
            }
            if (properties.userId === RIA) {
              assert.equal(reports.length, 1, 'a report to the sender');
              assert.equal(parseReport({ content: Buffer.from(reports[0]?.payload ?? '') }).reason, reason);
            } else assert.equal(reports.length, 0, 'nobody to report to without user_id');
          }
        }
        assert.ok(outcome);
      }),
      { numRuns: RUNS, endOnFailure: true },
    );

    // Healthy: still running on its first connection, and a plain message still goes through.
    const [handle] = node.routers;
    assert.equal(handle?.router.state, 'running');
    const reconnects = (await handle?.registry.getSingleMetricAsString('dmr_router_reconnects_total')) ?? '';
    assert.match(reconnects, /dmr_router_reconnects_total 0\b/);
    const rik = await node.client('rik-bot');
    const id = await sender.send({ to: 'rik-bot' });
    assert.equal((await rik.next()).properties.messageId, id);

    const summary = [...tally.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    console.log(`hostile inputs tried: ${tried}`);
    for (const [key, n] of summary) console.log(`  ${key}: ${n}`);
    assert.equal(
      summary.reduce((sum, [, n]) => sum + n, 0),
      tried,
      'each input counted in exactly one outcome',
    );
    // Half the inputs keep the contract: if most never reach the router (e.g. a user_id the broker refuses
    // after a contract change), the property holds vacuously. Demand that the router judged a fair share.
    const byBroker = summary.find(([key]) => key === 'refused by the broker')?.[1] ?? 0;
    const delivered = summary.find(([key]) => key === 'delivered')?.[1] ?? 0;
    assert.ok(byBroker < tried / 2, `${byBroker} of ${tried} inputs never reached the router`);
    assert.ok(delivered >= tried / 5, `only ${delivered} of ${tried} inputs were delivered`);
  });
});
