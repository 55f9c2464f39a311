import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  appendHop,
  canonicalMetadata,
  hopEntryPayload,
  linkDigest,
  nextPrev,
  parseHopChain,
  parseHops,
  relayHeaderCap,
} from './hops.js';

const SIG = 'eyJhbGciOiJFUzI1NiJ9..c2ln';

describe('dmr-hops version 1', () => {
  it('appends and parses back', () => {
    const at = new Date('2026-11-27T12:00:00.000Z');
    const once = appendHop([], 'node-a', at);
    assert.deepEqual(parseHops(once), [{ node: 'node-a', at: at.toISOString() }]);
    const twice = appendHop(parseHops(once) ?? [], 'node-b', at);
    assert.deepEqual(
      parseHops(twice)?.map((hop) => hop.node),
      ['node-a', 'node-b'],
    );
  });

  it('refuses anything but a list of {node, at} with valid ids and times', () => {
    for (const value of [
      undefined,
      7,
      'x',
      '{}',
      '[1]',
      '[{"node":"A","at":"2026-01-01T00:00:00Z"}]',
      '[{"node":"a1","at":"never"}]',
    ]) {
      assert.equal(parseHops(value), undefined, String(value));
    }
  });
});

describe('dmr-hops version 2', () => {
  it('parses well-formed entries and refuses the rest by code', () => {
    const entry = { node: 'node-a', at: '2026-11-27T12:00:00.000Z', to: 'node-b', sig: SIG };
    const parsed = parseHopChain(JSON.stringify([entry]));
    assert.deepEqual(parsed, { ok: true, message: [entry] });
    const missing = parseHopChain(undefined);
    assert.equal(missing.ok ? undefined : missing.reason, 'HOPS_INVALID');
    const extra = parseHopChain(JSON.stringify([{ ...entry, more: 1 }]));
    assert.equal(extra.ok ? undefined : extra.reason, 'HOPS_INVALID');
    const tooMany = parseHopChain(JSON.stringify([entry, entry, entry]), 2);
    assert.equal(tooMany.ok ? undefined : tooMany.reason, 'HOP_LIMIT_EXCEEDED');
  });

  it('signs the documented bytes and links each entry to the one before', () => {
    assert.equal(
      hopEntryPayload(0, 'sha256:00', 'node-a', '2026-11-27T12:00:00.000Z', null).toString('utf8'),
      '["dmr-hop/2",0,"sha256:00","node-a","2026-11-27T12:00:00.000Z",null]',
    );
    assert.equal(nextPrev({ signature: SIG, hops: [] }), linkDigest(SIG));
    const entry = { node: 'node-a', at: '2026-11-27T12:00:00.000Z', to: null, sig: 'other..sig' };
    assert.equal(nextPrev({ signature: SIG, hops: [entry] }), linkDigest('other..sig'));
    assert.match(linkDigest('x'), /^sha256:[0-9a-f]{64}$/);
    assert.equal(relayHeaderCap(16_384, 8), 16_384 + 9 * 4096);
  });
});

describe('canonical metadata (dmr-sig)', () => {
  const message = {
    content: Buffer.from('hello'),
    properties: {
      messageId: '0b0c1d2e-3f40-4152-8364-758697a8b9ca',
      type: 'ChatMessage',
      timestamp: 1_790_000_000,
      headers: { 'dmr-recipient': 'rik-bot', 'dmr-version': 1 },
    },
  };

  it('is the ten documented fields in order', () => {
    const result = canonicalMetadata(message, 'tax-bot', 'node-a');
    assert.ok(result.ok);
    assert.deepEqual(JSON.parse(result.bytes.toString('utf8')), [
      'dmr-hop-sig/1',
      '0b0c1d2e-3f40-4152-8364-758697a8b9ca',
      'tax-bot',
      'node-a',
      'rik-bot',
      'ChatMessage',
      '1790000000',
      null,
      '1',
      'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
    ]);
  });

  it('names the first missing field', () => {
    const result = canonicalMetadata(
      { ...message, properties: { ...message.properties, type: undefined } },
      'a1',
      'n1',
    );
    assert.deepEqual(result, { ok: false, field: 'type' });
  });
});
