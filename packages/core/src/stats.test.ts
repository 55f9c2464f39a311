import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { markdownTable, percentile, sortedSamples, summarize } from './stats.js';

describe('percentile (nearest rank)', () => {
  it('picks observed samples, never interpolated values', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    assert.equal(percentile(sorted, 50), 5);
    assert.equal(percentile(sorted, 90), 9);
    assert.equal(percentile(sorted, 99), 10);
    assert.equal(percentile(sorted, 100), 10);
    assert.equal(percentile(sorted, 0), 1);
    assert.equal(percentile(sorted, 10), 1);
    assert.equal(percentile(sorted, 11), 2);
  });

  it('p99 of 1000 samples is the 990th, so 10 samples lie above it', () => {
    const sorted = Array.from({ length: 1000 }, (_, i) => i + 1);
    assert.equal(percentile(sorted, 99), 990);
  });

  it('is NaN without samples and refuses p outside 0..100', () => {
    assert.ok(Number.isNaN(percentile([], 50)));
    assert.throws(() => percentile([1], 101), RangeError);
    assert.throws(() => percentile([1], -1), RangeError);
    assert.throws(() => percentile([1], Number.NaN), RangeError);
  });

  it('at least p % of the samples are at or below it, and fewer below it', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 200 }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (samples, p) => {
          const sorted = sortedSamples(samples);
          const value = percentile(sorted, p);
          const atOrBelow = sorted.filter((sample) => sample <= value).length;
          const below = sorted.filter((sample) => sample < value).length;
          assert.ok(atOrBelow >= (p / 100) * sorted.length - 1e-9);
          assert.ok(below < Math.max(1, (p / 100) * sorted.length));
        },
      ),
    );
  });
});

describe('sortedSamples', () => {
  it('sorts numerically, not as strings', () => {
    assert.deepEqual([...sortedSamples([10, 9, 100, 1])], [1, 9, 10, 100]);
  });

  it('leaves its input alone', () => {
    const input = [3, 1, 2];
    sortedSamples(input);
    assert.deepEqual(input, [3, 1, 2]);
  });
});

describe('summarize', () => {
  it('reports every figure of unsorted samples', () => {
    assert.deepEqual(summarize([4, 1, 3, 2]), { n: 4, min: 1, p50: 2, p90: 4, p99: 4, max: 4, mean: 2.5 });
  });

  it('takes typed arrays and iterables', () => {
    assert.equal(summarize(new Float64Array([2, 1])).max, 2);
    assert.equal(summarize(new Set([5, 7])).min, 5);
  });

  it('has n = 0 and NaN figures for no samples', () => {
    const empty = summarize([]);
    assert.equal(empty.n, 0);
    for (const key of ['min', 'p50', 'p90', 'p99', 'max', 'mean'] as const) assert.ok(Number.isNaN(empty[key]), key);
  });

  it('keeps min ≤ p50 ≤ p90 ≤ p99 ≤ max', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ noNaN: true, min: -1e9, max: 1e9 }), { minLength: 1 }), (samples) => {
        const s = summarize(samples);
        assert.ok(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max);
        assert.ok(s.min <= s.mean + 1e-6 && s.mean <= s.max + 1e-6);
      }),
    );
  });
});

describe('markdownTable', () => {
  it('pads names left and figures right, with a Markdown alignment rule', () => {
    assert.equal(
      markdownTable(
        ['store', 'req/s'],
        [
          ['sqlite', '12'],
          ['postgres', '3456'],
        ],
        1,
      ),
      ['| store    | req/s |', '|:---------|------:|', '| sqlite   |    12 |', '| postgres |  3456 |'].join('\n'),
    );
  });
});
