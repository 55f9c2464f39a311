import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Backoff, backoffCeiling, backoffDelay } from './backoff.js';

describe('back-off', () => {
  it('grows exponentially to the cap, jittered in [ceiling/2, ceiling], and resets', () => {
    const low = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    assert.deepEqual(
      [low.next(), low.next(), low.next(), low.next(), low.next(), low.next()],
      [50, 100, 200, 400, 500, 500],
    );
    assert.equal(low.attempt, 6);
    low.reset();
    assert.equal(low.next(), 50);
    const high = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
    assert.deepEqual([high.next(), high.next(), high.next(), high.next(), high.next()], [100, 200, 400, 800, 1000]);
  });

  it('defaults to 100 ms doubling to 30 s, and an undefined option keeps its default', () => {
    assert.equal(backoffCeiling(0), 100);
    assert.equal(backoffCeiling(3, { maxMs: undefined }), 800);
    assert.equal(backoffCeiling(100), 30_000);
    assert.equal(
      backoffDelay(0, {}, () => 0.5),
      75,
    );
    assert.equal(
      backoffDelay(1, { factor: 3 }, () => 0),
      150,
    );
  });

  it('never exceeds the cap nor falls under half the ceiling, however long the outage', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 30_000 });
    for (let i = 0; i < 500; i += 1) {
      const ceiling = backoff.ceilingMs();
      const delay = backoff.next();
      assert.ok(delay <= ceiling && delay >= ceiling / 2, `${delay} within [${ceiling / 2}, ${ceiling}]`);
    }
    assert.equal(backoffCeiling(-5), 100);
    assert.equal(backoffCeiling(Number.MAX_SAFE_INTEGER), 30_000);
  });
});
