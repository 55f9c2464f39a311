import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { CertificateAuthority } from '@dmr/pki';
import { type CheckResult, type OriginEntry, type SignableMessage } from '@dmr/contract';
import { HopChainSigner } from './hop-chain.js';
import {
  HOP_SIGNATURE_JWS_TYPE,
  HopVerifier,
  canonicalMetadata,
  decodeJwsHeader,
  splitDetachedJws,
  parseHops,
  type VerifiedOrigin,
} from './hop-signature.js';
import { NOW, testMessage } from './test-support.js';

const TD = 'dmr.test';
// Certificates are issued for the real clock, so verification runs at it too.
const AT = new Date();

/** The origin's hop entry every stamped message carries: dmr-sig covers it. */
const ENTRY: OriginEntry = { at: AT.toISOString(), to: 'dmr-tartu' };

/** `message` as the origin forwards it to dmr-tartu: the signed properties and body plus the DMR headers. */
function stamped(signer: HopChainSigner, message: SignableMessage = testMessage()): SignableMessage {
  const headers = signer.originate(message, 'tax-bot', ENTRY.to, AT);
  return { ...message, properties: { ...message.properties, headers: { ...message.properties.headers, ...headers } } };
}

function withHeader(message: SignableMessage, name: string, value: unknown): SignableMessage {
  return {
    ...message,
    properties: { ...message.properties, headers: { ...message.properties.headers, [name]: value } },
  };
}

function assertRefused(result: CheckResult<VerifiedOrigin>, reason: string, check?: string, what = ''): void {
  assert.ok(!result.ok, `expected ${reason} ${what}`);
  assert.equal(result.reason, reason, `${what}: ${result.detail}`);
  if (check !== undefined) assert.match(result.detail, new RegExp(`\\(${check}\\)$`));
}

describe('origin hop signature', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let tallinn: HopChainSigner;
  let tartuAsTallinn: HopChainSigner;
  let foreignTallinn: HopChainSigner;
  let verifier: HopVerifier;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-hop-sig-'));
    ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: TD });
    otherCa = await CertificateAuthority.init(join(dir, 'other'), { trustDomain: TD });
    const own = await ca.issueWithKey({ kind: 'node', id: 'dmr-tallinn' });
    const tartu = await ca.issueWithKey({ kind: 'node', id: 'dmr-tartu' });
    const foreign = await otherCa.issueWithKey({ kind: 'node', id: 'dmr-tallinn' });
    tallinn = new HopChainSigner({
      nodeId: 'dmr-tallinn',
      certificateChainPem: own.chainPem,
      privateKeyPem: own.privateKeyPem,
    });
    // Impostors: a real node key claiming another origin, and the right name from a CA we do not trust.
    tartuAsTallinn = new HopChainSigner({
      nodeId: 'dmr-tallinn',
      certificateChainPem: tartu.chainPem,
      privateKeyPem: tartu.privateKeyPem,
    });
    foreignTallinn = new HopChainSigner({
      nodeId: 'dmr-tallinn',
      certificateChainPem: foreign.chainPem,
      privateKeyPem: foreign.privateKeyPem,
    });
    verifier = new HopVerifier({ trustBundlePem: ca.trustBundlePem(), trustDomain: TD, denied: new Set() });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('round trip: the origin signs the message and its own hop entry once, a later hop verifies both', async () => {
    const message = stamped(tallinn);
    const headers = message.properties.headers ?? {};
    assert.equal(headers['dmr-sender'], 'tax-bot');
    assert.equal(headers['dmr-origin'], 'dmr-tallinn');
    assert.match(String(headers['dmr-sig']), /^[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+$/);
    // Entry 0 carries no signature of its own: dmr-sig covers it.
    assert.deepEqual(JSON.parse(String(headers['dmr-hops'])), [{ node: 'dmr-tallinn', ...ENTRY }]);
    const result = await verifier.verify(message, ENTRY, AT);
    assert.ok(result.ok, result.ok ? '' : result.detail);
    assert.equal(result.message.sender, 'tax-bot');
    assert.equal(result.message.origin, 'dmr-tallinn');
  });

  it('refuses a changed origin entry: its time or its next hop', async () => {
    const message = stamped(tallinn);
    for (const entry of [
      { ...ENTRY, at: new Date(AT.getTime() + 1).toISOString() },
      { ...ENTRY, to: 'dmr-narva' },
    ]) {
      assertRefused(await verifier.verify(message, entry, AT), 'HOP_SIGNATURE_INVALID', 'signature', entry.to);
    }
  });

  it('the canonical metadata is the documented JSON array', () => {
    const message = testMessage({
      messageId: '00000000-0000-4000-8000-000000000001',
      expiration: 5000,
      body: Buffer.from(''),
    });
    const canonical = canonicalMetadata(message, 'tax-bot', 'dmr-tallinn', ENTRY);
    assert.ok(canonical.ok);
    assert.deepEqual(JSON.parse(canonical.bytes.toString('utf8')), [
      'dmr-hop-sig/2',
      '00000000-0000-4000-8000-000000000001',
      'tax-bot',
      'dmr-tallinn',
      'police-bot',
      'ChatMessage',
      String(Math.floor(NOW / 1000)),
      '5000',
      '1',
      'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      AT.toISOString(),
      'dmr-tartu',
    ]);
  });

  it('refuses a message whose signed metadata changed, field by field', async () => {
    const message = stamped(tallinn);
    const changes: Array<[string, (m: SignableMessage) => SignableMessage]> = [
      [
        'message_id',
        (m) => ({ ...m, properties: { ...m.properties, messageId: '00000000-0000-4000-8000-000000000000' } }),
      ],
      ['type', (m) => ({ ...m, properties: { ...m.properties, type: 'OtherMessage' } })],
      ['timestamp', (m) => ({ ...m, properties: { ...m.properties, timestamp: Number(m.properties.timestamp) + 1 } })],
      ['expiration', (m) => ({ ...m, properties: { ...m.properties, expiration: '1000' } })],
      ['dmr-recipient', (m) => withHeader(m, 'dmr-recipient', 'edu-bot')],
      ['dmr-sender', (m) => withHeader(m, 'dmr-sender', 'police-bot')],
      ['dmr-version', (m) => withHeader(m, 'dmr-version', 2)],
    ];
    for (const [field, change] of changes) {
      assertRefused(await verifier.verify(change(message), ENTRY, AT), 'HOP_SIGNATURE_INVALID', 'signature', field);
    }
  });

  it('property: any change to the body is refused', async () => {
    const message = stamped(tallinn);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 64 }), async (body) => {
        fc.pre(!Buffer.from(body).equals(Buffer.from(message.content)));
        assertRefused(
          await verifier.verify({ ...message, content: body }, ENTRY, AT),
          'HOP_SIGNATURE_INVALID',
          'signature',
        );
      }),
      { numRuns: 50 },
    );
  });

  it('refuses a signer that is not the origin it claims', async () => {
    assertRefused(await verifier.verify(stamped(tartuAsTallinn), ENTRY, AT), 'HOP_SIGNATURE_INVALID', 'signer');
  });

  it('refuses a signer from another CA', async () => {
    assertRefused(await verifier.verify(stamped(foreignTallinn), ENTRY, AT), 'HOP_SIGNATURE_INVALID', 'chain');
  });

  it('refuses a denylisted origin and a denylisted sender', async () => {
    const message = stamped(tallinn);
    const denyOrigin = new HopVerifier({
      trustBundlePem: ca.trustBundlePem(),
      trustDomain: TD,
      denied: new Set(['dmr-tallinn']),
    });
    assertRefused(await denyOrigin.verify(message, ENTRY, AT), 'ORIGIN_DENIED');
    const denySender = new HopVerifier({
      trustBundlePem: ca.trustBundlePem(),
      trustDomain: TD,
      denied: new Set(['tax-bot']),
    });
    assertRefused(await denySender.verify(message, ENTRY, AT), 'SENDER_DENIED');
  });

  it('refuses a changed origin, and a missing or malformed signature', async () => {
    const message = stamped(tallinn);
    assertRefused(
      await verifier.verify(withHeader(message, 'dmr-origin', 'dmr-tartu'), ENTRY, AT),
      'HOP_SIGNATURE_INVALID',
      'signer',
    );
    assertRefused(
      await verifier.verify(withHeader(message, 'dmr-sig', undefined), ENTRY, AT),
      'HOP_SIGNATURE_INVALID',
      'format',
    );
    assertRefused(
      await verifier.verify(withHeader(message, 'dmr-sig', 'a.b.c'), ENTRY, AT),
      'HOP_SIGNATURE_INVALID',
      'format',
    );
    const [header, , signature] = String(message.properties.headers?.['dmr-sig']).split('.');
    const badHeader = Buffer.from(JSON.stringify({ alg: 'none', typ: 'dmr-hop-sig+jws' })).toString('base64url');
    assertRefused(
      await verifier.verify(withHeader(message, 'dmr-sig', `${badHeader}..${signature}`), ENTRY, AT),
      'HOP_SIGNATURE_INVALID',
      'header',
    );
    assert.ok(header);
  });

  it('refuses a signer certificate that is not valid at the verification time', async () => {
    const later = new Date(AT.getTime() + 400 * 24 * 3_600_000);
    const fresh = new HopVerifier({ trustBundlePem: ca.trustBundlePem(), trustDomain: TD, denied: new Set() });
    assertRefused(await fresh.verify(stamped(tallinn), ENTRY, later), 'HOP_SIGNATURE_INVALID', 'chain');
  });

  it('a window of messages arriving before the chain is cached shares one chain check', async () => {
    // Each chain check builds its own leaf certificate object: one shared object means one check, not 64.
    const fresh = new HopVerifier({ trustBundlePem: ca.trustBundlePem(), trustDomain: TD, denied: new Set() });
    const window = Array.from({ length: 64 }, () => fresh.verify(stamped(tallinn), ENTRY, AT));
    const results = await Promise.all(window);
    const leaves = new Set(results.map((result) => (result.ok ? result.message.certificate : undefined)));
    assert.equal(leaves.size, 1);
    assert.ok(!leaves.has(undefined));
    // A failed check is shared too, and not cached: the next message checks again (and fails again).
    const late = new Date(AT.getTime() + 400 * 24 * 3_600_000);
    const refused = await Promise.all([
      fresh.verify(stamped(foreignTallinn), ENTRY, late),
      fresh.verify(stamped(tallinn), ENTRY, late),
    ]);
    for (const result of refused) assertRefused(result, 'HOP_SIGNATURE_INVALID', 'chain');
  });

  it("a signer's header is decoded once, shared read-only, and refused every time when malformed", () => {
    const headerOf = (signer: HopChainSigner): string =>
      splitDetachedJws(stamped(signer).properties.headers?.['dmr-sig'])?.encodedHeader ?? '';
    // Every message of one signer carries the same header (with its x5c chain): decoded once per process.
    const first = decodeJwsHeader(headerOf(tallinn), HOP_SIGNATURE_JWS_TYPE);
    const second = decodeJwsHeader(headerOf(tallinn), HOP_SIGNATURE_JWS_TYPE);
    assert.ok(first.ok && second.ok);
    assert.equal(second, first);
    // Shared between messages, so nobody may change it: not the header, not its chain.
    assert.throws(() => Object.assign(first.header, { kid: 'forged' }), TypeError);
    assert.throws(() => (first.header.x5c as string[]).push('forged'), TypeError);
    // Another signer's header is its own entry; the same bytes under another typ are judged afresh.
    const foreign = decodeJwsHeader(headerOf(foreignTallinn), HOP_SIGNATURE_JWS_TYPE);
    assert.ok(foreign.ok);
    assert.notEqual(foreign.header.kid, first.header.kid);
    const otherTyp = decodeJwsHeader(headerOf(tallinn), 'dmr-hop+jws');
    assert.ok(!otherTyp.ok && otherTyp.check === 'header');
    // A malformed header is not remembered as anything: refused on every use.
    for (let i = 0; i < 2; i++) assert.deepEqual(decodeJwsHeader('bm90IGpzb24', HOP_SIGNATURE_JWS_TYPE).ok, false);
  });

  it("parseHops (a locally delivered message's dmr-hops) accepts only a list of {node, at}", () => {
    assert.deepEqual(parseHops('[]'), []);
    assert.equal(parseHops('{}'), undefined);
    assert.equal(parseHops(42), undefined);
    assert.equal(parseHops('[{"node":"dmr-a","at":"yesterday"}]'), undefined);
  });
});
