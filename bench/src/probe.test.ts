import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { Probe, SEQ_HEADER, dueByNow, seqOf } from './probe.js';

describe('seqOf', () => {
  it('reads whole non-negative numbers, also as bigint (AMQP long)', () => {
    assert.equal(seqOf({ properties: { headers: { [SEQ_HEADER]: 7 } } } as never), 7);
    assert.equal(seqOf({ properties: { headers: { [SEQ_HEADER]: 7n } } } as never), 7);
  });

  it('is undefined for a missing or malformed header', () => {
    for (const headers of [undefined, {}, { [SEQ_HEADER]: -1 }, { [SEQ_HEADER]: 1.5 }, { [SEQ_HEADER]: '3' }]) {
      assert.equal(seqOf({ properties: { headers } } as never), undefined, JSON.stringify(headers));
    }
  });
});

describe('dueByNow', () => {
  it('follows the rate and never runs ahead of it', () => {
    assert.equal(dueByNow(0, 1000), 0);
    assert.equal(dueByNow(-5, 1000), 0);
    assert.equal(dueByNow(0.999, 1000), 0);
    assert.equal(dueByNow(1, 1000), 1);
    assert.equal(dueByNow(1500, 4000), 6000);
    assert.equal(dueByNow(333, 3), 0);
    assert.equal(dueByNow(334, 3), 1);
  });
});

/**
 * A broker stand-in: every publish is confirmed after `confirmMs` (or nacked
 * when `nack` says so) and delivered to the consumer after `deliverMs` (unless
 * `lose` says so). Just enough of amqplib's channels for Probe.
 */
function fakeBroker(behaviour: {
  confirmMs: number;
  deliverMs: number;
  nack?: (seq: number) => boolean;
  lose?: (seq: number) => boolean;
}): { publisher: ConfirmChannel; consumer: Channel; published: () => number } {
  let onMessage: ((message: ConsumeMessage | null) => void) | undefined;
  let published = 0;
  const publisher = {
    on: () => publisher,
    publish: (
      _exchange: string,
      _routingKey: string,
      content: Buffer,
      options: Options.Publish,
      callback: (error: Error | null) => void,
    ) => {
      published += 1;
      const seq = Number(options.headers?.[SEQ_HEADER]);
      const nacked = behaviour.nack?.(seq) === true;
      setTimeout(() => callback(nacked ? new Error('message nacked') : null), behaviour.confirmMs);
      if (!nacked && behaviour.lose?.(seq) !== true) {
        setTimeout(
          () => onMessage?.({ content, fields: {}, properties: { headers: options.headers } } as ConsumeMessage),
          behaviour.deliverMs,
        );
      }
      return true;
    },
  };
  const consumer = {
    prefetch: async () => undefined,
    consume: async (_queue: string, handler: (message: ConsumeMessage | null) => void) => {
      onMessage = handler;
      return { consumerTag: 'fake' };
    },
    ack: () => undefined,
    cancel: async () => undefined,
  };
  return {
    publisher: publisher as unknown as ConfirmChannel,
    consumer: consumer as unknown as Channel,
    published: () => published,
  };
}

async function probeOn(broker: ReturnType<typeof fakeBroker>): Promise<Probe> {
  const probe = new Probe({
    ...broker,
    queue: 'q',
    target: { exchange: '', routingKey: 'q', properties: () => ({}) },
    body: Buffer.alloc(8),
  });
  await probe.start();
  return probe;
}

describe('Probe.runPoint (against a fake broker)', () => {
  it('at a fixed rate: sends about rate × window, every message arrives, latency ≈ the delivery delay', async () => {
    const broker = fakeBroker({ confirmMs: 1, deliverMs: 20 });
    const probe = await probeOn(broker);
    const point = await probe.runPoint({ load: 200, warmupMs: 100, measureMs: 500, window: 100 });
    assert.equal(point.offered, 200);
    // Timers on a shared machine are late, never early: allow a wide margin below, little above.
    assert.ok(point.sent >= 50 && point.sent <= 102, `sent ${point.sent}`);
    assert.equal(point.latencyMs.n, point.sent);
    assert.equal(point.missing + point.nacked + point.skipped, 0);
    assert.ok(point.latencyMs.min >= 19, `min ${point.latencyMs.min}`);
    assert.equal(probe.inFlight, 0);
    assert.equal(probe.strays, 0);
  });

  it('at max: never more than `window` in flight, and confirms alone do not free a slot', async () => {
    // Confirmed at once, delivered late: a confirm-only window would publish without bound.
    const broker = fakeBroker({ confirmMs: 0, deliverMs: 50 });
    const probe = await probeOn(broker);
    const point = await probe.runPoint({ load: 'max', warmupMs: 0, measureMs: 300, window: 10 });
    // 10 in flight per ≈50 ms round: about 60 in 300 ms, far from unbounded.
    assert.ok(broker.published() <= 10 * Math.ceil(300 / 50) + 10, `published ${broker.published()}`);
    assert.ok(point.received > 0);
    assert.equal(point.offered, null);
  });

  it('counts nacked and missing messages and gives up on the missing after the idle drain', async () => {
    const broker = fakeBroker({
      confirmMs: 1,
      deliverMs: 5,
      nack: (seq) => seq % 10 === 0,
      lose: (seq) => seq % 10 === 5,
    });
    const probe = await probeOn(broker);
    const point = await probe.runPoint({ load: 200, warmupMs: 0, measureMs: 300, window: 100, drainIdleMs: 200 });
    assert.ok(point.nacked > 0 && point.missing > 0, JSON.stringify(point));
    assert.equal(point.nacked + point.missing + point.latencyMs.n, point.sent);
    assert.equal(probe.abandonInFlight(), point.missing);
    assert.equal(probe.inFlight, 0);
  });

  it('skips slots past the backlog cap instead of queueing without bound', async () => {
    const broker = fakeBroker({ confirmMs: 1, deliverMs: 10, lose: () => true });
    const probe = await probeOn(broker);
    const point = await probe.runPoint({
      load: 500,
      warmupMs: 0,
      measureMs: 200,
      window: 100,
      backlogCap: 20,
      drainIdleMs: 50,
    });
    assert.equal(point.sent, 20);
    assert.ok(point.skipped > 0);
    assert.equal(point.achieved, 0);
  });
});
