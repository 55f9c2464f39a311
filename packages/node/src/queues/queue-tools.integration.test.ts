/**
 * The operator's queue tools on a real node (one NodeFixture: harness broker,
 * layout, router): dead letters made by real TTL expiry are listed, peeked
 * without being consumed, replayed to their recipient with the same ids,
 * and evidence is purged — while the queues holding accepted messages
 * refuse peeks and purges that could lose or dead-letter them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import { waitFor } from '@dmr/core/testing';
import { NodeFixture, parseReport, type TestClient } from '../testing/node-fixture.js';
import { listNodeQueues, peekQueue, purgeEvidence, replayDeadLetters } from './queue-tools.js';

const DLQ = 'dmr.client.ria-desk.dlq';

async function refusedWith(promise: Promise<unknown>, code: string): Promise<DmrError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof DmrError, String(error));
    assert.equal(error.code, code, error.message);
    assert.ok((error.hint ?? '').length > 0, 'a refusal says what to do instead');
    return error;
  }
  assert.fail(`expected ${code}`);
}

describe('dmr queue tools on a harness node', () => {
  let node: NodeFixture;
  let ria: TestClient;
  const expired: string[] = [];

  before(async () => {
    node = await NodeFixture.start({ label: 'queues' });
    ria = await node.client('ria-bot');
    // Nobody consumes ria-desk: three messages expire there and are dead-lettered to its DLQ.
    for (let i = 0; i < 3; i += 1) {
      expired.push((await ria.send({ to: 'ria-desk', body: `{"n":${i}}`, expiration: '200' })) ?? '');
    }
    const reports: string[] = [];
    while (reports.length < 3) reports.push(parseReport(await ria.next(15_000)).messageId ?? '');
    assert.deepEqual([...reports].sort(), [...expired].sort());
    await waitFor('the DLQ statistics', async () => (await node.depth(DLQ)) === 3, { timeoutMs: 15_000 });
  });

  after(async () => {
    await node?.stop();
  });

  it('lists every queue with its role and depth', async () => {
    const rows = await listNodeQueues(node.management, node.vhost);
    const byName = new Map(rows.map((row) => [row.name, row]));
    assert.equal(byName.get(DLQ)?.role, 'dead-letter');
    assert.equal(byName.get(DLQ)?.messages, 3);
    assert.equal(byName.get(DLQ)?.type, 'quorum');
    assert.equal(byName.get('dmr.client.ria-desk')?.role, 'client');
    assert.equal(byName.get('dmr.ingress.0')?.role, 'ingress');
    assert.equal(byName.get('dmr.ingress.0')?.consumers, 1, 'the router consumes its shard');
    assert.equal(byName.get('dmr.rejected')?.role, 'rejected');
    assert.equal(byName.get('dmr.parking.0')?.role, 'parking');
    assert.equal(byName.get('dmr.audit')?.role, 'audit');
  });

  it('peeks metadata without payloads and leaves the messages where they were', async () => {
    const peeked = await peekQueue(node.management, node.vhost, DLQ, { count: 10 });
    assert.deepEqual(peeked.map((message) => message.messageId).sort(), [...expired].sort());
    for (const message of peeked) {
      assert.equal(message.sender, 'ria-bot');
      assert.equal(message.recipient, 'ria-desk');
      assert.equal(message.reason, 'expired');
      assert.equal(message.deaths[0]?.queue, 'dmr.client.ria-desk');
      assert.equal(message.payload, undefined);
      assert.ok(!JSON.stringify(message).includes('"n":'), 'no body without --payloads');
    }
    const again = await peekQueue(node.management, node.vhost, DLQ, { count: 10, payloads: true });
    assert.equal(again.length, 3, 'a peek consumes nothing');
    assert.deepEqual(again.map((message) => message.payload?.data).sort(), ['{"n":0}', '{"n":1}', '{"n":2}']);
  });

  it('refuses to peek a queue with a delivery limit, and to purge anything DMR accepted', async () => {
    await refusedWith(
      peekQueue(node.management, node.vhost, 'dmr.client.ria-desk', { count: 1 }),
      'PRECONDITION_FAILED',
    );
    await refusedWith(peekQueue(node.management, node.vhost, 'dmr.ingress.0', { count: 1 }), 'PRECONDITION_FAILED');
    await refusedWith(peekQueue(node.management, node.vhost, DLQ, { count: 0 }), 'INVALID_ARGUMENT');
    await refusedWith(peekQueue(node.management, node.vhost, 'dmr.client.nobody.dlq', { count: 1 }), 'NOT_FOUND');
    for (const queue of ['dmr.client.ria-desk', 'dmr.ingress.0', 'dmr.dead-letter-reports', 'dmr.audit']) {
      await refusedWith(purgeEvidence(node.management, node.vhost, queue), 'PRECONDITION_FAILED');
    }
    await refusedWith(replayDeadLetters(node.management, node.vhost, 'no-such-client'), 'NOT_FOUND');
  });

  it('replays the dead letters to their recipient with the same message ids, and empties the DLQ', async () => {
    const progress: Array<number | null> = [];
    const result = await replayDeadLetters(node.management, node.vhost, 'ria-desk', {
      onProgress: (remaining) => progress.push(remaining),
      pollMs: 50,
    });
    assert.equal(result.to, 'dmr.client.ria-desk');
    assert.equal(result.before, 3);
    assert.equal(await node.management.getShovel(node.vhost, result.shovel), undefined, 'the move shovel is gone');
    const desk = await node.client('ria-desk');
    const received: string[] = [];
    while (received.length < 3) received.push(String((await desk.next(15_000)).properties.messageId));
    assert.deepEqual(received.sort(), [...expired].sort());
    // Nothing left behind: a get on the DLQ finds nothing (statistics would lag).
    assert.deepEqual(await node.take(DLQ), []);
  });

  it('purges the rejected queue (evidence) after a refusal', async () => {
    await ria.send({ to: 'ria-bot', type: null });
    const report = parseReport(await ria.next(15_000));
    assert.equal(report.reason, 'TYPE_MISSING');
    await waitFor('the refusal in dmr.rejected', async () => (await node.depth('dmr.rejected')) >= 1, {
      timeoutMs: 15_000,
    });
    const [refused] = await peekQueue(node.management, node.vhost, 'dmr.rejected', { count: 1 });
    assert.equal(refused?.reason, 'TYPE_MISSING');
    const result = await purgeEvidence(node.management, node.vhost, 'dmr.rejected');
    assert.ok((result.purged ?? 0) >= 1);
    assert.deepEqual(await node.take('dmr.rejected'), []);
  });
});
