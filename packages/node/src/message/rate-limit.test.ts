import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SenderRateLimit } from './rate-limit.js';

describe('SenderRateLimit', () => {
  it('lets a burst through, then the rate, per sender', () => {
    const limit = new SenderRateLimit({ ratePerSecond: 2, burst: 3 });
    for (let i = 0; i < 3; i += 1) assert.ok(limit.take('flooder', 0).ok);
    const refused = limit.take('flooder', 0);
    assert.ok(!refused.ok && refused.reason === 'SENDER_RATE_LIMITED', JSON.stringify(refused));
    assert.ok(limit.take('quiet', 0).ok, 'another sender has its own bucket');
    assert.ok(!limit.take('flooder', 499).ok, '499 ms refill less than one token at 2/s');
    assert.ok(limit.take('flooder', 500).ok, 'one token after 500 ms at 2/s');
    assert.ok(!limit.take('flooder', 500).ok);
  });

  it('never gives tokens for a clock stepping back, and new limits apply at once', () => {
    const limit = new SenderRateLimit({ ratePerSecond: 1, burst: 1 });
    assert.ok(limit.take('a', 10_000).ok);
    assert.ok(!limit.take('a', 0).ok);
    assert.ok(!limit.take('a', 10_500).ok);
    limit.configure(1_000, 5);
    assert.ok(limit.take('a', 10_600).ok);
  });

  it('keeps at most maxSenders buckets, dropping idle (refilled) ones first', () => {
    const limit = new SenderRateLimit({ ratePerSecond: 1, burst: 2, maxSenders: 3 });
    for (const sender of ['a', 'b', 'c', 'd', 'e']) assert.ok(limit.take(sender, 0).ok);
    assert.ok(limit.size <= 3);
    assert.ok(limit.take('f', 10_000).ok);
    assert.equal(limit.size, 1, 'every other bucket had refilled: dropped');
  });

  it('property: over any window a sender gets at most burst + rate × elapsed messages through', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.nat(200), { minLength: 1, maxLength: 300 }),
        (rate, burst, gaps) => {
          const limit = new SenderRateLimit({ ratePerSecond: rate, burst });
          let now = 0;
          let passed = 0;
          for (const gap of gaps) {
            now += gap;
            if (limit.take('s', now).ok) passed += 1;
          }
          assert.ok(passed <= burst + Math.floor((rate * now) / 1000), `${passed} through`);
        },
      ),
    );
  });
});
