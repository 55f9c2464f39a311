import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ReplayGuard } from './replay.js';

describe('ReplayGuard', () => {
  it('refuses an id seen within the window and accepts it once the window passed', () => {
    const guard = new ReplayGuard({ windowMs: 1000, maxEntries: 10 });
    assert.deepEqual(guard.check('a', 0), { ok: true });
    const replay = guard.check('a', 999);
    assert.ok(!replay.ok);
    assert.equal(replay.reason, 'MESSAGE_REPLAYED');
    assert.deepEqual(guard.check('a', 1000), { ok: true }, 'forgotten at exactly seenAt + windowMs');
  });

  it('a refused replay does not extend the window', () => {
    const guard = new ReplayGuard({ windowMs: 1000, maxEntries: 10 });
    guard.check('a', 0);
    guard.check('a', 900);
    assert.ok(guard.check('a', 1000).ok);
  });

  it('when full of unexpired ids refuses new ones with REPLAY_WINDOW_FULL instead of forgetting', () => {
    const guard = new ReplayGuard({ windowMs: 1000, maxEntries: 2 });
    assert.ok(guard.check('a', 0).ok);
    assert.ok(guard.check('b', 10).ok);
    const full = guard.check('c', 20);
    assert.ok(!full.ok);
    assert.equal(full.reason, 'REPLAY_WINDOW_FULL');
    // The held ids are still refused as replays, not silently dropped.
    assert.equal((guard.check('a', 30) as { reason: string }).reason, 'MESSAGE_REPLAYED');
    // Once 'a' expires there is room again.
    assert.ok(guard.check('c', 1000).ok);
    assert.equal(guard.size, 2);
  });

  it('release forgets an id so a requeued redelivery passes', () => {
    const guard = new ReplayGuard({ windowMs: 1000, maxEntries: 2 });
    guard.check('a', 0);
    guard.release('a');
    assert.ok(guard.check('a', 1).ok);
  });

  it('a parked id refuses a client replay, takes the router’s own copy once, and is marked parked on disk', () => {
    const lines: string[] = [];
    const journal = {
      remembered: (id: string) => lines.push(`+${id}`),
      parked: (id: string) => lines.push(`~${id}`),
      forgotten: (id: string) => lines.push(`-${id}`),
    };
    const guard = new ReplayGuard({ windowMs: 1000, maxEntries: 10, journal });
    assert.ok(guard.check('a', 0, 's').ok);
    guard.park('a');
    assert.equal((guard.check('a', 10, 's') as { reason: string }).reason, 'MESSAGE_REPLAYED', 'a client replay');
    assert.ok(guard.check('a', 20, 's', true).ok, 'the router’s own copy back');
    assert.equal(
      (guard.check('a', 30, 's', true) as { reason: string }).reason,
      'MESSAGE_REPLAYED',
      'a second copy of the parked message',
    );
    assert.deepEqual(lines, ['+a', '~a', '+a']);
    assert.equal(guard.heldBy('s'), 1);
  });

  it('survives a clock step back without forgetting early', () => {
    const guard = new ReplayGuard({ windowMs: 1000, maxEntries: 10 });
    guard.check('a', 5000);
    guard.check('b', 100); // clock stepped back
    assert.ok(!guard.check('a', 5999).ok);
    assert.ok(guard.check('b', 1100).ok, 'b expired by its own time even behind a');
  });

  it('rejects nonsensical options', () => {
    assert.throws(() => new ReplayGuard({ windowMs: 0, maxEntries: 1 }), RangeError);
    assert.throws(() => new ReplayGuard({ windowMs: 1, maxEntries: 0 }), RangeError);
  });

  /**
   * Model check against a plain list of (id, seenAt) with a fake clock that
   * only moves forward: within the window a seen id is never accepted again,
   * memory never exceeds maxEntries, and an id is accepted exactly when the
   * model says it is new and there is room.
   */
  it('property: never lets a replay through within the window and stays bounded', () => {
    const ops = fc.array(fc.record({ id: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), advance: fc.nat(400) }), {
      maxLength: 200,
    });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 5 }), ops, (windowMs, max, steps) => {
        const guard = new ReplayGuard({ windowMs, maxEntries: max });
        const model = new Map<string, number>(); // id → first accepted at
        let now = 0;
        for (const { id, advance } of steps) {
          now += advance;
          for (const [held, at] of model) if (at + windowMs <= now) model.delete(held);
          const result = guard.check(id, now);
          const seen = model.get(id);
          if (seen !== undefined) {
            assert.ok(!result.ok && result.reason === 'MESSAGE_REPLAYED', `replay of ${id} let through`);
          } else if (model.size >= max) {
            assert.ok(!result.ok && result.reason === 'REPLAY_WINDOW_FULL');
          } else {
            assert.ok(result.ok);
            model.set(id, now);
          }
          assert.ok(guard.size <= max);
        }
      }),
    );
  });

  it('gives each sender its share: a flooding sender is refused, the others are not', () => {
    const guard = new ReplayGuard({ windowMs: 1_000, maxEntries: 10, maxPerSender: 3 });
    for (let i = 0; i < 3; i += 1) assert.ok(guard.check(`flood-${i}`, 0, 'flooder').ok);
    const refused = guard.check('flood-3', 0, 'flooder');
    assert.ok(!refused.ok && refused.reason === 'SENDER_QUOTA_EXCEEDED', JSON.stringify(refused));
    assert.ok(guard.check('quiet-0', 0, 'quiet').ok, 'another sender still passes');
    assert.equal(guard.heldBy('flooder'), 3);
    // A replay is still a replay, whatever the share.
    const replay = guard.check('flood-0', 1, 'flooder');
    assert.ok(!replay.ok && replay.reason === 'MESSAGE_REPLAYED');
    // Released or expired ids give the share back.
    guard.release('flood-0');
    assert.ok(guard.check('flood-4', 2, 'flooder').ok);
    assert.ok(guard.check('flood-5', 1_002, 'flooder').ok, 'expired ids no longer count');
    assert.equal(guard.heldBy('flooder'), 1);
    assert.equal(guard.heldBy('quiet'), 0, 'a sender without ids has no entry left');
  });

  it('property: shares and the total stay bounded and per-sender counts match the ids held', () => {
    const ops = fc.array(
      fc.record({
        id: fc.integer({ min: 0, max: 30 }),
        sender: fc.constantFrom('a', 'b', 'c'),
        advance: fc.nat(300),
        release: fc.boolean(),
      }),
      { maxLength: 200 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4 }), ops, (max, share, steps) => {
        const guard = new ReplayGuard({ windowMs: 1_000, maxEntries: max, maxPerSender: share });
        const held = new Map<string, { sender: string; at: number }>();
        let now = 0;
        for (const step of steps) {
          now += step.advance;
          for (const [id, entry] of held) if (entry.at + 1_000 <= now) held.delete(id);
          const id = `${step.sender}-${step.id}`;
          if (step.release) {
            guard.release(id);
            held.delete(id);
            continue;
          }
          if (guard.check(id, now, step.sender).ok) held.set(id, { sender: step.sender, at: now });
          assert.ok(guard.size <= max);
          for (const sender of ['a', 'b', 'c']) {
            const mine = [...held.values()].filter((entry) => entry.sender === sender).length;
            assert.ok(guard.heldBy(sender) <= share);
            assert.ok(guard.heldBy(sender) >= mine, 'an id the model holds was forgotten early');
          }
        }
      }),
    );
  });
});
