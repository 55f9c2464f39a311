import assert from 'node:assert/strict';
import { X509Certificate, createHash, verify as cryptoVerify } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { CertificateAuthority } from '@dmr/pki';
import { canonicalMetadata, type CheckResult, type SignableMessage } from '@dmr/contract';
import {
  DEFAULT_MAX_HOPS,
  HOP_ENTRY_ALLOWANCE_BYTES,
  HOP_ENTRY_JWS_TYPE,
  hopEntryPayload,
  linkDigest,
  parseHopChain,
  previousHop,
  relayHeaderCap,
  type HopChainVerifier,
  type HopEntry,
  type VerifiedHopChain,
} from './hop-chain.js';
import { encodedTableSize } from './headers.js';
import { checkMeshParties } from './mesh-report.js';
import {
  SENDER,
  TD,
  appendedBlindly,
  entriesOf,
  impostor,
  later,
  originated,
  publishedBy,
  testMesh,
  withHeaders,
  type TestMesh,
  type TestNode,
} from './mesh-test-support.js';
import { testMessage } from './test-support.js';

// Certificates are issued for the real clock, so verification runs at it too.
const AT = new Date();
const POOL = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'n9'];
/** The path of the tampering cases: n3 is the tampering transit hop, n4 the next hop, n5 the destination. */
const PATH = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5'];
const M = 3;
const HOP_CODES = new Set([
  'HOP_SIGNATURE_INVALID',
  'HOPS_INVALID',
  'HOP_LOOP',
  'HOP_LIMIT_EXCEEDED',
  'HOP_NODE_DENIED',
  'PEER_UNKNOWN',
  'ORIGIN_DENIED',
  'SENDER_DENIED',
]);

interface Expected {
  reason: string;
  check: string;
  /** The entry the detail names, when the failure is in one entry's signature. */
  entry?: number;
}

function assertRefused(result: CheckResult<unknown>, expected: Expected, what: string): void {
  assert.ok(!result.ok, `${what}: expected ${expected.reason}, but it verified`);
  assert.equal(
    `${result.reason} (${checkOf(result.detail)})`,
    `${expected.reason} (${expected.check})`,
    `${what}: ${result.detail}`,
  );
  if (expected.entry !== undefined) assert.match(result.detail, new RegExp(`^entry ${expected.entry}: `), what);
}

function checkOf(detail: string): string {
  return /\(([a-z-]+)\)$/.exec(detail)?.[1] ?? '?';
}

function withEntries(message: SignableMessage, entries: HopEntry[]): SignableMessage {
  return withHeaders(message, { 'dmr-hops': JSON.stringify(entries) });
}

function directoryFor(origin: string): Map<string, { homeNode: string }> {
  return new Map([
    [SENDER, { homeNode: origin }],
    ['police-bot', { homeNode: 'n9' }],
  ]);
}

describe('hop chain (dmr-hops version 3)', () => {
  let mesh: TestMesh;
  const verifiers = new Map<string, HopChainVerifier>();
  const verifierOf = (id: string): HopChainVerifier => {
    let verifier = verifiers.get(id);
    if (verifier === undefined) verifiers.set(id, (verifier = mesh.verifier(id)));
    return verifier;
  };
  const node = (id: string): TestNode => mesh.node(id);

  /**
   * A fresh message from path[0], relayed honestly (every hop verifies, then appends) until it arrives at
   * path[upTo]; returns what arrived there and its verification by the last honest hop before it.
   */
  async function arrivingAt(
    path: readonly string[],
    upTo: number,
    message?: SignableMessage,
  ): Promise<SignableMessage> {
    let current = originated(node(path[0] as string), path[1] as string, AT, message);
    for (let i = 1; i < upTo; i++) {
      const here = path[i] as string;
      const verified = await verifierOf(here).verify(current, later(AT, i));
      assert.ok(verified.ok, `hop ${i} (${here}): ${verified.ok ? '' : verified.detail}`);
      current = publishedBy(
        current,
        node(here),
        node(here).signer.append(verified.message, path[i + 1] as string, later(AT, i)),
      );
    }
    return current;
  }

  /** `message`, arriving at path[receiver], carried on by every later hop without checking: the destination's verdict. */
  async function atDestination(
    path: readonly string[],
    receiver: number,
    message: SignableMessage,
  ): Promise<CheckResult<VerifiedHopChain>> {
    let current = message;
    for (let i = receiver; i < path.length - 1; i++) {
      current = appendedBlindly(current, node(path[i] as string), path[i + 1] as string, later(AT, i));
    }
    return verifierOf(path[path.length - 1] as string).verify(current, later(AT, 100));
  }

  before(async () => {
    mesh = await testMesh([...POOL, 'rsa1', 'rv1'], { rsa1: 'rsa-2048' });
  });
  after(() => mesh.cleanup());

  for (const path of [
    ['n0', 'n1'],
    ['n0', 'rsa1', 'n2'],
    ['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8'],
  ]) {
    it(`a chain of ${path.length - 1} hop(s) verifies at every hop and at the destination (${path.join(' → ')})`, async () => {
      let current = originated(node(path[0] as string), path[1] as string, AT);
      for (let i = 1; i < path.length; i++) {
        const here = path[i] as string;
        const result = await verifierOf(here).verify(current, AT);
        assert.ok(result.ok, `at ${here}: ${result.ok ? '' : result.detail}`);
        assert.deepEqual(
          { ...result.message, hops: result.message.hops.map((hop) => hop.node), signature: undefined },
          {
            sender: SENDER,
            origin: 'n0',
            hops: path.slice(0, i),
            previous: path[i - 1],
            count: i,
            signature: undefined,
          },
        );
        assert.deepEqual(checkMeshParties(current, result.message, directoryFor('n0')), {
          ok: true,
          message: 'message',
        });
        const next = path[i + 1] ?? null;
        current = publishedBy(current, node(here), node(here).signer.append(result.message, next, later(AT, i)));
      }
      const delivered = entriesOf(current);
      assert.deepEqual(
        delivered.map((entry) => entry.node),
        path,
      );
      assert.deepEqual(
        delivered.map((entry) => entry.to),
        [...path.slice(1), null],
      );
    });
  }

  it('entries are the documented JSON, signed over the documented array', async () => {
    const message = originated(node('n0'), 'n1', AT);
    const sig = message.properties.headers?.['dmr-sig'] as string;
    const relayed = appendedBlindly(message, node('n1'), 'n2', later(AT, 1));
    const entries = JSON.parse(relayed.properties.headers?.['dmr-hops'] as string) as Array<Record<string, unknown>>;
    const decode = (part: string): Record<string, unknown> =>
      JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
    const leafOf = (header: Record<string, unknown>): X509Certificate =>
      new X509Certificate(Buffer.from((header.x5c as string[])[0] as string, 'base64'));
    // Checked with node:crypto alone, the way another implementation would.
    const verifies = (jws: string, signed: Buffer, leaf: X509Certificate): boolean => {
      const [encodedHeader, payload, signature] = jws.split('.') as [string, string, string];
      assert.equal(payload, '', 'the payload is detached');
      const input = Buffer.from(`${encodedHeader}.${signed.toString('base64url')}`, 'ascii');
      const key = { key: leaf.publicKey, dsaEncoding: 'ieee-p1363' as const };
      return cryptoVerify('sha256', input, key, Buffer.from(signature, 'base64url'));
    };
    const [e0, e1] = entries as [Record<string, unknown>, Record<string, unknown>];
    // Entry 0 has no signature of its own: dmr-sig covers its at and to, with the origin's chain.
    assert.deepEqual(e0, { node: 'n0', at: AT.toISOString(), to: 'n1' });
    assert.deepEqual(e1, { node: 'n1', at: later(AT, 1).toISOString(), to: 'n2', sig: e1.sig });
    const originHeader = decode(sig.split('.')[0] as string);
    const h1 = decode(String(e1.sig).split('.')[0] as string);
    assert.deepEqual(Object.keys(h1), ['alg', 'typ', 'kid', 'x5c']);
    assert.equal(h1.typ, HOP_ENTRY_JWS_TYPE);

    const canonical = canonicalMetadata(message, SENDER, 'n0', { at: AT.toISOString(), to: 'n1' });
    assert.ok(canonical.ok);
    const fields = JSON.parse(canonical.bytes.toString('utf8')) as unknown[];
    assert.deepEqual(fields.slice(0, 4), ['dmr-hop-sig/2', message.properties.messageId, SENDER, 'n0']);
    assert.deepEqual(fields.slice(10), [AT.toISOString(), 'n1']);
    assert.ok(verifies(sig, canonical.bytes, leafOf(originHeader)), 'dmr-sig covers the metadata and entry 0');
    const prev1 = `sha256:${createHash('sha256').update(sig).digest('hex')}`;
    assert.equal(linkDigest(sig), prev1);
    const signed1 = Buffer.from(
      JSON.stringify(['dmr-hop/3', 1, prev1, 'n1', later(AT, 1).toISOString(), 'n2']),
      'utf8',
    );
    assert.deepEqual(hopEntryPayload(1, prev1, 'n1', later(AT, 1).toISOString(), 'n2'), signed1);
    assert.ok(verifies(String(e1.sig), signed1, leafOf(h1)));
    assert.ok((await verifierOf('n2').verify(relayed, AT)).ok);
  });

  /**
   * What the tampering hop n3 forwards to n4 instead of its honest append. `m` arrived at n3 and verified as `v`.
   */
  type Tampering = (
    m: SignableMessage,
    v: VerifiedHopChain,
    self: TestNode,
  ) => Promise<SignableMessage> | SignableMessage;

  const honest = (m: SignableMessage, self: TestNode, chain: { signature: string; hops: readonly HopEntry[] }) =>
    publishedBy(m, self, self.signer.append(chain, 'n4', later(AT, 3)));
  const property = (m: SignableMessage, name: string, value: unknown): SignableMessage => ({
    ...m,
    properties: { ...m.properties, [name]: value },
  });

  const tamperings: Array<{ name: string; tamper: Tampering; next: Expected; destination?: Expected }> = [
    {
      name: 'drops an earlier entry',
      tamper: (m, v, self) => honest(m, self, { signature: v.signature, hops: v.hops.filter((_, i) => i !== 1) }),
      next: { reason: 'HOPS_INVALID', check: 'linkage' },
    },
    {
      name: "drops its predecessor's entry",
      tamper: (m, v, self) => honest(m, self, { signature: v.signature, hops: v.hops.slice(0, -1) }),
      next: { reason: 'HOPS_INVALID', check: 'linkage' },
    },
    {
      name: 'drops the origin entry',
      tamper: (m, v, self) => honest(m, self, { signature: v.signature, hops: v.hops.slice(1) }),
      next: { reason: 'HOPS_INVALID', check: 'origin' },
    },
    {
      name: "drops the origin entry and passes the next one off as the origin's",
      tamper: (m, v, self) => {
        const [, e1, ...rest] = v.hops as [HopEntry, HopEntry, ...HopEntry[]];
        return honest(m, self, { signature: v.signature, hops: [{ node: e1.node, at: e1.at, to: e1.to }, ...rest] });
      },
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signature' },
    },
    {
      name: 'forges an earlier entry with its own key',
      tamper: (m, v, self) => {
        const forged = JSON.parse(
          impostor('n1', self).append({ signature: v.signature, hops: v.hops.slice(0, 1) }, 'n2', AT),
        ) as HopEntry[];
        return honest(m, self, { signature: v.signature, hops: [...forged, ...v.hops.slice(2)] });
      },
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signer', entry: 1 },
    },
    {
      name: 'inserts an entry for another node',
      tamper: (m, v, self) => {
        const inserted = JSON.parse(
          impostor('n9', self).append({ signature: v.signature, hops: v.hops.slice(0, 2) }, 'n2', AT),
        ) as HopEntry[];
        return honest(m, self, { signature: v.signature, hops: [...inserted, ...v.hops.slice(2)] });
      },
      next: { reason: 'HOPS_INVALID', check: 'linkage' },
    },
    {
      name: 'inserts an entry for another node and re-addresses the entry before it',
      tamper: (m, v, self) => {
        const readdressed = v.hops.map((hop, i) => (i === 1 ? { ...hop, to: 'n9' } : hop));
        const inserted = JSON.parse(
          impostor('n9', self).append({ signature: v.signature, hops: readdressed.slice(0, 2) }, 'n2', AT),
        ) as HopEntry[];
        return honest(m, self, { signature: v.signature, hops: [...inserted, ...v.hops.slice(2)] });
      },
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signature', entry: 1 },
    },
    {
      name: 'reorders entries',
      tamper: (m, v, self) => {
        const [e0, e1, e2] = v.hops as [HopEntry, HopEntry, HopEntry];
        return honest(m, self, { signature: v.signature, hops: [e0, e2, e1] });
      },
      next: { reason: 'HOPS_INVALID', check: 'linkage' },
    },
    {
      name: 'changes `at` of an earlier entry',
      tamper: (m, v, self) => {
        const hops = v.hops.map((hop, i) => (i === 1 ? { ...hop, at: later(new Date(hop.at), 1).toISOString() } : hop));
        return honest(m, self, { signature: v.signature, hops });
      },
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signature', entry: 1 },
    },
    {
      name: 'changes `at` of the origin entry',
      tamper: (m, v, self) => {
        const hops = v.hops.map((hop, i) =>
          i === 0 ? { ...hop, at: later(new Date(hop.at), -1000).toISOString() } : hop,
        );
        return honest(m, self, { signature: v.signature, hops });
      },
      // dmr-sig covers the origin's entry (hop protocol v3).
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signature' },
    },
    {
      name: 'changes `to` of an earlier entry',
      tamper: (m, v, self) =>
        honest(m, self, {
          signature: v.signature,
          hops: v.hops.map((hop, i) => (i === 1 ? { ...hop, to: 'n9' } : hop)),
        }),
      next: { reason: 'HOPS_INVALID', check: 'linkage' },
    },
    {
      name: 'changes `to` of the origin entry',
      tamper: (m, v, self) =>
        honest(m, self, {
          signature: v.signature,
          hops: v.hops.map((hop, i) => (i === 0 ? { ...hop, to: 'n9' } : hop)),
        }),
      // dmr-sig covers the origin's entry (hop protocol v3), and is checked before the chain's linkage.
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signature' },
    },
    {
      name: 'transplants the chain of another message',
      tamper: async (m, v, self) => {
        const other = await arrivingAt(PATH, M);
        return honest(m, self, { signature: v.signature, hops: entriesOf(other) });
      },
      // The same origin entry (same path, same time): entry 1 is the first that links to the other dmr-sig.
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signature', entry: 1 },
    },
    {
      name: "moves the message's dmr-sig and chain onto another body",
      tamper: (m, v, self) => honest({ ...m, content: Buffer.from('{"hello":"mallory"}') }, self, v),
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signature' },
    },
    {
      name: 're-signs dmr-sig as itself, for the origin',
      tamper: (m, v, self) => {
        const resigned = impostor('n0', self).originate(m, SENDER, 'n1', AT)['dmr-sig'] as string;
        return honest(withHeaders(m, { 'dmr-sig': resigned }), self, { signature: resigned, hops: v.hops });
      },
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signer' },
    },
    {
      name: 'claims a different previous hop than its user_id',
      tamper: (m, v, self) => {
        const mine = JSON.parse(self.signer.append(v, 'n9', later(AT, 3))) as HopEntry[];
        return publishedBy(
          m,
          self,
          impostor('n9', self).append({ signature: v.signature, hops: mine }, 'n4', later(AT, 3)),
        );
      },
      next: { reason: 'HOPS_INVALID', check: 'previous' },
      destination: { reason: 'HOP_SIGNATURE_INVALID', check: 'signer', entry: 4 },
    },
    {
      name: 'forwards to another node than its own entry names',
      tamper: (m, v, self) => publishedBy(m, self, self.signer.append(v, 'n9', later(AT, 3))),
      next: { reason: 'HOPS_INVALID', check: 'to' },
      destination: { reason: 'HOPS_INVALID', check: 'linkage' },
    },
  ];
  const metadata: Array<[string, (m: SignableMessage) => SignableMessage]> = [
    ['message_id', (m) => property(m, 'messageId', '00000000-0000-4000-8000-000000000000')],
    ['type', (m) => property(m, 'type', 'OtherMessage')],
    ['timestamp', (m) => property(m, 'timestamp', Number(m.properties.timestamp) + 1)],
    ['expiration', (m) => property(m, 'expiration', '1000')],
    ['dmr-recipient', (m) => withHeaders(m, { 'dmr-recipient': 'edu-bot' })],
    ['dmr-sender', (m) => withHeaders(m, { 'dmr-sender': 'police-bot' })],
    ['dmr-version', (m) => withHeaders(m, { 'dmr-version': 2 })],
    ['a body byte', (m) => ({ ...m, content: Buffer.from(m.content).map((byte, i) => (i === 3 ? byte ^ 1 : byte)) })],
  ];
  for (const [field, change] of metadata) {
    tamperings.push({
      name: `changes ${field}`,
      tamper: (m, v, self) => honest(change(m), self, v),
      next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signature' },
    });
  }
  tamperings.push({
    name: 'changes dmr-origin',
    tamper: (m, v, self) => honest(withHeaders(m, { 'dmr-origin': 'n1' }), self, v),
    next: { reason: 'HOP_SIGNATURE_INVALID', check: 'signer' },
  });

  for (const { name, tamper, next, destination } of tamperings) {
    it(`a transit hop that ${name} is caught at the next hop and at the destination`, async () => {
      const arrived = await arrivingAt(PATH, M);
      const verified = await verifierOf('n3').verify(arrived, AT);
      assert.ok(verified.ok);
      const forwarded = await tamper(arrived, verified.message, node('n3'));
      assertRefused(await verifierOf('n4').verify(forwarded, AT), next, 'next hop');
      assertRefused(await atDestination(PATH, M + 1, forwarded), destination ?? next, 'destination');
    });
  }

  it('a transit hop that takes the message over as its own origin is caught by the sender rule', async () => {
    const arrived = await arrivingAt(PATH, M);
    const self = node('n3');
    const original = testMessage({
      messageId: arrived.properties.messageId,
      timestamp: arrived.properties.timestamp,
      body: arrived.content,
    });
    const forwarded = originated(self, 'n4', AT, original);
    // Everything it signed is its own, so the chain verifies; the sender is not its client.
    const result = await verifierOf('n4').verify(forwarded, AT);
    assert.ok(result.ok, result.ok ? '' : result.detail);
    assertRefused(
      checkMeshParties(forwarded, result.message, directoryFor('n0')),
      { reason: 'SENDER_UNKNOWN', check: 'home' },
      'next hop',
    );
  });

  it('refuses a message that comes back to a node it passed, and one that passed a node twice', async () => {
    const loop = ['n0', 'n1', 'n2', 'n1'];
    const back = await arrivingAt(loop, 3);
    assertRefused(await verifierOf('n1').verify(back, AT), { reason: 'HOP_LOOP', check: 'loop' }, 'back at n1');
    // n1 forwards it anyway (it is the broken or hostile one): n3 sees n1 twice.
    const onward = appendedBlindly(back, node('n1'), 'n3', AT);
    assertRefused(await verifierOf('n3').verify(onward, AT), { reason: 'HOP_LOOP', check: 'loop' }, 'at n3');
  });

  it('enforces the hop limit: a chain at the limit is delivered but not forwarded, one over it is refused', async () => {
    assert.equal(DEFAULT_MAX_HOPS, 8);
    const path = [...POOL]; // 10 nodes: 9 links
    let current = originated(node('n0'), 'n1', AT);
    for (let i = 1; i < 8; i++) current = appendedBlindly(current, node(path[i] as string), path[i + 1] as string, AT);
    const atLimit = await verifierOf('n8').verify(current, AT);
    assert.ok(atLimit.ok, atLimit.ok ? '' : atLimit.detail);
    assert.equal(atLimit.message.count, 8);
    assertRefused(
      verifierOf('n8').checkForward(atLimit.message) ?? { ok: true, message: undefined },
      { reason: 'HOP_LIMIT_EXCEEDED', check: 'limit' },
      'forward from n8',
    );
    const before = await verifierOf('n7').verify(await arrivingAt(path, 7), AT);
    assert.ok(before.ok);
    assert.equal(verifierOf('n7').checkForward(before.message), undefined);
    const over = appendedBlindly(current, node('n8'), 'n9', AT);
    assertRefused(await verifierOf('n9').verify(over, AT), { reason: 'HOP_LIMIT_EXCEEDED', check: 'limit' }, 'at n9');
    const strict = mesh.verifier('n2', { maxHops: 1 });
    assertRefused(
      await strict.verify(await arrivingAt(['n0', 'n1', 'n2'], 2), AT),
      { reason: 'HOP_LIMIT_EXCEEDED', check: 'limit' },
      'maxHops 1',
    );
  });

  it('refuses a path through a denylisted node, and a denylisted or revoked origin', async () => {
    const arrived = await arrivingAt(PATH, 5);
    const denying = (ids: string[]) => mesh.verifier('n5', { denied: new Set(ids) });
    assertRefused(await denying(['n2']).verify(arrived, AT), { reason: 'HOP_NODE_DENIED', check: 'denied' }, 'transit');
    assertRefused(await denying(['n0']).verify(arrived, AT), { reason: 'ORIGIN_DENIED', check: '?' }, 'origin');
    assertRefused(await denying(['n4']).verify(arrived, AT), { reason: 'PEER_UNKNOWN', check: 'denied' }, 'previous');
    assertRefused(await denying([SENDER]).verify(arrived, AT), { reason: 'SENDER_DENIED', check: '?' }, 'sender');
  });

  it("refuses a revoked transit node's entry and a revoked origin when the CRL is at hand", async () => {
    const path = ['n0', 'rv1', 'n2'];
    const arrived = await arrivingAt(path, 2);
    assert.ok((await mesh.verifier('n2').verify(arrived, AT)).ok);
    const before = await mesh.ca.createCrl();
    assert.ok((await mesh.verifier('n2', { crlPems: [before] }).verify(arrived, AT)).ok, 'not revoked yet');
    await mesh.ca.revoke(node('rv1').serial, 'keyCompromise');
    const crl = await mesh.ca.createCrl();
    assertRefused(
      await mesh.verifier('n2', { crlPems: [crl] }).verify(arrived, AT),
      { reason: 'HOP_SIGNATURE_INVALID', check: 'revoked', entry: 1 },
      'transit',
    );
    const fromRevoked = originated(node('rv1'), 'n2', AT);
    assertRefused(
      await mesh.verifier('n2', { crlPems: [crl] }).verify(fromRevoked, AT),
      { reason: 'HOP_SIGNATURE_INVALID', check: 'revoked' },
      'origin',
    );
  });

  it('a warm certificate cache never serves a chain outside its leaf validity', async () => {
    const arrived = await arrivingAt(PATH, 2);
    const warm = mesh.verifier('n2', { chainCacheMs: 365 * 24 * 3_600_000 });
    assert.ok((await warm.verify(arrived, AT)).ok);
    // Leaves live 24 h from issue and start 60 s before it.
    const expired = await warm.verify(arrived, later(AT, 25 * 3_600_000));
    assertRefused(expired, { reason: 'HOP_SIGNATURE_INVALID', check: 'chain' }, 'after the leaf expired');
    const early = await warm.verify(arrived, later(AT, -3_600_000));
    assertRefused(early, { reason: 'HOP_SIGNATURE_INVALID', check: 'chain' }, 'before the leaf is valid');
    assert.ok((await warm.verify(arrived, later(AT, 1000))).ok, 'and still serves it within');
  });

  it('refuses an entry signed under a CA it does not trust', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dmr-hop-chain-other-'));
    try {
      const other = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: TD });
      const issued = await other.issueWithKey({ kind: 'node', id: 'n1' });
      const arrived = await arrivingAt(PATH, 2);
      const verified = await verifierOf('n2').verify(arrived, AT);
      assert.ok(verified.ok);
      const foreign = impostor('n1', { chainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem });
      const forged = JSON.parse(
        foreign.append({ signature: verified.message.signature, hops: verified.message.hops.slice(0, 1) }, 'n2', AT),
      ) as HopEntry[];
      const forwarded = publishedBy(
        arrived,
        node('n2'),
        node('n2').signer.append({ signature: verified.message.signature, hops: forged }, 'n3', AT),
      );
      assertRefused(
        await verifierOf('n3').verify(forwarded, AT),
        { reason: 'HOP_SIGNATURE_INVALID', check: 'chain', entry: 1 },
        'next hop',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes the previous hop only from a user_id naming a link peer of this trust domain', async () => {
    const options = { trustDomain: TD, peers: new Set(['n1', 'n2']), denied: new Set(['n2']) };
    assert.deepEqual(previousHop('spiffe://dmr.test/node/n1', options), { ok: true, message: 'n1' });
    const cases: Array<[unknown, string]> = [
      [undefined, 'user-id'],
      ['n1', 'user-id'],
      ['spiffe://other.test/node/n1', 'user-id'],
      ['spiffe://dmr.test/client/n1', 'user-id'],
      ['spiffe://dmr.test/node/N1', 'user-id'],
      ['spiffe://dmr.test/node/n1/x', 'user-id'],
      [Buffer.from('spiffe://dmr.test/node/n1'), 'user-id'],
      ['spiffe://dmr.test/node/n2', 'denied'],
      ['spiffe://dmr.test/node/n3', 'peer'],
    ];
    for (const [userId, check] of cases) {
      assertRefused(previousHop(userId, options), { reason: 'PEER_UNKNOWN', check }, String(userId));
    }
    const arrived = await arrivingAt(PATH, 2);
    const narrow = mesh.verifier('n2', { peers: new Set(['n3']) });
    assertRefused(await narrow.verify(arrived, AT), { reason: 'PEER_UNKNOWN', check: 'peer' }, 'not a peer');
    const asClient = { ...arrived, properties: { ...arrived.properties, userId: SENDER } };
    assertRefused(
      await verifierOf('n2').verify(asClient, AT),
      { reason: 'PEER_UNKNOWN', check: 'user-id' },
      'a client',
    );
  });

  it('refuses a malformed dmr-hops', async () => {
    const arrived = await arrivingAt(PATH, 2);
    const [e0, e1] = entriesOf(arrived) as [HopEntry, HopEntry];
    const cases: Array<[string, unknown]> = [
      ['missing', undefined],
      ['not JSON', '[{'],
      ['not a list', '{}'],
      ['empty', '[]'],
      [
        'version 1',
        JSON.stringify([
          { node: 'n0', at: e0.at },
          { node: 'n1', at: e1.at },
        ]),
      ],
      ['an origin entry without to', JSON.stringify([{ ...e0, to: null }, e1])],
      ['an extra key', JSON.stringify([e0, { ...e1, via: 'x' }])],
      ['a bad id', JSON.stringify([e0, { ...e1, node: 'N1' }])],
      ['a time without ms', JSON.stringify([e0, { ...e1, at: e1.at.replace(/\.\d{3}Z$/, 'Z') }])],
      ['an impossible time', JSON.stringify([e0, { ...e1, at: '2026-02-30T00:00:00.000Z' }])],
      ['a numeric to', JSON.stringify([e0, { ...e1, to: 7 }])],
      ['an attached JWS', JSON.stringify([e0, { ...e1, sig: String(e1.sig).replace('..', '.e30.') }])],
      ['a buffer', Buffer.from(JSON.stringify([e0, e1]))],
    ];
    for (const [what, value] of cases) {
      const result = await verifierOf('n2').verify(withHeaders(arrived, { 'dmr-hops': value }), AT);
      assertRefused(result, { reason: 'HOPS_INVALID', check: 'format' }, what);
    }
    // Version 2 (the origin's entry signed on its own) reads as an entry 0 that is not the origin's.
    assertRefused(
      await verifierOf('n2').verify(withEntries(arrived, [{ ...e0, sig: String(e1.sig) }, e1]), AT),
      { reason: 'HOPS_INVALID', check: 'origin' },
      'version 2',
    );
    assert.ok(
      !parseHopChain(JSON.stringify(Array.from({ length: 9 }, () => e0))).ok,
      'nine entries are over the default limit',
    );
  });

  it("refuses an entry whose JWS header is not a hop entry's", async () => {
    const arrived = await arrivingAt(PATH, 2);
    const entries = entriesOf(arrived);
    const e1 = entries[1] as HopEntry;
    const [encodedHeader, , signature] = String(e1.sig).split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8')) as Record<string, unknown>;
    const reheader = (changes: Record<string, unknown>): string =>
      `${Buffer.from(JSON.stringify({ ...header, ...changes })).toString('base64url')}..${signature}`;
    const cases: Array<[string, string, Expected]> = [
      [
        'typ of dmr-sig',
        reheader({ typ: 'dmr-hop-sig+jws' }),
        { reason: 'HOP_SIGNATURE_INVALID', check: 'header', entry: 1 },
      ],
      ['alg none', reheader({ alg: 'none' }), { reason: 'HOP_SIGNATURE_INVALID', check: 'header', entry: 1 }],
      ['crit', reheader({ crit: ['exp'] }), { reason: 'HOP_SIGNATURE_INVALID', check: 'header', entry: 1 }],
      ['no x5c', reheader({ x5c: undefined }), { reason: 'HOP_SIGNATURE_INVALID', check: 'header', entry: 1 }],
      ['another kid', reheader({ kid: 'ab'.repeat(32) }), { reason: 'HOP_SIGNATURE_INVALID', check: 'kid', entry: 1 }],
      [
        'not JSON',
        `${Buffer.from('{').toString('base64url')}..${signature}`,
        { reason: 'HOP_SIGNATURE_INVALID', check: 'format', entry: 1 },
      ],
    ];
    for (const [what, sig, expected] of cases) {
      const changed = withEntries(arrived, [entries[0] as HopEntry, { ...e1, sig }]);
      assertRefused(await verifierOf('n2').verify(changed, AT), expected, what);
    }
  });

  it('dmr-sig and every entry fit the per-hop allowance, and the relay cap fits what amqplib can encode', async () => {
    // The longest ids, RSA-2048 (the larger of the two usual key types): the allowance is 4 KiB per entry.
    const long = (i: number): string => `n${i}`.padStart(63, 'x');
    const ids = Array.from({ length: 4 }, (_, i) => long(i));
    const big = await testMesh(ids, Object.fromEntries(ids.map((id) => [id, 'rsa-2048' as const])));
    try {
      const sizeOf = (value: unknown): number => encodedTableSize({ h: value }) - 4 - 2;
      let message = originated(big.node(ids[0] as string), ids[1] as string, AT);
      assert.ok(sizeOf(message.properties.headers?.['dmr-sig']) <= HOP_ENTRY_ALLOWANCE_BYTES);
      let before = sizeOf(message.properties.headers?.['dmr-hops']);
      assert.ok(before <= HOP_ENTRY_ALLOWANCE_BYTES);
      for (let i = 1; i < 3; i++) {
        message = appendedBlindly(message, big.node(ids[i] as string), ids[i + 1] as string, AT);
        const now = sizeOf(message.properties.headers?.['dmr-hops']);
        assert.ok(now - before <= HOP_ENTRY_ALLOWANCE_BYTES, `entry ${i}: ${now - before} bytes`);
        assert.ok(now - before > HOP_ENTRY_ALLOWANCE_BYTES / 2, 'the allowance is not far off the measured size');
        before = now;
      }
      assert.equal(relayHeaderCap(16_384), 16_384 + 9 * HOP_ENTRY_ALLOWANCE_BYTES);
      assert.ok(relayHeaderCap(16_384) < 65_536, "amqplib's field-table buffer");
    } finally {
      await big.cleanup();
    }
  });

  it('the signer refuses what would break the rules it signs for', () => {
    const n0 = node('n0').signer;
    assert.throws(() => n0.originate(testMessage(), SENDER, 'n0', AT), RangeError, 'to itself');
    assert.throws(() => n0.originate(testMessage(), SENDER, 'N1', AT), RangeError, 'an invalid id');
    assert.throws(() => n0.originate(testMessage(), 'n0', 'n1', AT), RangeError, 'a message in its own name');
    assert.throws(
      () => n0.originate(testMessage({ type: 'dmr.DeliveryReport' }), SENDER, 'n1', AT),
      RangeError,
      'a report for a client',
    );
    assert.throws(
      () => n0.originate(testMessage({ type: undefined }), SENDER, 'n1', AT),
      RangeError,
      'an unsignable message',
    );
  });

  it('property: untampered random paths verify at every hop', async () => {
    await fc.assert(
      fc.asyncProperty(fc.shuffledSubarray(POOL, { minLength: 2, maxLength: POOL.length - 1 }), async (path) => {
        let current = originated(node(path[0] as string), path[1] as string, AT);
        for (let i = 1; i < path.length; i++) {
          const result = await verifierOf(path[i] as string).verify(current, AT);
          assert.ok(result.ok, `${path.join('→')} at ${i}: ${result.ok ? '' : result.detail}`);
          assert.equal(result.message.count, i);
          current = publishedBy(
            current,
            node(path[i] as string),
            node(path[i] as string).signer.append(result.message, path[i + 1] ?? null, AT),
          );
        }
      }),
      { numRuns: 40 },
    );
  });

  it('property: one random tampering at a random transit hop is refused at the next hop and at the destination', async () => {
    /** Random tamperings a hop at index k of `path` can do: each returns what it forwards to path[k+1]. */
    const random = fc.record({
      path: fc.shuffledSubarray(POOL, { minLength: 3, maxLength: POOL.length - 1 }),
      at: fc.nat(),
      kind: fc.constantFrom(
        'drop',
        'swap',
        'at',
        'to',
        'forge',
        'insert',
        'transplant',
        'metadata',
        'body',
        'previous',
        'resign-sig',
        'misroute',
      ),
      pick: fc.nat(),
      delta: fc.integer({ min: 1, max: 1_000_000 }),
    });
    await fc.assert(
      fc.asyncProperty(random, async ({ path, at, kind, pick, delta }) => {
        const k = 1 + (at % (path.length - 2));
        const self = node(path[k] as string);
        const next = path[k + 1] as string;
        const arrived = await arrivingAt(path, k);
        const verified = await verifierOf(self.id).verify(arrived, AT);
        assert.ok(verified.ok);
        const v = verified.message;
        const j = pick % v.hops.length;
        const forward = (m: SignableMessage, hops: readonly HopEntry[], signature = v.signature, to = next) =>
          publishedBy(m, self, self.signer.append({ signature, hops }, to, AT));
        const other = POOL.find((id) => !path.includes(id)) as string;
        let forwarded: SignableMessage;
        switch (kind) {
          case 'drop': {
            const kept = v.hops.filter((_, i) => i !== j);
            // Nothing left to append to: the hop writes an (unsigned) origin entry of its own.
            forwarded =
              kept.length === 0
                ? publishedBy(arrived, self, JSON.stringify([{ node: self.id, at: AT.toISOString(), to: next }]))
                : forward(arrived, kept);
            break;
          }
          case 'swap': {
            const i2 = (j + 1 + (delta % Math.max(1, v.hops.length - 1))) % v.hops.length;
            const hops = [...v.hops];
            [hops[j], hops[i2]] = [hops[i2] as HopEntry, hops[j] as HopEntry];
            fc.pre(i2 !== j);
            forwarded = forward(arrived, hops);
            break;
          }
          case 'at':
            forwarded = forward(
              arrived,
              v.hops.map((hop, i) => (i === j ? { ...hop, at: later(new Date(hop.at), delta).toISOString() } : hop)),
            );
            break;
          case 'to':
            forwarded = forward(
              arrived,
              v.hops.map((hop, i) => (i === j ? { ...hop, to: other } : hop)),
            );
            break;
          case 'forge': {
            const forged0 = v.hops[0] as HopEntry;
            if (j === 0) {
              // The origin's entry has no sig to forge: a forger can only rewrite it (dmr-sig covers it).
              const rewritten = {
                node: forged0.node,
                at: later(new Date(forged0.at), delta).toISOString(),
                to: forged0.to,
              };
              forwarded = forward(arrived, [rewritten, ...v.hops.slice(1)]);
              break;
            }
            const forger = impostor((v.hops[j] as HopEntry).node, self);
            const forged = JSON.parse(
              forger.append(
                { signature: v.signature, hops: v.hops.slice(0, j) },
                (v.hops[j] as HopEntry).to as string,
                AT,
              ),
            ) as HopEntry[];
            forwarded = forward(arrived, [...forged, ...v.hops.slice(j + 1)]);
            break;
          }
          case 'insert': {
            const inserted = JSON.parse(
              impostor(other, self).append(
                { signature: v.signature, hops: v.hops.slice(0, j + 1) },
                (v.hops[j] as HopEntry).to as string,
                AT,
              ),
            ) as HopEntry[];
            forwarded = forward(arrived, [...inserted, ...v.hops.slice(j + 1)]);
            break;
          }
          case 'transplant': {
            const transplanted = entriesOf(await arrivingAt(path, k));
            // Only the origin's entry (same node, time and next hop) is the same content, not a change: v3
            // signs entry 0's fields in dmr-sig, not the entry as a separate signature.
            fc.pre(JSON.stringify(transplanted) !== JSON.stringify(v.hops));
            forwarded = forward(arrived, transplanted);
            break;
          }
          case 'metadata': {
            const changes: Array<(m: SignableMessage) => SignableMessage> = [
              (m) => property(m, 'messageId', '00000000-0000-4000-8000-000000000000'),
              (m) => property(m, 'type', 'OtherMessage'),
              (m) => property(m, 'timestamp', Number(m.properties.timestamp) + delta),
              (m) => property(m, 'expiration', String(delta)),
              (m) => withHeaders(m, { 'dmr-recipient': 'edu-bot' }),
              (m) => withHeaders(m, { 'dmr-sender': 'police-bot' }),
              (m) => withHeaders(m, { 'dmr-origin': other }),
              (m) => withHeaders(m, { 'dmr-version': 2 }),
            ];
            forwarded = forward(
              (changes[pick % changes.length] as (m: SignableMessage) => SignableMessage)(arrived),
              v.hops,
            );
            break;
          }
          case 'body': {
            const body = Buffer.from(arrived.content);
            const index = pick % body.length;
            body[index] = (body[index] as number) ^ (1 + (delta % 255));
            forwarded = forward({ ...arrived, content: body }, v.hops);
            break;
          }
          case 'previous': {
            const mine = JSON.parse(self.signer.append(v, other, AT)) as HopEntry[];
            forwarded = publishedBy(
              arrived,
              self,
              impostor(other, self).append({ signature: v.signature, hops: mine }, next, AT),
            );
            break;
          }
          case 'resign-sig': {
            const resigned = impostor(v.origin, self).originate(arrived, SENDER, path[1] as string, AT)[
              'dmr-sig'
            ] as string;
            forwarded = forward(withHeaders(arrived, { 'dmr-sig': resigned }), v.hops, resigned);
            break;
          }
          default:
            forwarded = forward(arrived, v.hops, v.signature, other);
        }
        const atNext = await verifierOf(next).verify(forwarded, AT);
        assert.ok(!atNext.ok, `${kind} by ${self.id} on ${path.join('→')} passed ${next}`);
        assert.ok(HOP_CODES.has(atNext.reason), `${kind}: ${atNext.reason}`);
        const atEnd = await atDestination(path, k + 1, forwarded);
        assert.ok(!atEnd.ok, `${kind} by ${self.id} on ${path.join('→')} passed the destination`);
        assert.ok(HOP_CODES.has(atEnd.reason), `${kind}: ${atEnd.reason}`);
      }),
      { numRuns: 150 },
    );
  });
});
