import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
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
    // The mocked Date (see onMockedClock): the probe's schedule and the fake broker's delays read one clock.
    now: () => Date.now(),
  });
  await probe.start();
  return probe;
}

/**
 * Runs `work` on the test runner's mocked clock (setTimeout and Date, from 0), advanced 1 ms at a time; each
 * step lets the callbacks and promises it released run before the next. The probe's 1 ms schedule and the
 * fake broker's delays then keep time exactly, however loaded the machine, so the counts below are exact.
 */
async function onMockedClock<T>(t: TestContext, work: () => Promise<T>): Promise<T> {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  let settled = false;
  const running = work().finally(() => (settled = true));
  // Nothing else of this process's work is waited on here: setImmediate is not mocked, so it drains the microtasks.
  while (!settled) {
    t.mock.timers.tick(1);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return running;
}

describe('Probe.runPoint (against a fake broker, on a mocked clock)', () => {
  it('at a fixed rate: sends rate × window, every message arrives, latency = the delivery delay', async (t) => {
    const broker = fakeBroker({ confirmMs: 1, deliverMs: 20 });
    const { probe, point } = await onMockedClock(t, async () => {
      const probe = await probeOn(broker);
      return { probe, point: await probe.runPoint({ load: 200, warmupMs: 100, measureMs: 500, window: 100 }) };
    });
    assert.equal(point.offered, 200);
    assert.equal(point.sent, 100, '200/s for 500 ms');
    assert.equal(point.latencyMs.n, point.sent);
    assert.equal(point.missing + point.nacked + point.skipped, 0);
    assert.deepEqual([point.latencyMs.min, point.latencyMs.max], [20, 20]);
    assert.equal(probe.inFlight, 0);
    assert.equal(probe.strays, 0);
  });

  it('at max: never more than `window` in flight, and confirms alone do not free a slot', async (t) => {
    // Confirmed at once, delivered late: a confirm-only window would publish without bound.
    const broker = fakeBroker({ confirmMs: 0, deliverMs: 50 });
    const point = await onMockedClock(t, async () =>
      (await probeOn(broker)).runPoint({ load: 'max', warmupMs: 0, measureMs: 300, window: 10 }),
    );
    // 10 in flight per 50 ms round, 6 rounds in 300 ms.
    assert.equal(broker.published(), 60);
    assert.equal(point.received, 50, 'the last round arrives as the window closes');
    assert.equal(point.offered, null);
  });

  it('counts nacked and missing messages and gives up on the missing after the idle drain', async (t) => {
    const broker = fakeBroker({
      confirmMs: 1,
      deliverMs: 5,
      nack: (seq) => seq % 10 === 0,
      lose: (seq) => seq % 10 === 5,
    });
    const { probe, point } = await onMockedClock(t, async () => {
      const probe = await probeOn(broker);
      const options = { load: 200, warmupMs: 0, measureMs: 300, window: 100, drainIdleMs: 200 };
      return { probe, point: await probe.runPoint(options) };
    });
    // 59 sent (the 60th is due as the window closes): seqs 0, 10, … 50 nacked, 5, 15, … 55 lost.
    assert.deepEqual([point.sent, point.nacked, point.missing, point.latencyMs.n], [59, 6, 6, 47]);
    assert.equal(probe.abandonInFlight(), point.missing);
    assert.equal(probe.inFlight, 0);
  });

  it('skips slots past the backlog cap instead of queueing without bound', async (t) => {
    const broker = fakeBroker({ confirmMs: 1, deliverMs: 10, lose: () => true });
    const point = await onMockedClock(t, async () =>
      (await probeOn(broker)).runPoint({
        load: 500,
        warmupMs: 0,
        measureMs: 200,
        window: 100,
        backlogCap: 20,
        drainIdleMs: 50,
      }),
    );
    assert.equal(point.sent, 20);
    assert.equal(point.skipped, 99 - 20, '99 slots due in 200 ms at 500/s, 20 of them sent');
    assert.equal(point.achieved, 0);
  });
});
