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

describe('dmr-hops version 3', () => {
  const origin = { node: 'node-a', at: '2026-11-27T12:00:00.000Z', to: 'node-b' };
  const entry = { node: 'node-b', at: '2026-11-27T12:00:00.001Z', to: 'node-c', sig: SIG };

  it('parses well-formed entries and refuses the rest by code', () => {
    const parsed = parseHopChain(JSON.stringify([origin, entry]));
    assert.deepEqual(parsed, { ok: true, message: [origin, entry] });
    const missing = parseHopChain(undefined);
    assert.equal(missing.ok ? undefined : missing.reason, 'HOPS_INVALID');
    const extra = parseHopChain(JSON.stringify([origin, { ...entry, more: 1 }]));
    assert.equal(extra.ok ? undefined : extra.reason, 'HOPS_INVALID');
    const tooMany = parseHopChain(JSON.stringify([origin, entry, entry]), 2);
    assert.equal(tooMany.ok ? undefined : tooMany.reason, 'HOP_LIMIT_EXCEEDED');
  });

  it("has one form per position: the origin's entry without sig, every later one with it", () => {
    const signedOrigin = parseHopChain(JSON.stringify([{ ...origin, sig: SIG }, entry]));
    assert.match(signedOrigin.ok ? '' : signedOrigin.detail, /\(origin\)$/, 'version 2, or a dropped origin entry');
    for (const [what, entries] of [
      ['an origin entry addressed to nobody', [{ ...origin, to: null }]],
      ['a later entry without sig', [origin, { node: 'node-b', at: entry.at, to: 'node-c' }]],
    ] as const) {
      const result = parseHopChain(JSON.stringify(entries));
      assert.equal(result.ok ? undefined : result.reason, 'HOPS_INVALID', what);
    }
  });

  it('signs the documented bytes and links entry 1 to dmr-sig, each later entry to the one before', () => {
    assert.equal(
      hopEntryPayload(1, 'sha256:00', 'node-b', '2026-11-27T12:00:00.000Z', null).toString('utf8'),
      '["dmr-hop/3",1,"sha256:00","node-b","2026-11-27T12:00:00.000Z",null]',
    );
    assert.equal(nextPrev({ signature: SIG, hops: [origin] }), linkDigest(SIG));
    assert.equal(
      nextPrev({ signature: SIG, hops: [origin, { ...entry, sig: 'other..sig' }] }),
      linkDigest('other..sig'),
    );
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

  const entry0 = { at: '2026-11-27T12:00:00.000Z', to: 'node-b' };

  it("is the twelve documented fields in order, the origin's hop entry last", () => {
    const result = canonicalMetadata(message, 'tax-bot', 'node-a', entry0);
    assert.ok(result.ok);
    assert.deepEqual(JSON.parse(result.bytes.toString('utf8')), [
      'dmr-hop-sig/2',
      '0b0c1d2e-3f40-4152-8364-758697a8b9ca',
      'tax-bot',
      'node-a',
      'rik-bot',
      'ChatMessage',
      '1790000000',
      null,
      '1',
      'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
      '2026-11-27T12:00:00.000Z',
      'node-b',
    ]);
  });

  it('names the first missing field', () => {
    const result = canonicalMetadata(
      { ...message, properties: { ...message.properties, type: undefined } },
      'a1',
      'n1',
      entry0,
    );
    assert.deepEqual(result, { ok: false, field: 'type' });
  });
});
