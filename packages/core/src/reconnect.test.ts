import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reconnectLoop } from './reconnect.js';

/** A session that the test loses by hand. */
interface FakeSession {
  id: number;
  lose: () => void;
  closed: Promise<void>;
}

function fakeSession(id: number): FakeSession {
  let lose: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (lose = resolve));
  return { id, lose, closed };
}

/** Records pauses and resolves them at once (no wall clock); aborts reject like node's timers. */
function instantSleep(pauses: number[]) {
  return (ms: number, signal: AbortSignal): Promise<void> => {
    pauses.push(ms);
    return signal.aborted ? Promise.reject(new Error('aborted')) : Promise.resolve();
  };
}

describe('reconnectLoop', () => {
  it('backs off on failed opens, resets once open, pauses after a loss and stops on abort', async () => {
    const stop = new AbortController();
    const events: string[] = [];
    const pauses: number[] = [];
    let opens = 0;
    const sessions: FakeSession[] = [];
    const done = reconnectLoop<FakeSession>({
      signal: stop.signal,
      backoff: { initialMs: 100, maxMs: 1000, random: () => 0 },
      sleep: instantSleep(pauses),
      open: () => {
        opens += 1;
        // Two failures, a session, one failure, a session.
        if (opens === 1 || opens === 2 || opens === 4) return Promise.reject(new Error(`refused ${opens}`));
        const session = fakeSession(opens);
        sessions.push(session);
        return Promise.resolve(session);
      },
      closed: (session) => session.closed,
      drop: (session) => events.push(`drop ${session.id}`),
      onOpen: (session, reconnected) => {
        events.push(`open ${session.id} ${reconnected}`);
        if (session.id === 3) session.lose();
        else stop.abort();
        if (session.id === 5) session.lose();
      },
      onOpenFailed: (error) => events.push(String((error as Error).message)),
      onLost: (session) => events.push(`lost ${session.id}`),
    });
    await done;
    assert.deepEqual(events, [
      'refused 1',
      'refused 2',
      'open 3 false',
      'drop 3',
      'lost 3',
      'refused 4',
      'open 5 true',
      'drop 5',
    ]);
    // 50, 100 after the failures; after the session opened the count starts again: 50 after the loss, 100 after refused 4.
    assert.deepEqual(pauses, [50, 100, 50, 100]);
  });

  it('starts with a session the caller opened, and drops one that opens after stop', async () => {
    const stop = new AbortController();
    const first = fakeSession(1);
    const dropped: number[] = [];
    let reconnected: boolean | undefined;
    const done = reconnectLoop<FakeSession>({
      signal: stop.signal,
      first,
      sleep: instantSleep([]),
      open: () => {
        stop.abort();
        return Promise.resolve(fakeSession(2));
      },
      closed: (session) => session.closed,
      drop: (session) => dropped.push(session.id),
      onOpen: (_session, again) => (reconnected = again),
    });
    first.lose();
    await done;
    assert.equal(reconnected, false);
    assert.deepEqual(dropped, [1, 2]);
  });

  it('ends during a pause when stopped, without waiting for it', async () => {
    const stop = new AbortController();
    const done = reconnectLoop<FakeSession>({
      signal: stop.signal,
      backoff: { initialMs: 3_600_000 },
      open: () => Promise.reject(new Error('down')),
      closed: (session) => session.closed,
      drop: () => undefined,
      onPause: () => stop.abort(),
    });
    await done;
  });
});
