/** Receiving without a broker: once per id, misaddressed copies, reports, handler failures. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { ConsumeMessage } from 'amqplib';
import { AckBatcher, isDmrError } from '@dmr/core';
import { zeroClientStats, type ClientStats, type DmrClientEvents } from './client-types.js';
import type { ConnectionView, Session } from './connection.js';
import { Receiving, type ReceiveOptions, type ReceivedMessage } from './receiving.js';
import { DELIVERY_REPORT_TYPE, type DeliveryReport } from './report.js';
import { RECIPIENT_HEADER, SENDER_HEADER } from './wire.js';

const ME = 'rik-bot';

/** A session whose consumer hands deliveries to the test and whose channel records how each was settled. */
function fakeSession() {
  const settled: Array<{ tag: number; outcome: 'ack' | 'requeue' | 'dead-letter' }> = [];
  /** Delivered and not settled yet, in tag order: what a `multiple` ack covers. */
  const open: number[] = [];
  let deliver: ((message: ConsumeMessage | null) => void) | undefined;
  const settle = (tag: number, outcome: 'ack' | 'requeue' | 'dead-letter', allUpTo: boolean): void => {
    for (const pending of open.filter((candidate) => (allUpTo ? candidate <= tag : candidate === tag))) {
      open.splice(open.indexOf(pending), 1);
      settled.push({ tag: pending, outcome });
    }
  };
  const channel = {
    ack: (message: ConsumeMessage, allUpTo?: boolean) => settle(message.fields.deliveryTag, 'ack', allUpTo === true),
    nack: (message: ConsumeMessage, allUpTo?: boolean, requeue?: boolean) =>
      settle(message.fields.deliveryTag, requeue === true ? 'requeue' : 'dead-letter', allUpTo === true),
  };
  const consumer = {
    prefetch: () => Promise.resolve(),
    consume: (_queue: string, onMessage: (message: ConsumeMessage | null) => void) => {
      deliver = onMessage;
      return Promise.resolve({ consumerTag: 'consumer-1' });
    },
    cancel: () => Promise.resolve(),
  };
  const session = {
    seq: 1,
    alive: true,
    consumer,
    acks: new AckBatcher<ConsumeMessage>(channel),
    consumerTag: undefined,
  } as unknown as Session;
  const push = (message: ConsumeMessage): void => {
    assert.ok(deliver !== undefined, 'not consuming');
    open.push(message.fields.deliveryTag);
    deliver(message);
  };
  return { session, settled, push };
}

let tags = 0;

function delivery(options: {
  id?: string;
  to?: string;
  type?: string;
  body?: Buffer;
  headers?: Record<string, unknown>;
}): ConsumeMessage {
  return {
    content: options.body ?? Buffer.from('tere'),
    fields: { deliveryTag: ++tags, redelivered: false, exchange: 'dmr.delivery', routingKey: ME },
    properties: {
      messageId: options.id ?? randomUUID(),
      type: options.type ?? 'ChatMessage',
      timestamp: 1_800_000_000,
      headers: { [RECIPIENT_HEADER]: options.to ?? ME, [SENDER_HEADER]: 'ria-bot', ...options.headers },
    },
  } as unknown as ConsumeMessage;
}

function setup(resent: (id: string) => boolean = () => false) {
  const fake = fakeSession();
  const connection: ConnectionView = {
    id: ME,
    node: 'node-a',
    userId: `spiffe://dmr.test/client/${ME}`,
    state: 'open',
    session: fake.session,
    checkCertificate: () => Promise.resolve(),
    ownKeys: () => [],
  };
  const events = new EventEmitter<DmrClientEvents>();
  const stats: ClientStats = zeroClientStats();
  const receiving = new Receiving({
    connection,
    sending: { wasResent: (id) => resent(id) },
    options: { url: 'amqps://127.0.0.1:5671', node: 'node-a', id: ME, tls: { cert: '', key: '', ca: '' } },
    events,
    stats,
    closing: () => false,
  });
  return { ...fake, receiving, events, stats };
}

async function receiveAll(
  messages: ConsumeMessage[],
  options: ReceiveOptions & { handler?: (message: ReceivedMessage) => void | Promise<void> } = {},
  resent?: (id: string) => boolean,
) {
  const context = setup(resent);
  const handled: ReceivedMessage[] = [];
  const errors: Error[] = [];
  const reports: DeliveryReport[] = [];
  const duplicates: string[] = [];
  context.events.on('error', (error) => errors.push(error));
  context.events.on('report', (report) => reports.push(report));
  context.events.on('duplicate', (id) => duplicates.push(id));
  await context.receiving.receive(async (message) => {
    handled.push(message);
    await options.handler?.(message);
  }, options);
  for (const message of messages) context.push(message);
  // stop() waits for every handler under way and flushes their acks.
  await context.receiving.stop();
  return { ...context, handled, errors, reports, duplicates };
}

describe('Receiving', () => {
  it('hands each message id to the handler once and acks the copies as duplicates', async () => {
    const id = randomUUID();
    const first = delivery({ id });
    const copy = delivery({ id });
    const { handled, settled, duplicates, stats } = await receiveAll([first, copy]);
    assert.equal(handled.length, 1);
    assert.equal(handled[0]?.from, 'ria-bot');
    assert.equal(handled[0]?.to, ME);
    assert.deepEqual(duplicates, [id]);
    assert.deepEqual(
      settled.map((entry) => entry.outcome),
      ['ack', 'ack'],
    );
    assert.equal(stats.handled, 1);
    assert.equal(stats.duplicates, 1);
  });

  it('hands over a traceparent only when it is W3C version 00', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const { handled } = await receiveAll([
      delivery({ headers: { traceparent } }),
      delivery({ headers: { traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01` } }),
      delivery({}),
    ]);
    assert.deepEqual(
      handled.map((message) => message.traceparent),
      [traceparent, undefined, undefined],
    );
  });

  it('dead-letters a message for another client without calling the handler (MESSAGE_MISADDRESSED)', async () => {
    const { handled, settled, errors, stats } = await receiveAll([delivery({ to: 'other-bot' })]);
    assert.equal(handled.length, 0);
    assert.deepEqual(
      settled.map((entry) => entry.outcome),
      ['dead-letter'],
    );
    assert.equal(stats.misaddressed, 1);
    assert.ok(errors.some((error) => isDmrError(error) && error.code === 'MESSAGE_MISADDRESSED'));
  });

  it('turns reports into report events, except MESSAGE_REPLAYED about its own re-send', async () => {
    const replayed = randomUUID();
    const report = (messageId: string, reason: string) =>
      delivery({
        type: DELIVERY_REPORT_TYPE,
        body: Buffer.from(
          JSON.stringify({ messageId, status: 'rejected', reason, detail: '', node: 'node-a', at: new Date() }),
        ),
      });
    const refused = randomUUID();
    const { handled, reports, stats, settled } = await receiveAll(
      [report(replayed, 'MESSAGE_REPLAYED'), report(refused, 'POLICY_DENIED')],
      {},
      (id) => id === replayed,
    );
    assert.equal(handled.length, 0);
    assert.deepEqual(
      reports.map((entry) => [entry.messageId, entry.reason]),
      [[refused, 'POLICY_DENIED']],
    );
    assert.equal(stats.replayReportsSuppressed, 1);
    assert.deepEqual(
      settled.map((entry) => entry.outcome),
      ['ack', 'ack'],
    );
  });

  it('requeues when the handler throws, or dead-letters when onError says so', async () => {
    const fail = () => {
      throw new Error('not now');
    };
    const requeued = await receiveAll([delivery({})], { handler: fail });
    assert.deepEqual(
      requeued.settled.map((entry) => entry.outcome),
      ['requeue'],
    );
    const deadLettered = await receiveAll([delivery({})], { handler: fail, onError: 'dead-letter' });
    assert.deepEqual(
      deadLettered.settled.map((entry) => entry.outcome),
      ['dead-letter'],
    );
    assert.equal(deadLettered.stats.handled, 0);
  });
});
