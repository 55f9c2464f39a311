import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { leafHash } from '@dmr/contract';
import { GENESIS, sealRecord, type AuditEvent, type ChainHead } from '../router/audit.js';
import { adopt, type WriterTail } from './tail.js';

const event = (n: number): AuditEvent => ({
  kind: 'route',
  node: 'node-1',
  messageId: `m-${n}`,
  sender: 'ria-bot',
  recipient: 'rik-bot',
  result: 'routed',
  reason: null,
  policyRevision: '1',
  policyReasons: [],
  configRevision: 1,
  at: '2026-12-05T12:00:00.000Z',
});

/** Records 1..count of one run of `writer`, as stored. */
function chain(writer: string, count: number, head: ChainHead = GENESIS): Buffer[] {
  const out: Buffer[] = [];
  for (let n = head.seq + 1; n <= count; n += 1) {
    const sealed = sealRecord(writer, 'run-a', head, event(n));
    head = sealed.head;
    out.push(sealed.bytes);
  }
  return out;
}

describe('adopting a writer tail', () => {
  it('takes the records after the checkpoint that continue the chain, and passes over everything else', () => {
    const stored = chain('node-1/router-0', 8);
    const tail: WriterTail = { leaves: [], head: null, read: 0, skipped: 0 };
    const options = { writer: 'node-1/router-0', after: 5 };
    for (const bytes of chain('node-1/router-1', 8)) adopt(tail, bytes, options); // another writer
    adopt(tail, Buffer.from('not json'), options);
    for (const bytes of stored) adopt(tail, bytes, options); // 1–5 are behind the checkpoint
    assert.deepEqual(
      tail.leaves,
      stored.slice(5).map((bytes) => leafHash(bytes)),
    );
    assert.equal(tail.head, leafHash(stored[7] as Buffer).toString('hex'));
    assert.equal(tail.skipped, 0);
    // A record that does not name the last adopted one (here: 7 again) does not join.
    adopt(tail, stored[6] as Buffer, options);
    assert.equal(tail.leaves.length, 3);
    assert.equal(tail.skipped, 1);
  });

  it('with the hash of the last record known stored, the first adopted record must name it', () => {
    const stored = chain('node-1/router-0', 4);
    const options = { writer: 'node-1/router-0', after: 2 };
    const known = leafHash(stored[1] as Buffer).toString('hex');
    const joins: WriterTail = { leaves: [], head: null, read: 0, skipped: 0 };
    for (const bytes of stored) adopt(joins, bytes, { ...options, afterHash: known });
    assert.equal(joins.leaves.length, 2);
    // Another record 3 (e.g. of another chain under the same name) does not continue what this writer stored.
    const other: WriterTail = { leaves: [], head: null, read: 0, skipped: 0 };
    for (const bytes of stored) adopt(other, bytes, { ...options, afterHash: 'ff'.repeat(32) });
    assert.deepEqual(other.leaves, []);
    assert.equal(other.skipped, 2);
  });
});
