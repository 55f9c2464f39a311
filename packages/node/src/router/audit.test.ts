import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfirmChannel } from 'amqplib';
import { leafHash } from '@dmr/contract';
import {
  AUDIT_CHECKPOINT_TYPE,
  AUDIT_RECORDS_TYPE,
  AUDIT_RECORD_TYPE,
  AUDIT_RESUME_TYPE,
  GENESIS,
  StreamAuditSink,
  auditRecordsIn,
  firstBrokenRecord,
  sealRecord,
  type AuditEvent,
} from './audit.js';

function event(n: number): AuditEvent {
  return {
    kind: 'route',
    node: 'node-a',
    messageId: `m-${n}`,
    sender: 'ria-bot',
    recipient: 'rik-bot',
    result: 'routed',
    reason: null,
    policyRevision: '1',
    policyReasons: ['GRANT'],
    configRevision: 1,
    at: '2026-11-27T12:00:00.000Z',
  };
}

/** A confirm channel stand-in: records bodies, confirms (or fails) each publish on the next tick. */
function fakeChannel(fail: (index: number) => boolean = () => false): { channel: ConfirmChannel; bodies: Buffer[] } {
  const bodies: Buffer[] = [];
  const channel = {
    sendToQueue(_queue: string, body: Buffer, _options: unknown, callback: (error: unknown) => void): boolean {
      const index = bodies.length;
      bodies.push(body);
      setImmediate(() => callback(fail(index) ? new Error('message nacked') : null));
      return true;
    },
  };
  return { channel: channel as unknown as ConfirmChannel, bodies };
}

/** A confirm channel whose confirms wait until `release(n)` (n = how many, in publish order; fail(i) nacks). */
function heldChannel(fail: (index: number) => boolean = () => false) {
  const bodies: Buffer[] = [];
  const held: Array<() => void> = [];
  const channel = {
    sendToQueue(_queue: string, body: Buffer, _options: unknown, callback: (error: unknown) => void): boolean {
      const index = bodies.length;
      bodies.push(body);
      held.push(() => callback(fail(index) ? new Error('message nacked') : null));
      return true;
    },
  };
  return {
    channel: channel as unknown as ConfirmChannel,
    bodies,
    release(count: number): void {
      for (const confirm of held.splice(0, count)) confirm();
    },
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The records in published batch messages, as stored, in order. */
function stored(bodies: readonly Buffer[]): Buffer[] {
  return bodies.flatMap((body) => auditRecordsIn(AUDIT_RECORDS_TYPE, body));
}

describe('audit chain', () => {
  it("chains records by the previous record's leaf hash, and names the first broken one", () => {
    let head = GENESIS;
    const stored: Buffer[] = [];
    for (let n = 1; n <= 4; n += 1) {
      const sealed = sealRecord('w-1', 'run-1', head, event(n));
      assert.deepEqual(sealed.leaf, leafHash(sealed.bytes));
      assert.equal(sealed.record.seq, n);
      assert.equal(sealed.record.prev, head.hash);
      head = sealed.head;
      stored.push(sealed.bytes);
    }
    assert.equal(JSON.parse(stored[0]?.toString() ?? '{}').prev, null);
    assert.ok(!stored.some((bytes) => bytes.toString().includes('payload')));
    assert.equal(firstBrokenRecord('w-1', stored), -1);
    const tampered = [...stored];
    tampered[2] = Buffer.from((stored[2] as Buffer).toString().replace('m-3', 'm-x'));
    assert.equal(firstBrokenRecord('w-1', tampered), 3, 'the record after the edited one no longer links');
    assert.equal(firstBrokenRecord('w-1', [stored[0] as Buffer, stored[2] as Buffer]), 1, 'a gap');
    assert.equal(firstBrokenRecord('w-2', stored), 0, 'another writer');
    assert.equal(firstBrokenRecord('w-1', [Buffer.from('not json')]), 0);
  });

  it('a restarted writer continues the seq under a new run, with prev null; the stored leaves reach the checkpointer', async () => {
    const leaves: Buffer[] = [];
    const first = new StreamAuditSink({ writer: 'w-1', onStored: (leaf) => void leaves.push(leaf) });
    const one = fakeChannel();
    first.attach(one.channel, undefined);
    await Promise.all([first.append(event(1)), first.append(event(2))]);
    assert.deepEqual(
      leaves,
      stored(one.bodies).map((bytes) => leafHash(bytes)),
    );
    const second = new StreamAuditSink({ writer: 'w-1' });
    second.resume(2);
    const two = fakeChannel();
    second.attach(two.channel, undefined);
    await second.append(event(3));
    const record = JSON.parse((stored(two.bodies)[0] as Buffer).toString()) as {
      seq: number;
      prev: unknown;
      run: string;
    };
    assert.equal(record.seq, 3);
    assert.equal(record.prev, null);
    assert.notEqual(record.run, first.run);
    assert.equal(firstBrokenRecord('w-1', stored([...one.bodies, ...two.bodies])), -1);
    assert.throws(() => second.resume(5), /cannot resume/);
    await Promise.all([first.close(), second.close()]);
  });

  it('refuses to be attached without a connection when it must read back after a lost confirm', () => {
    const sink = new StreamAuditSink({ writer: 'w-1', readBack: () => Promise.resolve({ leaves: [], head: null }) });
    assert.throws(() => sink.attach(fakeChannel().channel, undefined), /without a connection/);
  });

  it('batches appends into one stream message per batch and resolves each once confirmed; the stored records form one chain', async () => {
    const sink = new StreamAuditSink({ writer: 'w-1', maxBatch: 4, flushMs: 5 });
    const { channel, bodies } = fakeChannel();
    sink.attach(channel, undefined);
    await Promise.all(Array.from({ length: 10 }, (_, n) => sink.append(event(n))));
    assert.equal(bodies.length, 3, 'batches of 4, 4 and 2 records');
    assert.equal(stored(bodies).length, 10);
    assert.equal(firstBrokenRecord('w-1', stored(bodies)), -1);
    assert.equal(sink.head.seq, 10);
    await sink.close();
  });

  it('by default sends the records appended in one event loop turn as one message', async () => {
    const sink = new StreamAuditSink({ writer: 'w-1' });
    const { channel, bodies } = fakeChannel();
    sink.attach(channel, undefined);
    await Promise.all(Array.from({ length: 5 }, (_, n) => sink.append(event(n))));
    await sink.append(event(5));
    assert.deepEqual(
      bodies.map((body) => stored([body]).length),
      [5, 1],
    );
    assert.equal(firstBrokenRecord('w-1', stored(bodies)), -1);
    await sink.close();
  });

  it('publishes the next batch before the previous one is confirmed, settling each in chain order', async () => {
    const sink = new StreamAuditSink({ writer: 'w-1', maxBatch: 2, flushMs: 1_000 });
    const held = heldChannel();
    sink.attach(held.channel, undefined);
    const settled: number[] = [];
    const appends = Array.from({ length: 6 }, (_, n) => sink.append(event(n)).then(() => void settled.push(n)));
    await tick();
    assert.equal(held.bodies.length, 3, 'three batches out, none confirmed yet');
    assert.equal(firstBrokenRecord('w-1', stored(held.bodies)), -1, 'one chain across the batches');
    held.release(1);
    await tick();
    assert.deepEqual(settled, [0, 1]);
    assert.equal(sink.head.seq, 2);
    const closed = sink.close();
    held.release(2);
    await Promise.all([...appends, closed]);
    assert.deepEqual(settled, [0, 1, 2, 3, 4, 5]);
    assert.equal(sink.head.seq, 6);
  });

  it('a failed batch takes its records and the batches published after it down; the chain goes on from the last stored', async () => {
    const sink = new StreamAuditSink({ writer: 'w-1', maxBatch: 2, flushMs: 1_000 });
    const held = heldChannel((index) => index === 1);
    sink.attach(held.channel, undefined);
    const results = Promise.allSettled(Array.from({ length: 6 }, (_, n) => sink.append(event(n))));
    await tick();
    held.release(3);
    assert.deepEqual(
      (await results).map((result) => result.status),
      ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'rejected', 'rejected'],
    );
    assert.equal(sink.head.seq, 2);
    const next = sink.append(event(9));
    const more = sink.append(event(10));
    await tick();
    held.release(1);
    await Promise.all([next, more]);
    // Stored: batch 0, then the batch appended after the failure, chained onto its last record.
    assert.equal(firstBrokenRecord('w-1', stored([held.bodies[0] as Buffer, held.bodies[3] as Buffer])), -1);
    assert.equal(sink.head.seq, 4);
    await sink.close();
  });

  it('rejects appends without a channel and restarts the chain after a failed confirm', async () => {
    const sink = new StreamAuditSink({ writer: 'w-1', maxBatch: 64, flushMs: 1 });
    await assert.rejects(sink.append(event(1)), /not connected/);
    const { channel, bodies } = fakeChannel((index) => index === 1);
    sink.attach(channel, undefined);
    await sink.append(event(1));
    const results = await Promise.allSettled([sink.append(event(2)), sink.append(event(3))]);
    assert.deepEqual(
      results.map((result) => result.status),
      ['rejected', 'rejected'],
    );
    assert.equal(sink.head.seq, 1);
    await sink.append(event(4));
    // The confirmed records (the first, then the retry after the gap) still chain.
    assert.equal(firstBrokenRecord('w-1', stored([bodies[0] as Buffer, bodies[2] as Buffer])), -1);
    await sink.close();
  });

  it('reads the records of a batch message, of a single-record message and none of a checkpoint or marker', () => {
    const one = sealRecord('w-1', 'run-1', GENESIS, event(1));
    const two = sealRecord('w-1', 'run-1', one.head, event(2));
    const batch = Buffer.concat([one.bytes, Buffer.from('\n'), two.bytes, Buffer.from('\n')]);
    assert.deepEqual(auditRecordsIn(AUDIT_RECORDS_TYPE, batch), [one.bytes, two.bytes]);
    assert.deepEqual(auditRecordsIn(AUDIT_RECORD_TYPE, one.bytes), [one.bytes]);
    assert.deepEqual(auditRecordsIn(undefined, one.bytes), [one.bytes]);
    assert.deepEqual(auditRecordsIn(AUDIT_CHECKPOINT_TYPE, Buffer.from('{}')), []);
    assert.deepEqual(auditRecordsIn(AUDIT_RESUME_TYPE, Buffer.from('{}')), []);
    // A cut batch keeps its incomplete tail as a record of its own, for verify to name as broken.
    const cut = batch.subarray(0, batch.length - 5);
    assert.equal(auditRecordsIn(AUDIT_RECORDS_TYPE, cut).length, 2);
    assert.equal(firstBrokenRecord('w-1', auditRecordsIn(AUDIT_RECORDS_TYPE, cut)), 1);
  });
});
