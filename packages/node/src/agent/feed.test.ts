import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { DmrError } from '@dmr/core';
import { waitFor } from '@dmr/core/testing';
import type { SseEvent } from './centops-client.js';
import { FeedFollower, type FeedDocument, type FeedOptions } from './feed.js';

type FakeClient = FeedOptions['client'];

describe('FeedFollower', () => {
  it('falls back to long-polling when the stream fails, and sends If-None-Match of the last revision', async () => {
    const polls: Array<number | undefined> = [];
    let streams = 0;
    const client: FakeClient = {
      stream: () => {
        streams += 1;
        return Promise.reject(new DmrError('CENTOPS_UNREACHABLE', 'stream refused'));
      },
      config: async (_node, known) => {
        polls.push(known);
        await sleep(5);
        return known === undefined ? { revision: 4, jws: 'doc-4' } : undefined;
      },
    };
    const received: FeedDocument[] = [];
    const connected: boolean[] = [];
    const feed = new FeedFollower({
      client,
      nodeId: 'node-a',
      logger: pino({ level: 'silent' }),
      backoffInitialMs: 10,
      backoffMaxMs: 20,
      pollsBeforeStreamRetry: 3,
      onDocument: (document) => {
        received.push(document);
        return Promise.resolve();
      },
      onConnected: (value) => connected.push(value),
    });
    feed.start(undefined);
    await waitFor('a second stream attempt', () => streams >= 2, { timeoutMs: 5000, intervalMs: 5 });
    await feed.stop();
    assert.deepEqual(received, [{ revision: 4, jws: 'doc-4', via: 'poll' }]);
    assert.deepEqual(polls.slice(0, 3), [undefined, 4, 4]);
    assert.ok(connected.includes(true));
    assert.equal(connected.at(-1), false);
  });

  it('coalesces documents that arrive while one is applied: only the latest waits', async () => {
    let emit: ((event: SseEvent) => void) | undefined;
    const client: FakeClient = {
      stream: (_node, onEvent, signal, onOpen) => {
        emit = onEvent;
        onOpen?.();
        return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      },
      config: () => Promise.resolve(undefined),
    };
    const applied: number[] = [];
    let release: () => void = () => undefined;
    const feed = new FeedFollower({
      client,
      nodeId: 'node-a',
      logger: pino({ level: 'silent' }),
      onDocument: async (document) => {
        applied.push(document.revision);
        if (document.revision === 1) await new Promise<void>((resolve) => (release = resolve));
      },
    });
    feed.start(undefined);
    const stream = await waitFor('the stream to open', () => emit);
    stream({ event: 'config', id: '1', data: 'a' });
    stream({ event: 'config', id: '2', data: 'b' });
    stream({ event: 'config', id: '3', data: 'c' });
    release();
    await feed.idle();
    await feed.stop();
    assert.deepEqual(applied, [1, 3]);
    assert.equal(feed.lastSeen, 3);
  });
});
