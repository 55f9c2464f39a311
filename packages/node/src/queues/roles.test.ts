import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { queueRole, refusalOf, type QueueOperation } from './roles.js';

describe('queueRole', () => {
  it('names every queue of the layout', () => {
    assert.deepEqual(queueRole('dmr.ingress.0'), { kind: 'ingress', shard: 0 });
    assert.deepEqual(queueRole('dmr.ingress.12'), { kind: 'ingress', shard: 12 });
    assert.deepEqual(queueRole('dmr.mesh-ingress.3'), { kind: 'mesh-ingress', shard: 3 });
    assert.deepEqual(queueRole('dmr.client.bot-a'), { kind: 'client', client: 'bot-a' });
    assert.deepEqual(queueRole('dmr.client.bot-a.dlq'), { kind: 'dead-letter', client: 'bot-a' });
    assert.deepEqual(queueRole('dmr.outbound.node-2'), { kind: 'outbound', peer: 'node-2' });
    assert.deepEqual(queueRole('dmr.parking.2'), { kind: 'parking', shard: 2 });
    assert.deepEqual(queueRole('dmr.rejected'), { kind: 'rejected' });
    assert.deepEqual(queueRole('dmr.dead-letter-reports'), { kind: 'dead-letter-reports' });
    assert.deepEqual(queueRole('dmr.audit'), { kind: 'audit' });
  });

  it('does not mistake look-alikes for DMR queues', () => {
    for (const name of [
      'dmr.ingress.01',
      'dmr.ingress.x',
      'dmr.ingress.',
      'dmr.client.',
      'dmr.client.Bot',
      'dmr.client..dlq',
      'dmr.client.a.b',
      'dmr.outbound.-x',
      'dmr.parking.x',
      'amq.gen-1',
      'orders',
    ]) {
      assert.deepEqual(queueRole(name), { kind: 'other' }, name);
    }
  });
});

describe('refusalOf', () => {
  const allowed = (name: string, operation: QueueOperation): boolean =>
    refusalOf(queueRole(name), operation) === undefined;

  it('never peeks a queue with a delivery limit, nor the stream', () => {
    for (const name of ['dmr.client.bot-a', 'dmr.ingress.0', 'dmr.mesh-ingress.1', 'dmr.audit', 'orders']) {
      assert.equal(allowed(name, 'peek'), false, name);
    }
    for (const name of [
      'dmr.client.bot-a.dlq',
      'dmr.rejected',
      'dmr.dead-letter-reports',
      'dmr.outbound.n2',
      'dmr.parking.0',
    ]) {
      assert.equal(allowed(name, 'peek'), true, name);
    }
  });

  it('purges only evidence, never what DMR accepted', () => {
    for (const name of ['dmr.rejected', 'dmr.client.bot-a.dlq']) assert.equal(allowed(name, 'purge'), true, name);
    for (const name of [
      'dmr.client.bot-a',
      'dmr.ingress.0',
      'dmr.mesh-ingress.0',
      'dmr.outbound.n2',
      'dmr.parking.0',
      'dmr.dead-letter-reports',
      'dmr.audit',
      'orders',
    ]) {
      const refusal = refusalOf(queueRole(name), 'purge');
      assert.ok(refusal !== undefined, name);
      assert.ok(refusal.hint.length > 0);
    }
  });

  it('replays only a dead-letter queue', () => {
    assert.equal(allowed('dmr.client.bot-a.dlq', 'replay'), true);
    assert.equal(allowed('dmr.rejected', 'replay'), false);
    assert.equal(allowed('dmr.client.bot-a', 'replay'), false);
  });
});
