import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RevisionHub } from './hub.js';

describe('RevisionHub', () => {
  it('tells subscribers about newer revisions only, once each', () => {
    const hub = new RevisionHub();
    const heard: number[] = [];
    const unsubscribe = hub.subscribe((revision) => heard.push(revision));
    hub.publish(3);
    hub.publish(3);
    hub.publish(2);
    hub.publish(4);
    unsubscribe();
    hub.publish(5);
    assert.deepEqual(heard, [3, 4]);
    assert.equal(hub.listenerCount, 0);
  });

  it('waitForNewer resolves on publish, at once if already newer, undefined on timeout and abort; leaves no listener', async () => {
    const hub = new RevisionHub();
    const waiting = hub.waitForNewer(1, 5000);
    assert.equal(hub.listenerCount, 1);
    hub.publish(2);
    assert.equal(await waiting, 2);
    assert.equal(await hub.waitForNewer(1, 5000), 2);
    assert.equal(await hub.waitForNewer(2, 20), undefined);
    const controller = new AbortController();
    const aborted = hub.waitForNewer(2, 60_000, controller.signal);
    controller.abort();
    assert.equal(await aborted, undefined);
    assert.equal(hub.listenerCount, 0);
  });

  it('a throwing subscriber does not stop the others', () => {
    const hub = new RevisionHub();
    let heard = 0;
    hub.subscribe(() => {
      throw new Error('boom');
    });
    hub.subscribe(() => (heard += 1));
    hub.publish(1);
    assert.equal(heard, 1);
  });

  it('polls the store while someone listens, and only then', async (t) => {
    // The test runner's clock: intervals pass exactly, not as the machine's load allows.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let revision = 1;
    let reads = 0;
    const hub = new RevisionHub({
      store: { revision: () => ((reads += 1), Promise.resolve(revision)) },
      pollIntervalMs: 10,
    });
    t.mock.timers.tick(50);
    assert.equal(reads, 0, 'no listener, no polling');
    const waiting = hub.waitForNewer(1, 5000);
    revision = 2;
    t.mock.timers.tick(10);
    assert.equal(await waiting, 2, 'a change written elsewhere is seen by polling');
    // Let the poll that saw it finish (it would schedule the next one only with a listener left).
    await new Promise((resolve) => setImmediate(resolve));
    const before = reads;
    t.mock.timers.tick(50);
    assert.equal(reads, before, 'polling stops with the last listener');
    hub.close();
  });
});
