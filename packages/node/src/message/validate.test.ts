import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ERROR_CATALOGUE } from '@dmr/core';
import { type ValidatedMessage } from './contract.js';
import { MESSAGE_REJECTION_CODES, type CheckResult, type WireMessage } from '@dmr/contract';
import { messageContext, senderFromUserId, validateAtOrigin } from './validate.js';
import { LIMITS, NOW, testConfig, testMessage, userIdOf, without, type MessageParts } from './test-support.js';

const context = messageContext(testConfig());

function check(message: WireMessage, now = NOW): CheckResult<ValidatedMessage> {
  return validateAtOrigin(message, context, now);
}

function refused(parts: MessageParts, reason: string, now = NOW): void {
  const result = check(testMessage(parts), now);
  assert.equal(result.ok, false, `expected ${reason}`);
  if (!result.ok) assert.equal(result.reason, reason, result.detail);
}

function headers(extra: Record<string, unknown>): Record<string, unknown> {
  return { 'dmr-recipient': 'police-bot', 'dmr-version': 1, ...extra };
}

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('validateAtOrigin', () => {
  it('every rejection code is in the error catalogue with a summary', () => {
    for (const code of MESSAGE_REJECTION_CODES) assert.ok(ERROR_CATALOGUE[code].summary.length > 10, code);
  });

  it('accepts a valid message and returns normalised metadata', () => {
    const id = 'a1b2c3d4-0000-4000-8000-00000000000f';
    const result = check(
      testMessage({
        messageId: id,
        expiration: '60000',
        headers: headers({ traceparent: TRACEPARENT, tracestate: 'ts' }),
      }),
    );
    assert.ok(result.ok, result.ok ? '' : result.detail);
    assert.deepEqual(result.message, {
      messageId: id,
      sender: 'tax-bot',
      recipient: 'police-bot',
      recipientHomeNode: 'dmr-tallinn',
      type: 'ChatMessage',
      timestampMs: Math.floor(NOW / 1000) * 1000,
      expirationMs: 60000,
      sizeBytes: 17,
      traceparent: TRACEPARENT,
      tracestate: 'ts',
    });
  });

  it('drops a traceparent that is not W3C version 00 and still accepts the message', () => {
    for (const traceparent of ['tp', TRACEPARENT.toUpperCase(), `01${TRACEPARENT.slice(2)}`, `${TRACEPARENT}-x`, 7]) {
      const result = check(testMessage({ headers: headers({ traceparent }) }));
      assert.ok(result.ok, result.ok ? '' : result.detail);
      assert.equal(result.message.traceparent, undefined, String(traceparent));
    }
  });

  it('routes to a remote recipient by its home node', () => {
    const result = check(testMessage({ headers: headers({ 'dmr-recipient': 'edu-bot' }) }));
    assert.ok(result.ok);
    assert.equal(result.message.recipientHomeNode, 'dmr-tartu');
  });

  it('refuses each broken rule with its own code', () => {
    refused({ messageId: undefined }, 'MESSAGE_ID_INVALID');
    refused({ messageId: 'not-a-uuid' }, 'MESSAGE_ID_INVALID');
    refused({ messageId: 'A1B2C3D4-0000-4000-8000-00000000000F' }, 'MESSAGE_ID_INVALID');
    refused({ messageId: 42 }, 'MESSAGE_ID_INVALID');
    refused({ userId: undefined }, 'SENDER_MISSING');
    refused({ userId: '' }, 'SENDER_MISSING');
    refused({ userId: userIdOf('nobody-bot') }, 'SENDER_UNKNOWN');
    refused({ userId: userIdOf('edu-bot') }, 'SENDER_UNKNOWN'); // a client of another node
    refused({ userId: userIdOf('sleepy-bot') }, 'SENDER_INACTIVE');
    refused({ userId: userIdOf('bad-bot') }, 'SENDER_DENIED');
    refused({ headers: { 'dmr-version': 1 } }, 'RECIPIENT_MISSING');
    refused({ headers: headers({ 'dmr-recipient': 'Police Bot' }) }, 'RECIPIENT_INVALID');
    refused({ headers: headers({ 'dmr-recipient': 7 }) }, 'RECIPIENT_INVALID');
    refused({ headers: headers({ 'dmr-recipient': 'nobody-bot' }) }, 'RECIPIENT_UNKNOWN');
    refused({ headers: headers({ 'dmr-recipient': 'gone-bot' }) }, 'RECIPIENT_INACTIVE');
    refused({ headers: headers({ 'dmr-recipient': 'bad-bot' }) }, 'RECIPIENT_DENIED');
    refused({ type: undefined }, 'TYPE_MISSING');
    refused({ type: '1ChatMessage' }, 'TYPE_INVALID');
    refused({ type: 'Chat Message' }, 'TYPE_INVALID');
    refused({ type: 'x'.repeat(65) }, 'TYPE_INVALID');
    refused({ type: 'dmr.DeliveryReport' }, 'TYPE_INVALID');
    refused({ timestamp: undefined }, 'TIMESTAMP_MISSING');
    refused({ timestamp: '1700000000' }, 'TIMESTAMP_MISSING');
    refused({ timestamp: Math.floor(NOW / 1000) + 0.5 }, 'TIMESTAMP_MISSING');
    refused({ timestamp: NOW }, 'TIMESTAMP_SKEW'); // milliseconds instead of seconds
    refused({ expiration: 'soon' }, 'EXPIRATION_INVALID');
    refused({ expiration: '-1' }, 'EXPIRATION_INVALID');
    refused({ expiration: String(LIMITS.maxTtlMs + 1) }, 'EXPIRATION_TOO_LONG');
    refused({ body: Buffer.alloc(LIMITS.maxMessageBytes + 1) }, 'MESSAGE_TOO_LARGE');
    refused({ headers: { 'dmr-recipient': 'police-bot' } }, 'VERSION_UNSUPPORTED');
    refused({ headers: headers({ 'dmr-version': 2 }) }, 'VERSION_UNSUPPORTED');
    for (const name of ['dmr-sender', 'dmr-origin', 'dmr-hops', 'dmr-sig']) {
      refused({ headers: headers({ [name]: 'forged' }) }, 'HEADER_RESERVED');
    }
  });

  it('accepts the limits exactly and refuses one past them', () => {
    assert.ok(check(testMessage({ body: Buffer.alloc(LIMITS.maxMessageBytes) })).ok);
    assert.ok(check(testMessage({ expiration: String(LIMITS.maxTtlMs) })).ok);
    assert.ok(check(testMessage({ expiration: LIMITS.maxTtlMs })).ok, 'a number, as amqplib accepts on publish');
    assert.ok(check(testMessage({ headers: headers({ 'dmr-version': '1' }) })).ok);
    const seconds = Math.floor(NOW / 1000);
    const skew = LIMITS.timestampSkewMs / 1000;
    assert.ok(check(testMessage({ timestamp: seconds + skew }), seconds * 1000).ok);
    refused({ timestamp: seconds + skew + 1 }, 'TIMESTAMP_SKEW', seconds * 1000);
    // The past is the replay memory's: dedupWindowMs − timestampSkewMs old is the last accepted second.
    const maxAge = (LIMITS.dedupWindowMs - LIMITS.timestampSkewMs) / 1000;
    assert.ok(check(testMessage({ timestamp: seconds - maxAge }), seconds * 1000).ok);
    refused({ timestamp: seconds - maxAge - 1 }, 'MESSAGE_EXPIRED', seconds * 1000);
  });

  it('does not take a message that waited in a full ingress for a skewed clock: only the future proves skew', () => {
    // Sent with a right clock, taken by the router 10 min later (past the ±5 min skew): accepted.
    const seconds = Math.floor(NOW / 1000);
    const waited = check(testMessage({ timestamp: seconds }), (seconds + 600) * 1000);
    assert.ok(waited.ok, waited.ok ? '' : waited.detail);
    // A sender whose clock runs 10 min ahead is still refused, and the detail says which way.
    const ahead = check(testMessage({ timestamp: seconds + 600 }), seconds * 1000);
    assert.ok(!ahead.ok && ahead.reason === 'TIMESTAMP_SKEW' && ahead.detail.includes('ahead'));
  });

  it('refuses a header table over limits.maxHeaderBytes encoded, before reading any header', () => {
    // 4 (table) + entries of 1 + key + 5 + value: fill exactly to the limit, then one byte more.
    const base = headers({});
    const used = 4 + (1 + 13 + 5 + 10) + (1 + 11 + 9);
    const filler = LIMITS.maxHeaderBytes - used - (1 + 7 + 5);
    const exact = check(testMessage({ headers: { ...base, 'app-pad': 'x'.repeat(filler) } }));
    assert.ok(exact.ok, exact.ok ? '' : exact.detail);
    refused({ headers: { ...base, 'app-pad': 'x'.repeat(filler + 1) } }, 'HEADERS_TOO_LARGE');
    // Too large wins over every later rule, a reserved header included.
    refused({ headers: { 'dmr-sender': 'x', pad: Buffer.alloc(LIMITS.maxHeaderBytes) } }, 'HEADERS_TOO_LARGE');
  });

  it('refuses CC and BCC headers in any letter case: RabbitMQ would route by them', () => {
    for (const name of ['CC', 'BCC', 'cc', 'Bcc']) {
      refused({ headers: headers({ [name]: ['police-bot'] }) }, 'ROUTING_HEADER_FORBIDDEN');
    }
    refused({ headers: headers({ CC: ['dmr.audit'], 'dmr-sender': 'x' }) }, 'ROUTING_HEADER_FORBIDDEN');
  });

  it('reads the sender only from spiffe://<this trust domain>/client/<valid id> in user_id', () => {
    const invalid = [
      'tax-bot', // the plain id: the contract before SPIFFE logins
      'Not An Id',
      'spiffe://other.test/client/tax-bot', // another trust domain
      'spiffe://dmr.test/node/tax-bot', // a node, not a client
      'spiffe://dmr.test/operator/tax-bot',
      'spiffe://dmr.test/client/Tax-Bot',
      'spiffe://dmr.test/client/tax-bot/extra',
      'spiffe://dmr.test/client/',
      'spiffe://DMR.TEST/client/tax-bot',
      'SPIFFE://dmr.test/client/tax-bot',
      ' spiffe://dmr.test/client/tax-bot',
      'spiffe://dmr.test/client/tax-bot\n',
      'harness_admin',
    ];
    for (const userId of invalid) {
      const result = check(testMessage({ userId }));
      assert.ok(!result.ok, userId);
      assert.equal(result.reason, 'SENDER_INVALID', userId);
      assert.equal(result.detail, 'user_id is not spiffe://dmr.test/client/<id>', 'never echoes the value');
      assert.equal(senderFromUserId(userId, 'dmr.test'), undefined, userId);
    }
    assert.equal(senderFromUserId(userIdOf('tax-bot'), 'dmr.test'), 'tax-bot');
    assert.equal(senderFromUserId(userIdOf('tax-bot'), 'other.test'), undefined);
    assert.equal(senderFromUserId(42, 'dmr.test'), undefined);
    const accepted = check(
      testMessage({ userId: userIdOf('police-bot'), headers: headers({ 'dmr-recipient': 'tax-bot' }) }),
    );
    assert.ok(accepted.ok);
    assert.equal(accepted.message.sender, 'police-bot', 'the plain id goes on: dmr-sender, audit, reports, policy');
  });

  it('property: a user_id that is not a client SPIFFE id of this trust domain is SENDER_INVALID', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }).filter((text) => !/^spiffe:\/\/dmr\.test\/client\/[a-z0-9-]+$/.test(text)),
        (userId) => {
          const result = check(testMessage({ userId }));
          assert.ok(!result.ok);
          assert.equal(result.reason, 'SENDER_INVALID');
        },
      ),
    );
  });

  it('never puts payload content in a reason', () => {
    const secret = 'SECRET-PAYLOAD-CONTENT';
    const body = Buffer.from(secret.repeat(100));
    for (const parts of [{ body }, { body, userId: userIdOf('nobody-bot') }, { body, type: secret + ' x' }]) {
      const result = check(testMessage(parts));
      assert.ok(!result.ok);
      assert.ok(!result.detail.includes(secret), result.detail);
    }
  });

  const uuid = fc.uuid();
  const localSender = fc.constantFrom('tax-bot', 'police-bot');
  const recipient = fc.constantFrom('tax-bot', 'police-bot', 'edu-bot');
  const type = fc.stringMatching(/^[A-Za-z][A-Za-z0-9._-]{0,63}$/).filter((t) => !t.startsWith('dmr.'));
  const skewSeconds = fc.integer({ min: -LIMITS.timestampSkewMs / 1000, max: LIMITS.timestampSkewMs / 1000 });
  const expiration = fc.option(fc.integer({ min: 0, max: LIMITS.maxTtlMs }).map(String), { nil: undefined });
  const size = fc.integer({ min: 0, max: LIMITS.maxMessageBytes });
  const validParts = fc
    .record({ uuid, localSender, recipient, type, skewSeconds, expiration, size })
    .map((v): MessageParts => ({
      messageId: v.uuid,
      userId: userIdOf(v.localSender),
      type: v.type,
      timestamp: Math.floor(NOW / 1000) + v.skewSeconds,
      expiration: v.expiration,
      headers: headers({ 'dmr-recipient': v.recipient }),
      body: Buffer.alloc(v.size),
    }));

  it('property: every valid message passes', () => {
    fc.assert(
      fc.property(validParts, (parts) => {
        const result = validateAtOrigin(testMessage(parts), context, Math.floor(NOW / 1000) * 1000);
        assert.ok(result.ok, result.ok ? '' : `${result.reason}: ${result.detail}`);
      }),
    );
  });

  // Each required field, removed, fails with that field's code.
  const REQUIRED: Record<string, string> = {
    messageId: 'MESSAGE_ID_INVALID',
    userId: 'SENDER_MISSING',
    type: 'TYPE_MISSING',
    timestamp: 'TIMESTAMP_MISSING',
    'dmr-recipient': 'RECIPIENT_MISSING',
    'dmr-version': 'VERSION_UNSUPPORTED',
  };

  it('property: removing any single required field fails with that field code', () => {
    fc.assert(
      fc.property(validParts, fc.constantFrom(...Object.keys(REQUIRED)), (parts, field) => {
        const result = validateAtOrigin(without(testMessage(parts), field), context, Math.floor(NOW / 1000) * 1000);
        assert.ok(!result.ok);
        assert.equal(result.reason, REQUIRED[field]);
      }),
    );
  });

  // Each field set to a value of the wrong shape (any non-string, or a string that breaks its rule).
  const MALFORMED: Record<string, [fc.Arbitrary<unknown>, string]> = {
    messageId: [
      fc.oneof(
        fc.integer(),
        fc.string().filter((s) => s !== '' && !/^[0-9a-f-]{36}$/i.test(s)),
      ),
      'MESSAGE_ID_INVALID',
    ],
    type: [fc.string({ minLength: 1 }).filter((s) => !/^[A-Za-z][A-Za-z0-9._-]{0,63}$/.test(s)), 'TYPE_INVALID'],
    // Far ahead of the clock (far behind it is MESSAGE_EXPIRED, the replay window's bound: tested above).
    timestamp: [fc.integer({ min: 2_000_000_000 }), 'TIMESTAMP_SKEW'],
    expiration: [fc.integer({ min: LIMITS.maxTtlMs + 1 }), 'EXPIRATION_TOO_LONG'],
    'dmr-recipient': [
      fc.string({ minLength: 1 }).filter((s) => !/^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/.test(s)),
      'RECIPIENT_INVALID',
    ],
    'dmr-version': [fc.integer().filter((n) => n !== 1), 'VERSION_UNSUPPORTED'],
  };

  it('property: a malformed value of any single field fails with that field code', () => {
    const mutation = fc
      .constantFrom(...Object.keys(MALFORMED))
      .chain((field) => (MALFORMED[field] as [fc.Arbitrary<unknown>, string])[0].map((value) => ({ field, value })));
    fc.assert(
      fc.property(validParts, mutation, (parts, { field, value }) => {
        const message = testMessage(parts);
        if (field.startsWith('dmr-')) message.properties.headers = { ...message.properties.headers, [field]: value };
        else (message.properties as Record<string, unknown>)[field] = value;
        const result = validateAtOrigin(message, context, Math.floor(NOW / 1000) * 1000);
        assert.ok(!result.ok);
        assert.equal(result.reason, (MALFORMED[field] as [unknown, string])[1], result.detail);
      }),
    );
  });
});
