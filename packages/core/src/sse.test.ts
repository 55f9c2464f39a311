import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { isDmrError } from './errors.js';
import { createSseParser, readSse, type SseEvent } from './sse.js';

function parse(...chunks: string[]): SseEvent[] {
  const events: SseEvent[] = [];
  const parser = createSseParser((event) => events.push(event));
  for (const chunk of chunks) parser.feed(chunk);
  return events;
}

describe('SSE parsing', () => {
  it('reads event, id and multi-line data; skips comments and retry-only blocks', () => {
    assert.deepEqual(parse('id: 7\nevent: config\ndata: a.b.c\n\n'), [{ event: 'config', id: '7', data: 'a.b.c' }]);
    assert.deepEqual(parse('data: one\ndata: two\n\n'), [{ event: 'message', data: 'one\ntwo' }]);
    assert.deepEqual(parse(': heartbeat 2026-01-01T00:00:00Z\n\n', 'retry: 3000\n\n'), []);
  });

  it('joins events split across chunks at any byte, with any line ending', () => {
    const text =
      'retry: 3000\n\nid: 1\nevent: config\ndata: x.y.z\n\n: heartbeat\n\nid: 2\nevent: config\ndata: p.q.r\n\n';
    const whole = parse(text);
    assert.deepEqual(whole, [
      { event: 'config', id: '1', data: 'x.y.z' },
      { event: 'config', id: '2', data: 'p.q.r' },
    ]);
    for (let cut = 1; cut < text.length; cut += 1) assert.deepEqual(parse(text.slice(0, cut), text.slice(cut)), whole);
    assert.deepEqual(parse(text.replace(/\n/g, '\r\n')), whole);
    // A lone CR at the very end may still be the first half of a CRLF: the next chunk settles it.
    assert.deepEqual(parse(text.replace(/\n/g, '\r'), ': next\r'), whole);
  });

  it('does not emit a partial event, and reset() forgets it', () => {
    const events: SseEvent[] = [];
    const parser = createSseParser((event) => events.push(event));
    parser.feed('event: config\ndata: half');
    assert.deepEqual(events, []);
    parser.reset();
    parser.feed('data: whole\n\n');
    assert.deepEqual(events, [{ event: 'message', data: 'whole' }]);
  });

  it('reads a stream until it ends, and rejects with its error', async () => {
    const events: SseEvent[] = [];
    const stream = new PassThrough();
    const done = readSse(stream, (event) => events.push(event));
    stream.write('data: a\n');
    stream.end('\n');
    await done;
    assert.deepEqual(events, [{ event: 'message', data: 'a' }]);
    const failing = new PassThrough();
    const failed = readSse(failing, () => undefined);
    failing.destroy(new Error('reset by peer'));
    await assert.rejects(failed, /reset by peer/);
  });

  it('cuts off a stream that never completes an event, and keeps reading one that does', async () => {
    const events: SseEvent[] = [];
    const steady = new PassThrough();
    const fine = readSse(steady, (event) => events.push(event), 100);
    for (let i = 0; i < 10; i += 1) steady.write(`data: ${'x'.repeat(40)}\n\n`);
    steady.end();
    await fine;
    assert.equal(events.length, 10);
    const endless = new PassThrough();
    const cut = readSse(endless, () => assert.fail('no event completes'), 100);
    for (let i = 0; i < 10; i += 1) endless.write(`data: ${'x'.repeat(40)}\n`);
    await assert.rejects(cut, (error: unknown) => isDmrError(error) && error.code === 'VALIDATION_FAILED');
    assert.ok(endless.destroyed);
  });
});
