import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { Holds, type HoldOptions } from './hold.js';

interface Message {
  id: string;
}

const OPTIONS: HoldOptions = {
  maxMessages: 4,
  maxBytes: 1_000,
  maxPerKey: 4,
  backoff: { initialMs: 100, maxMs: 400 },
};

function setup(t: TestContext, options: Partial<HoldOptions> = {}) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const retried: string[] = [];
  const fullChanges: boolean[] = [];
  const counts: number[] = [];
  const holds = new Holds<Message, string>(
    { ...OPTIONS, ...options },
    {
      retry: (message) => retried.push(message.id),
      onFull: (full) => fullChanges.push(full),
      onCount: (count) => counts.push(count),
    },
  );
  const take = (): string[] => retried.splice(0);
  return { holds, take, fullChanges, counts, tick: (ms: number) => t.mock.timers.tick(ms) };
}

const m = (id: string): Message => ({ id });

describe('Holds', () => {
  it('holds per destination: a held key blocks its other messages, never another key', (t) => {
    const { holds } = setup(t);
    const a1 = m('a1');
    const b1 = m('b1');
    assert.equal(holds.blocks('recipient:a', a1), false, 'nothing held: publish');
    holds.hold('recipient:a', a1, 'route', 10);
    assert.equal(holds.blocks('recipient:a', m('a2')), true, 'a newer message for a waits behind a1');
    assert.equal(holds.blocks('recipient:b', b1), false, 'b is not held');
    assert.deepEqual(holds.keys, ['recipient:a']);
    assert.equal(holds.holding('recipient:a'), true);
    assert.equal(holds.holding('recipient:b'), false);
    assert.equal(holds.count, 1);
    assert.equal(holds.bytes, 10);
  });

  it('after the back-off the oldest probes and the rest re-run without publishing; a settled probe opens the key', (t) => {
    const { holds, take, tick } = setup(t);
    const [a1, a2, a3] = [m('a1'), m('a2'), m('a3')];
    for (const message of [a1, a2, a3]) holds.hold('recipient:a', message, 'route', 1);
    tick(49);
    assert.deepEqual(take(), [], 'not before half the first ceiling');
    tick(51);
    assert.deepEqual(take(), ['a1', 'a2', 'a3'], 'every held message runs its checks again');
    assert.equal(holds.blocks('recipient:a', a1), false, 'the probe may publish');
    assert.equal(holds.blocks('recipient:a', a2), true, 'the others may not');
    // a2 and a3 come back held without publishing; the probe is delivered.
    holds.hold('recipient:a', a2, 'route', 1);
    holds.hold('recipient:a', a3, 'route', 1);
    holds.settled(a1);
    assert.deepEqual(take(), ['a2', 'a3'], 'the key opens: everything tries at once');
    assert.equal(holds.blocks('recipient:a', a2), false);
    holds.settled(a2);
    holds.settled(a3);
    assert.equal(holds.count, 0);
    assert.deepEqual(holds.keys, []);
    assert.equal(holds.holding('recipient:a'), false, 'a key with nothing held is gone');
  });

  it('a probe held again backs off longer, up to the ceiling', (t) => {
    const { holds, take, tick } = setup(t);
    const a1 = m('a1');
    holds.hold('recipient:a', a1, 'route', 1);
    const waits: number[] = [];
    for (let round = 0; round < 4; round += 1) {
      let waited = 0;
      while (take().length === 0) {
        tick(10);
        waited += 10;
      }
      waits.push(waited);
      holds.hold('recipient:a', a1, 'route', 1);
    }
    // Half jitter: each wait lies in [ceiling/2, ceiling] for ceilings 100, 200, 400, 400.
    const ceilings = [100, 200, 400, 400];
    waits.forEach((wait, i) => {
      const ceiling = ceilings[i] ?? 0;
      assert.ok(wait >= ceiling / 2 && wait <= ceiling + 10, `round ${i}: ${wait} ms for ceiling ${ceiling}`);
    });
  });

  it('a held message that settles on its own (expired, refused) leaves; an emptied key is gone', (t) => {
    const { holds, take, tick } = setup(t);
    const [a1, a2] = [m('a1'), m('a2')];
    holds.hold('recipient:a', a1, 'route', 1);
    holds.hold('recipient:a', a2, 'route', 1);
    tick(100);
    take();
    holds.settled(a2); // refused (say, MESSAGE_EXPIRED) before reaching the publish
    assert.equal(holds.blocks('recipient:a', m('a3')), true, 'the probe is still out: the key stays blocked');
    holds.hold('recipient:a', a1, 'route', 1);
    holds.settled(a1);
    assert.deepEqual(holds.keys, []);
    assert.equal(holds.blocks('recipient:a', m('a3')), false);
  });

  it('is full at maxMessages or maxBytes and says so once each way', (t) => {
    const { holds, fullChanges } = setup(t, { maxMessages: 3, maxBytes: 100 });
    const messages = [m('1'), m('2'), m('3')];
    holds.hold('recipient:a', messages[0] as Message, 'route', 10);
    holds.hold('recipient:b', messages[1] as Message, 'route', 10);
    assert.equal(holds.full, false);
    holds.hold('link:node-b', messages[2] as Message, 'route', 10);
    assert.equal(holds.full, true);
    holds.forget(messages[2] as Message);
    assert.equal(holds.full, false);
    holds.hold('recipient:c', m('big'), 'route', 90);
    assert.equal(holds.full, true, 'by bytes');
    assert.deepEqual(fullChanges, [true, false, true]);
  });

  it('a probe taken away (a transient failure) leaves the key to probe again; clear() stops every timer', (t) => {
    const { holds, take, tick, counts } = setup(t);
    const [a1, a2] = [m('a1'), m('a2')];
    holds.hold('recipient:a', a1, 'route', 1);
    holds.hold('recipient:a', a2, 'route', 1);
    tick(100);
    assert.deepEqual(take(), ['a1', 'a2']);
    holds.hold('recipient:a', a2, 'route', 1);
    holds.forget(a1);
    tick(100);
    assert.deepEqual(take(), ['a2'], 'a2 probes now');
    holds.clear();
    tick(10_000);
    assert.deepEqual(take(), []);
    assert.equal(holds.count, 0);
    assert.equal(counts.at(-1), 0);
  });

  it('a destination is crowded at its share, whatever the others hold', (t) => {
    const { holds } = setup(t, { maxMessages: 8, maxPerKey: 2 });
    const [a1, a2] = [m('a1'), m('a2')];
    holds.hold('recipient:a', a1, 'route', 1);
    assert.equal(holds.crowded('recipient:a'), false);
    holds.hold('recipient:a', a2, 'route', 1);
    assert.equal(holds.crowded('recipient:a'), true);
    assert.equal(holds.crowded('recipient:b'), false);
    assert.equal(holds.has(a2), true);
    holds.settled(a1);
    assert.equal(holds.crowded('recipient:a'), false);
    assert.equal(holds.has(a1), false);
  });

  it('wake() tries blocked keys now (a new configuration)', (t) => {
    const { holds, take } = setup(t);
    holds.hold('recipient:a', m('a1'), 'route', 1);
    holds.wake();
    assert.deepEqual(take(), ['a1']);
    holds.wake();
    assert.deepEqual(take(), [], 'its probe is out already');
  });
});
