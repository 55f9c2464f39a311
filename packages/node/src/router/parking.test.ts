import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConsumeMessage } from 'amqplib';
import { linkKey, recipientKey } from './outcome.js';
import { parkable, parkedOptions, parksFor, unpark } from './parking.js';

function delivery(exchange: string, properties: Record<string, unknown>): ConsumeMessage {
  return {
    content: Buffer.from('{}'),
    fields: { deliveryTag: 1, redelivered: false, exchange, routingKey: 'dmr.ingress.0', consumerTag: 'c' },
    properties: { headers: {}, ...properties } as ConsumeMessage['properties'],
  };
}

describe('parking', () => {
  const original = {
    messageId: 'id-1',
    userId: 'spiffe://dmr.test/client/ria-bot',
    expiration: '60000',
    type: 'ChatMessage',
    timestamp: 1_700_000_000,
    headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1, 'x-delivery-count': 2 },
  };

  it('parks user_id and expiration as headers and puts them back when the copy returns', () => {
    const options = parkedOptions(delivery('dmr.ingress', original), 1234, true);
    assert.equal(options.userId, undefined, 'the router may not publish a client’s user_id');
    assert.equal(options.expiration, undefined, 'it must not expire in the parking queue on its own clock');
    assert.equal(options.mandatory, true);
    assert.equal(options.messageId, 'id-1');
    assert.equal(options.headers?.['x-delivery-count'], undefined);
    // What dead-lettering out of dmr.parking.0 adds to the copy.
    const back = delivery('', {
      ...options,
      headers: {
        ...options.headers,
        'x-death': [{ queue: 'dmr.parking.0', reason: 'expired', count: 1 }],
        'x-first-death-queue': 'dmr.parking.0',
        'x-first-death-reason': 'expired',
        'x-first-death-exchange': 'dmr.parking',
      },
    });
    assert.deepEqual(unpark(back), { takenAt: 1234, copied: true });
    assert.equal(back.properties.userId, original.userId);
    assert.equal(back.properties.expiration, original.expiration);
    assert.deepEqual(back.properties.headers, { 'dmr-recipient': 'rik-bot', 'dmr-version': 1 });
  });

  it('parks only its own dmr-parked-* headers: a client’s forged ones never come back as properties', () => {
    const forged = {
      ...original,
      expiration: undefined,
      headers: {
        ...original.headers,
        'dmr-parked-expiration': '1',
        'dmr-parked-copied': 1,
        'dmr-parked-taken-at': 1,
        'dmr-parked-user-id': 'spiffe://dmr.test/client/victim-bot',
      },
    };
    const options = parkedOptions(delivery('dmr.ingress', forged), 1234, false);
    assert.equal(options.headers?.['dmr-parked-expiration'], undefined);
    assert.equal(options.headers?.['dmr-parked-copied'], undefined);
    assert.equal(options.headers?.['dmr-parked-user-id'], original.userId);
    const back = delivery('', { ...options });
    assert.deepEqual(unpark(back), { takenAt: 1234, copied: false });
    assert.equal(back.properties.expiration, undefined, 'no expiration the client did not give it');
    assert.equal(back.properties.userId, original.userId);
  });

  it('keeps a dead letter’s own death first, and touches no delivery that did not come back from parking', () => {
    const death = { queue: 'dmr.client.rik-bot', reason: 'expired', count: 1 };
    const deadLetter = { ...original, headers: { 'x-death': [death], 'x-first-death-queue': 'dmr.client.rik-bot' } };
    const options = parkedOptions(delivery('dmr.dead-letter', deadLetter), 5, false);
    const back = delivery('', {
      ...options,
      headers: { ...options.headers, 'x-death': [{ queue: 'dmr.parking.0', reason: 'expired', count: 3 }, death] },
    });
    assert.deepEqual(unpark(back), { takenAt: 5, copied: false });
    assert.deepEqual(back.properties.headers, { 'x-death': [death], 'x-first-death-queue': 'dmr.client.rik-bot' });
    // A client's own message (exchange dmr.ingress) with the same headers is not a parked copy.
    const forged = delivery('dmr.ingress', { headers: { 'dmr-parked-user-id': 'spiffe://dmr.test/client/x' } });
    assert.equal(unpark(forged), undefined);
    assert.equal(forged.properties.headers?.['dmr-parked-user-id'], 'spiffe://dmr.test/client/x');
  });

  it('never parks a message that names extra routing keys (CC/BCC)', () => {
    assert.equal(parkable(delivery('dmr.ingress', { headers: { CC: ['dmr.client.x'] } })), false);
    assert.equal(parkable(delivery('dmr.ingress', original)), true);
  });

  it("parks a recipient's overflow, never a link's (its outbound queue is its buffer; a partition pushes back)", () => {
    assert.equal(parksFor(recipientKey('rik-bot')), true);
    assert.equal(parksFor(linkKey('node-b')), false);
    // A peer named like a recipient key is still a link.
    assert.equal(parksFor(linkKey('recipient:x')), false);
  });
});
