import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatDuration, parseDuration } from './duration.js';
import { DmrError } from './errors.js';

describe('durations', () => {
  it('parses units and compound durations', () => {
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('24h'), 86_400_000);
    assert.equal(parseDuration('30d'), 30 * 86_400_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('250ms'), 250);
  });

  it('refuses bare numbers, unknown units, zero and garbage with a hint', () => {
    for (const text of ['24', '1y', '0s', '', 'h', '1hx', '1 h', '-5m', '1.5h']) {
      assert.throws(
        () => parseDuration(text),
        (error: unknown) => error instanceof DmrError && error.code === 'INVALID_ARGUMENT' && error.hint !== undefined,
        JSON.stringify(text),
      );
    }
  });

  it('formatDuration and parseDuration agree (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000_000_000 }), (ms) => parseDuration(formatDuration(ms)) === ms),
    );
  });
});
