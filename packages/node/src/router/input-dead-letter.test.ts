import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConsumeMessage } from 'amqplib';
import { SENDER, TD, originated, testMesh, type TestMesh } from '../message/mesh-test-support.js';
import { NOW, testMessage, userIdOf } from '../message/test-support.js';
import { asInInput, ingressSender, inputDeathDetail, inputDeathOf } from './input-dead-letter.js';
import { parkedOptions } from './parking.js';

/** What RabbitMQ 3.10 makes of a message that died in `queue` (published to `exchange`) and reached the reports. */
function deadLetter(
  properties: Record<string, unknown>,
  death: { queue: string; reason: string; exchange: string },
  earlier: unknown[] = [],
): Pick<ConsumeMessage, 'properties' | 'content'> {
  const { expiration, headers, ...rest } = properties as { expiration?: unknown; headers?: Record<string, unknown> };
  // Dead-lettering removes `expiration` and keeps it in the new x-death entry (rabbit_dead_letter:make_msg).
  const entry = { ...death, count: 1, ...(expiration === undefined ? {} : { 'original-expiration': expiration }) };
  return {
    content: Buffer.from('{}'),
    properties: { ...rest, headers: { ...headers, 'x-death': [entry, ...earlier] } } as ConsumeMessage['properties'],
  };
}

const RIA = userIdOf('ria-bot');

describe('input dead letters', () => {
  it('names the input and how the message died there; other dead letters are not input deaths', () => {
    const client = { userId: RIA, expiration: '1500', headers: { 'dmr-recipient': 'rik-bot' } };
    const expired = inputDeathOf(
      deadLetter(client, { queue: 'dmr.ingress.2', reason: 'expired', exchange: 'dmr.ingress' }),
    );
    assert.deepEqual(expired, {
      input: 'ingress',
      queue: 'dmr.ingress.2',
      reason: 'expired',
      parked: false,
      userId: RIA,
      expiration: '1500',
    });
    assert.equal(inputDeathDetail(expired), 'expired in dmr.ingress.2 before a router took it');
    const limit = inputDeathOf(
      deadLetter({}, { queue: 'dmr.mesh-ingress.0', reason: 'delivery_limit', exchange: 'dmr.mesh-ingress' }),
    );
    assert.equal(limit?.input, 'mesh');
    assert.equal(limit?.reason, 'delivery_limit');
    assert.ok(limit);
    assert.match(inputDeathDetail(limit), /delivery limit/);
    for (const [queue, reason] of [
      ['dmr.client.rik-bot', 'expired'],
      ['dmr.outbound.node-b', 'expired'],
      ['dmr.parking.0', 'expired'],
      ['dmr.ingress.0.x', 'expired'],
      ['dmr.ingress.0', 'maxlen'],
    ] as const) {
      assert.equal(inputDeathOf(deadLetter({}, { queue, reason, exchange: 'dmr.ingress' })), undefined, queue);
    }
    assert.equal(inputDeathOf({ properties: { headers: {} } as ConsumeMessage['properties'] }), undefined);
  });

  it('takes an ingress sender from user_id only: never from headers a client could set', () => {
    const forged = {
      userId: RIA,
      headers: {
        'dmr-sender': 'rik-bot',
        'dmr-parked-user-id': userIdOf('rik-bot'),
        'x-first-death-queue': 'dmr.parking.0',
      },
    };
    // The client's own x-death entries come after the broker's: the latest death is the broker's.
    const earlier = [{ queue: 'dmr.parking.0', reason: 'expired', exchange: '', count: 1 }];
    const death = inputDeathOf(
      deadLetter(forged, { queue: 'dmr.ingress.0', reason: 'expired', exchange: 'dmr.ingress' }, earlier),
    );
    assert.ok(death);
    assert.equal(ingressSender(death, TD), 'ria-bot');
    const sender = (userId: unknown): string | undefined => {
      const died = inputDeathOf(
        deadLetter({ userId }, { queue: 'dmr.ingress.0', reason: 'expired', exchange: 'dmr.ingress' }),
      );
      assert.ok(died);
      return ingressSender(died, TD);
    };
    assert.equal(sender(undefined), undefined, 'no user_id: nobody to tell');
    assert.equal(sender('spiffe://dmr.test/node/node-a'), undefined, 'a node is not a client');
    assert.equal(sender('spiffe://other.test/client/ria-bot'), undefined, 'another trust domain');
    assert.equal(sender('ria-bot'), undefined, 'not a SPIFFE id');
  });

  it('takes a parked copy’s user_id from the router’s header when it died after coming back (exchange "")', () => {
    const original = {
      messageId: 'id-1',
      userId: RIA,
      expiration: '60000',
      type: 'ChatMessage',
      headers: { 'dmr-recipient': 'rik-bot' },
    };
    const parked = parkedOptions(
      {
        content: Buffer.from('{}'),
        fields: { deliveryTag: 1, redelivered: false, exchange: 'dmr.ingress', routingKey: '', consumerTag: 'c' },
        properties: original as unknown as ConsumeMessage['properties'],
      },
      NOW,
      false,
    );
    const death = inputDeathOf(
      deadLetter(
        { ...parked, headers: parked.headers },
        { queue: 'dmr.ingress.0', reason: 'delivery_limit', exchange: '' },
      ),
    );
    assert.equal(death?.parked, true);
    assert.equal(death?.userId, RIA);
    assert.equal(death?.expiration, '60000');
    assert.ok(death);
    assert.equal(ingressSender(death, TD), 'ria-bot');
  });

  describe('a mesh input’s dead letter, verified as it was in the input', () => {
    let mesh: TestMesh;
    before(async () => {
      mesh = await testMesh(['node-a', 'node-b']);
    });
    after(async () => {
      await mesh?.cleanup();
    });

    it('verifies once expiration is back from the x-death entry, and not without it', async () => {
      // Certificates are issued now: verified at the wall clock, not the fixed NOW.
      const now = new Date();
      const at = new Date(now.getTime() - 1_000);
      const sent = originated(mesh.node('node-a'), 'node-b', at, testMessage({ expiration: '1500' }));
      const dead = deadLetter(sent.properties as Record<string, unknown>, {
        queue: 'dmr.mesh-ingress.0',
        reason: 'expired',
        exchange: 'dmr.mesh-ingress',
      });
      const death = inputDeathOf(dead);
      assert.ok(death);
      assert.equal(ingressSender(death, TD), undefined, 'a mesh message names no sender by user_id');
      const verifier = mesh.verifier('node-b');
      const asIs = await verifier.verify({ ...dead, content: Buffer.from(sent.content) }, now);
      assert.equal(asIs.ok, false, 'dead-lettering removed the signed expiration');
      const restored = asInInput({ ...dead, content: Buffer.from(sent.content) }, death);
      const verified = await verifier.verify(restored, now);
      assert.ok(verified.ok, JSON.stringify(verified));
      assert.equal(verified.message.sender, SENDER);
      // A claim changed on the way is not proved: no report to whoever it names.
      const forged = asInInput(
        {
          content: Buffer.from(sent.content),
          properties: { ...dead.properties, headers: { ...dead.properties.headers, 'dmr-sender': 'rik-bot' } },
        },
        death,
      );
      assert.equal((await verifier.verify(forged, now)).ok, false);
    });
  });
});
