import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ReplayGuard } from './replay.js';
import { ReplayJournal } from './replay-journal.js';

const WINDOW = 60_000;
const dirs: string[] = [];

function shardDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dmr-replay-journal-'));
  dirs.push(dir);
  return join(dir, 'shard-0');
}

/** A guard writing through a journal opened on `dir`, restored from it, as the router builds one. */
function durableGuard(dir: string, now: () => number, options: { maxEntries?: number; segmentMs?: number } = {}) {
  const journal = ReplayJournal.open({ dir, now, ...(options.segmentMs === undefined ? {} : options) });
  const guard = new ReplayGuard({ windowMs: WINDOW, maxEntries: options.maxEntries ?? 100, journal });
  const restored = guard.restore(journal.takeLoaded(), now());
  return { journal, guard, restored };
}

function segmentText(dir: string): string {
  return readdirSync(dir)
    .sort()
    .map((name) => readFileSync(join(dir, name), 'utf8'))
    .join('');
}

describe('ReplayJournal', () => {
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('an accepted id is on disk before the next step of its message, without close(): a killed router loses none', async () => {
    const dir = shardDir();
    let now = 1_000;
    const first = durableGuard(dir, () => now);
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    for (const id of ids) assert.ok(first.guard.check(id, now, 'ria-bot').ok);
    // The router's path awaits the policy right after the check: that continuation runs after the flush.
    await Promise.resolve();
    const text = segmentText(dir);
    for (const id of ids) assert.match(text, new RegExp(`^\\+${now + WINDOW} ${id} ria-bot$`, 'm'));

    // A new router on the same shard, the first never closed (as after SIGKILL).
    now += 1_000;
    const second = durableGuard(dir, () => now);
    assert.equal(second.restored, 3);
    assert.equal(second.journal.load.ids, 3);
    for (const id of ids) {
      const replay = second.guard.check(id, now, 'ria-bot');
      assert.ok(!replay.ok);
      assert.equal(replay.reason, 'MESSAGE_REPLAYED');
    }
    assert.equal(second.guard.heldBy('ria-bot'), 3, 'the sender share is restored too');
    assert.ok(second.guard.check(randomUUID(), now, 'ria-bot').ok);
    first.journal.close();
    second.journal.close();
  });

  it('restores ids until they expire, at their first expiry: a restart does not extend the window', () => {
    const dir = shardDir();
    let now = 0;
    const first = durableGuard(dir, () => now);
    const id = randomUUID();
    first.guard.check(id, now, 'ria-bot');
    first.journal.close();
    now = WINDOW - 1;
    const second = durableGuard(dir, () => now);
    assert.equal(second.restored, 1);
    assert.equal((second.guard.check(id, now, 'ria-bot') as { reason?: string }).reason, 'MESSAGE_REPLAYED');
    second.journal.close();
    now = WINDOW;
    const third = durableGuard(dir, () => now);
    assert.equal(third.restored, 0);
    assert.ok(third.guard.check(id, now, 'ria-bot').ok, 'forgotten at exactly seenAt + window, as in memory');
    third.journal.close();
  });

  it('a released id (its message handed back for redelivery) is not restored', () => {
    const dir = shardDir();
    const now = 5_000;
    const first = durableGuard(dir, () => now);
    const kept = randomUUID();
    const released = randomUUID();
    first.guard.check(kept, now, 'ria-bot');
    first.guard.check(released, now, 'ria-bot');
    first.guard.release(released);
    first.journal.close();
    const second = durableGuard(dir, () => now);
    assert.equal(second.restored, 1);
    assert.ok(second.guard.check(released, now, 'ria-bot').ok);
    assert.ok(!second.guard.check(kept, now, 'ria-bot').ok);
    second.journal.close();
  });

  it('a parked id stays parked across a restart: a client replay is refused, the router’s own copy taken once', () => {
    const dir = shardDir();
    const now = 5_000;
    const first = durableGuard(dir, () => now);
    const parked = randomUUID();
    const taken = randomUUID();
    first.guard.check(parked, now, 'ria-bot');
    first.guard.park(parked);
    first.guard.check(taken, now, 'ria-bot');
    first.guard.park(taken);
    assert.ok(first.guard.check(taken, now, 'ria-bot', true).ok, 'its copy came back before the restart');
    first.journal.close();
    assert.match(segmentText(dir), new RegExp(`^~${now + WINDOW} ${parked} ria-bot$`, 'm'));

    const second = durableGuard(dir, () => now + 1);
    assert.equal(second.restored, 2);
    const replay = second.guard.check(parked, now + 1, 'ria-bot');
    assert.equal((replay as { reason?: string }).reason, 'MESSAGE_REPLAYED', 'a client replay while it is parked');
    assert.equal(
      (second.guard.check(taken, now + 1, 'ria-bot', true) as { reason?: string }).reason,
      'MESSAGE_REPLAYED',
      'a second copy of a message whose copy was already taken',
    );
    assert.ok(second.guard.check(parked, now + 2, 'ria-bot', true).ok, 'the parked copy back, after the restart');
    assert.ok(!second.guard.check(parked, now + 3, 'ria-bot', true).ok, 'and only once');
    second.journal.close();
  });

  it('opens a new segment every segmentMs and deletes a segment once every id in it expired', () => {
    const dir = shardDir();
    let now = 0;
    const { journal, guard } = durableGuard(dir, () => now, { segmentMs: 10_000 });
    for (let step = 0; step < 5; step += 1) {
      guard.check(randomUUID(), now, 'ria-bot');
      journal.flush();
      now += 10_000;
    }
    assert.equal(readdirSync(dir).length, 5);
    // Ids of the first two segments expire at 60 000 and 70 000.
    now = 70_000;
    guard.check(randomUUID(), now, 'ria-bot');
    journal.flush();
    assert.deepEqual(readdirSync(dir).sort(), [
      '000000000003.log',
      '000000000004.log',
      '000000000005.log',
      '000000000006.log',
    ]);
    journal.close();
    // A start drops wholly expired segments too, and writes into a segment of its own.
    now = 100_000;
    const reopened = ReplayJournal.open({ dir, now: () => now });
    assert.equal(reopened.load.deleted, 3);
    assert.equal(reopened.load.ids, 1);
    assert.deepEqual(readdirSync(dir).sort(), ['000000000006.log', '000000000007.log']);
    reopened.close();
  });

  it('skips what does not parse — a torn last line, a foreign line — and never continues a torn line', () => {
    const dir = shardDir();
    const now = 1_000;
    const first = durableGuard(dir, () => now);
    const good = randomUUID();
    first.guard.check(good, now, 'ria-bot');
    first.journal.close();
    const segment = join(dir, readdirSync(dir)[0] ?? '');
    const torn = randomUUID();
    appendFileSync(segment, `-1 not-a-uuid\n+${now + WINDOW} ${randomUUID()} two words\n+abc ${randomUUID()} x\n`);
    appendFileSync(segment, `+${now + WINDOW} ${torn} ria-b`);
    writeFileSync(join(dir, 'notes.txt'), 'not a segment\n');
    const second = durableGuard(dir, () => now);
    assert.equal(second.journal.load.lines, 5);
    assert.equal(second.journal.load.skipped, 4);
    assert.equal(second.restored, 1);
    assert.ok(!second.guard.check(good, now, 'ria-bot').ok);
    assert.ok(second.guard.check(torn, now, 'ria-bot').ok, 'a torn line is not a remembered id');
    second.journal.close();
    // The id accepted after the restart went to a new segment, whole.
    const third = durableGuard(dir, () => now);
    assert.equal(third.restored, 2);
    third.journal.close();
  });

  it('restores at most maxEntries ids: the bound holds after a restart too', () => {
    const dir = shardDir();
    const now = 1_000;
    const first = durableGuard(dir, () => now, { maxEntries: 10 });
    for (let i = 0; i < 10; i += 1) first.guard.check(randomUUID(), now, `bot-${i % 2}`);
    first.journal.close();
    const second = durableGuard(dir, () => now, { maxEntries: 4 });
    assert.equal(second.restored, 4);
    assert.equal(second.guard.size, 4);
    assert.equal(second.guard.heldBy('bot-0') + second.guard.heldBy('bot-1'), 4);
    second.journal.close();
  });

  it('a corrupt or planted segment cannot stall or swell a start: over-long lines, FIFOs, symlinks, too many bytes', () => {
    const dir = shardDir();
    mkdirSync(dir, { recursive: true });
    const now = 1_000;
    const line = (id: string): string => `+${now + WINDOW} ${id} ria-bot\n`;
    const [old, kept, afterLong] = [randomUUID(), randomUUID(), randomUUID()];
    // Oldest: past the byte bound once the newer ones are counted, so deleted unread.
    writeFileSync(join(dir, '000000000001.log'), line(old).repeat(4));
    // A line of 3 MiB (longer than any the journal writes, across read pieces), then a good one; a torn 2 MiB tail.
    writeFileSync(
      join(dir, '000000000002.log'),
      `+${'9'.repeat(3 * 1_048_576)}\n${line(afterLong)}${'x'.repeat(2 * 1_048_576)}`,
    );
    writeFileSync(join(dir, '000000000003.log'), line(kept));
    // A FIFO would block a plain read forever; a symlink could point anywhere (a device, another shard).
    execFileSync('mkfifo', [join(dir, '000000000004.log')]);
    writeFileSync(join(dir, 'elsewhere'), line(randomUUID()));
    symlinkSync(join(dir, 'elsewhere'), join(dir, '000000000005.log'));
    const newest = 5 * 1_048_576 + line(afterLong).length + line(kept).length + 2;
    const journal = ReplayJournal.open({ dir, now: () => now, loadMaxBytes: newest + line(old).length });
    const { load } = journal;
    assert.equal(load.segments, 5);
    assert.equal(load.unread, 3, 'the FIFO, the symlink and the oldest segment past the bound');
    assert.equal(load.deleted, 1);
    assert.deepEqual(
      journal.takeLoaded().map(({ id }) => id),
      [afterLong, kept],
    );
    assert.equal(load.lines, 4);
    assert.equal(load.skipped, 2, 'the over-long line and the torn tail');
    assert.ok(!readdirSync(dir).includes('000000000001.log'), 'the oldest segment is gone');
    journal.close();
  });
});
