import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { channelCloseOf, connectionError, waitFor, type ProbedChannel } from './testing.js';

/** A stand-in channel: `closeWith` makes the broker close it (the round trip then fails, as amqplib's does). */
class FakeChannel extends EventEmitter implements ProbedChannel {
  closeWith: number | undefined;
  roundTrips = 0;
  checkExchange(): Promise<unknown> {
    this.roundTrips += 1;
    if (this.closeWith === undefined) return Promise.resolve({});
    const error = Object.assign(new Error(`Channel closed by server: ${this.closeWith}`), { code: this.closeWith });
    this.emit('error', error);
    return Promise.reject(new Error('Channel closed'));
  }
}

describe('waitFor', () => {
  it('returns the first value that is not undefined, null or false', async () => {
    let polls = 0;
    const value = await waitFor('the third poll', () => (++polls >= 3 ? { polls } : false), { intervalMs: 1 });
    assert.deepEqual(value, { polls: 3 });
  });

  it('says what it waited for, describing the state at the timeout when given a function', async () => {
    await assert.rejects(
      waitFor('a thing', () => undefined, { timeoutMs: 20, intervalMs: 5 }),
      {
        message: 'timed out after 20 ms waiting for a thing',
      },
    );
    let seen = 0;
    await assert.rejects(
      waitFor(
        () => `five polls (${seen} so far)`,
        () => (++seen, false),
        { timeoutMs: 20, intervalMs: 5 },
      ),
      /waiting for five polls \(\d+ so far\)/,
    );
  });

  it('fails at once when the probe throws', async () => {
    await assert.rejects(
      waitFor('never', () => {
        throw new Error('probe broke');
      }),
      /probe broke/,
    );
  });
});

describe('channelCloseOf', () => {
  it('reports the close that follows a fire-and-forget operation, by a round trip instead of a pause', async () => {
    const channel = new FakeChannel();
    channel.closeWith = 403;
    const close = await channelCloseOf(channel, () => undefined);
    assert.equal(close.code, 403);
    assert.equal(channel.roundTrips, 1);
  });

  it('fails as soon as the round trip shows the channel survived', async () => {
    const channel = new FakeChannel();
    await assert.rejects(
      channelCloseOf(channel, () => undefined),
      /did not close the channel/,
    );
  });

  it('reports an operation the broker refused with its own error', async () => {
    const channel = new FakeChannel();
    const close = await channelCloseOf(channel, () =>
      Promise.reject(Object.assign(new Error('ACCESS_REFUSED'), { code: 403 })),
    );
    assert.deepEqual(close, { code: 403, message: 'ACCESS_REFUSED' });
  });
});

describe('connectionError', () => {
  it('returns the refusal, and fails (closing it) when the connection was accepted', async () => {
    const refused = await connectionError(() => Promise.reject(new Error('handshake failed')));
    assert.equal(refused.message, 'handshake failed');
    let closed = false;
    const accepted = { close: () => ((closed = true), Promise.resolve()) };
    await assert.rejects(
      connectionError(() => Promise.resolve(accepted)),
      /should have been refused/,
    );
    assert.equal(closed, true);
  });
});
