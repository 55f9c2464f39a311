import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LATENCY_BUCKETS_SECONDS, latencyBuckets } from './latency-buckets.js';

describe('latencyBuckets', () => {
  it('takes a stretch of the one ladder, both ends included', () => {
    assert.deepEqual(
      latencyBuckets(0.001, 30),
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    );
    assert.deepEqual(
      latencyBuckets(0.0005, 2.5),
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    );
    assert.deepEqual(latencyBuckets(0.00005, 60), [...LATENCY_BUCKETS_SECONDS]);
  });

  it('refuses ends that are not on the ladder (a typo would silently move every le)', () => {
    assert.throws(() => latencyBuckets(0.002, 30), RangeError);
    assert.throws(() => latencyBuckets(0.001, 20), RangeError);
  });

  it('the ladder is strictly increasing', () => {
    for (let i = 1; i < LATENCY_BUCKETS_SECONDS.length; i += 1) {
      assert.ok((LATENCY_BUCKETS_SECONDS[i] as number) > (LATENCY_BUCKETS_SECONDS[i - 1] as number));
    }
  });
});
