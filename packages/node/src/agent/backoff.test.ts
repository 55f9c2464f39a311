import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renewalDelayMs } from './backoff.js';

describe('renewalDelayMs', () => {
  const notBefore = new Date('2026-01-01T00:00:00Z');
  const notAfter = new Date('2026-01-01T03:00:00Z');

  it('renews at two thirds of the lifetime', () => {
    assert.equal(renewalDelayMs(notBefore, notAfter, notBefore), 2 * 3600_000);
    assert.equal(renewalDelayMs(notBefore, notAfter, new Date('2026-01-01T01:00:00Z')), 3600_000);
  });

  it('renews soon (within a second) when two thirds have passed', () => {
    const late = new Date('2026-01-01T02:30:00Z');
    assert.equal(
      renewalDelayMs(notBefore, notAfter, late, () => 0),
      0,
    );
    assert.equal(
      renewalDelayMs(notBefore, notAfter, late, () => 0.5),
      500,
    );
    assert.ok(renewalDelayMs(notBefore, notAfter, new Date('2026-02-01T00:00:00Z')) <= 1000);
  });
});
