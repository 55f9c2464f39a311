import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DedupWindow, DEFAULT_DEDUP_WINDOW_MS } from './dedup.js';

describe('DedupWindow', () => {
  it('defaults to the node dedup window of 24 h 5 min', () => {
    assert.equal(new DedupWindow().windowMs, DEFAULT_DEDUP_WINDOW_MS);
    assert.equal(DEFAULT_DEDUP_WINDOW_MS, 86_700_000);
  });

  it('remembers an id for windowMs, then forgets it', () => {
    const window = new DedupWindow({ windowMs: 1000, maxEntries: 10 });
    assert.equal(window.has('a', 0), false);
    window.record('a', 0);
    assert.equal(window.has('a', 999), true);
    assert.equal(window.has('a', 1000), false);
    assert.equal(window.size, 0);
  });

  it('forgets the oldest id first when full', () => {
    const window = new DedupWindow({ windowMs: 10_000, maxEntries: 3 });
    for (const [index, id] of ['a', 'b', 'c', 'd'].entries()) window.record(id, index);
    assert.equal(window.size, 3);
    assert.equal(window.has('a', 5), false);
    assert.deepEqual(
      ['b', 'c', 'd'].map((id) => window.has(id, 5)),
      [true, true, true],
    );
  });

  it('re-recording moves an id to the newest position', () => {
    const window = new DedupWindow({ windowMs: 10_000, maxEntries: 2 });
    window.record('a', 0);
    window.record('b', 1);
    window.record('a', 2);
    window.record('c', 3);
    assert.equal(window.has('a', 4), true);
    assert.equal(window.has('b', 4), false);
  });

  it('expires in time order so that a late expiry does not hide an earlier one', () => {
    const window = new DedupWindow({ windowMs: 100, maxEntries: 1000 });
    for (let i = 0; i < 500; i += 1) window.record(`id-${i}`, i);
    assert.equal(window.has('id-450', 520), true);
    assert.equal(window.size, 79); // ids recorded at 421…499 remain
  });

  it('refuses nonsense bounds', () => {
    assert.throws(() => new DedupWindow({ windowMs: 0 }), RangeError);
    assert.throws(() => new DedupWindow({ maxEntries: 0 }), RangeError);
  });
});

// renewalDelayMs lives in @dmr/pki (the shared enrolment client) and is tested there.
