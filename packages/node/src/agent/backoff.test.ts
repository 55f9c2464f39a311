import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Backoff, renewalDelayMs } from './backoff.js';
import { parseSseBlock } from './centops-client.js';

describe('Backoff', () => {
  it('grows exponentially to the ceiling, with jitter in [ceiling/2, ceiling], and resets', () => {
    const low = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    assert.deepEqual(
      [low.next(), low.next(), low.next(), low.next(), low.next(), low.next()],
      [50, 100, 200, 400, 500, 500],
    );
    low.reset();
    assert.equal(low.next(), 50);
    const high = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
    assert.deepEqual([high.next(), high.next(), high.next(), high.next(), high.next()], [100, 200, 400, 800, 1000]);
  });

  it('never overflows after many failures', () => {
    const backoff = new Backoff({ initialMs: 100, maxMs: 30_000 });
    for (let i = 0; i < 500; i += 1) assert.ok(backoff.next() <= 30_000);
  });
});

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

describe('parseSseBlock', () => {
  it('reads event, id and multi-line data; skips comments and retry-only blocks', () => {
    assert.deepEqual(parseSseBlock('id: 7\nevent: config\ndata: a.b.c'), { event: 'config', id: '7', data: 'a.b.c' });
    assert.deepEqual(parseSseBlock('data: one\ndata: two'), { event: 'message', data: 'one\ntwo' });
    assert.equal(parseSseBlock(': heartbeat'), undefined);
    assert.equal(parseSseBlock('retry: 3000'), undefined);
  });
});
