import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AckBatcher, type Delivery } from './ack-batcher.js';

interface Message extends Delivery {
  id: number;
}

/** A broker channel's view: the unsettled deliveries, and which ones a frame settled. */
class BrokerChannel {
  readonly unsettled = new Set<number>();
  readonly acked: number[] = [];
  readonly nacked: Array<{ tag: number; requeue: boolean }> = [];
  frames = 0;

  deliver(tag: number): Message {
    this.unsettled.add(tag);
    return { id: tag, fields: { deliveryTag: tag } };
  }

  ack(message: Message, allUpTo = false): void {
    this.frames += 1;
    const tag = message.fields.deliveryTag;
    assert.ok(this.unsettled.has(tag), `ack of unknown tag ${tag}`);
    const settled = allUpTo ? [...this.unsettled].filter((other) => other <= tag) : [tag];
    for (const other of settled) {
      this.unsettled.delete(other);
      this.acked.push(other);
    }
  }

  nack(message: Message, allUpTo = false, requeue = true): void {
    this.frames += 1;
    assert.equal(allUpTo, false);
    const tag = message.fields.deliveryTag;
    assert.ok(this.unsettled.delete(tag), `nack of unknown tag ${tag}`);
    this.nacked.push({ tag, requeue });
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('AckBatcher', () => {
  it('acks a finished run with one multiple ack at the end of the turn', async () => {
    const broker = new BrokerChannel();
    const batcher = new AckBatcher(broker);
    const messages = [1, 2, 3, 4].map((tag) => broker.deliver(tag));
    for (const message of messages) batcher.track(message);
    for (const message of messages) batcher.ack(message);
    assert.equal(broker.frames, 0, 'nothing before the turn ends');
    await turn();
    assert.equal(broker.frames, 1);
    assert.deepEqual(broker.acked, [1, 2, 3, 4]);
    assert.equal(batcher.outstanding, 0);
  });

  it('never covers an unfinished delivery; finished ones after it are acked one by one', async () => {
    const broker = new BrokerChannel();
    const batcher = new AckBatcher(broker);
    const [one, two, three, four] = [1, 2, 3, 4].map((tag) => broker.deliver(tag)) as [
      Message,
      Message,
      Message,
      Message,
    ];
    for (const message of [one, two, three, four]) batcher.track(message);
    batcher.ack(one);
    batcher.ack(three);
    batcher.ack(four);
    await turn();
    assert.deepEqual(broker.unsettled, new Set([2]));
    assert.deepEqual(broker.acked.sort(), [1, 3, 4]);
    batcher.nack(two, true);
    assert.deepEqual(broker.nacked, [{ tag: 2, requeue: true }]);
    assert.equal(batcher.outstanding, 0);
  });

  it('property: only finished acks are settled as acked, nacks are never covered, and nothing stays unsettled', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ outcome: fc.constantFrom('ack', 'requeue', 'dead-letter'), turn: fc.nat(5) }), {
          minLength: 1,
          maxLength: 60,
        }),
        async (plan) => {
          const broker = new BrokerChannel();
          const batcher = new AckBatcher(broker);
          const messages = plan.map((_, index) => broker.deliver(index + 1));
          for (const message of messages) batcher.track(message);
          for (let current = 0; current <= 5; current += 1) {
            plan.forEach((step, index) => {
              if (step.turn !== current) return;
              const message = messages[index] as Message;
              if (step.outcome === 'ack') batcher.ack(message);
              else batcher.nack(message, step.outcome === 'requeue');
            });
            await turn();
            // Whatever the broker settled as acked was acked by the application.
            for (const tag of broker.acked) assert.equal(plan[tag - 1]?.outcome, 'ack', `tag ${tag}`);
          }
          assert.equal(broker.unsettled.size, 0);
          assert.equal(batcher.outstanding, 0);
          assert.deepEqual(
            broker.nacked.map((item) => item.tag).sort((a, b) => a - b),
            plan.flatMap((step, index) => (step.outcome === 'ack' ? [] : [index + 1])),
          );
          assert.ok(broker.frames <= plan.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a channel that throws is discarded, not retried', async () => {
    const batcher = new AckBatcher<Message>({
      ack: () => {
        throw new Error('Channel closed');
      },
      nack: () => undefined,
    });
    const message = { id: 1, fields: { deliveryTag: 1 } };
    batcher.track(message);
    batcher.ack(message);
    await turn();
    assert.equal(batcher.outstanding, 0);
  });
});
