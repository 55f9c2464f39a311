import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalJson, isDmrError } from '@dmr/core';
import { client, link, node } from '../store/test-support/fixtures.js';
import type { CertificateRecord } from '../store/types.js';
import { DEFAULT_LIMITS } from './limits.js';
import { buildNodeConfig, isNodeConfig, nodeConfigProblems, prepareNodeConfigs } from './node-config.js';
import { TRUST_DOMAIN, snapshotOf } from './test-support.js';

const NOW = new Date('2025-06-01T12:00:00.000Z');
const BUILD = { trustDomain: TRUST_DOMAIN };

function certificate(id: string, serial: string, overrides: Partial<CertificateRecord> = {}): CertificateRecord {
  return {
    serial,
    kind: 'client',
    id,
    fingerprint: serial.padStart(64, '0'),
    notBefore: '2025-06-01T00:00:00.000Z',
    notAfter: '2025-06-02T00:00:00.000Z',
    recordedAt: '2025-06-01T00:00:00.000Z',
    revokedAt: null,
    revocationReason: null,
    ...overrides,
  };
}

const mesh = snapshotOf({
  revision: 7,
  nodes: [node('dmr-tartu'), node('dmr-tallinn'), node('dmr-narva'), node('dmr-parnu')],
  clients: [
    client('police-bot', 'police', 'dmr-tallinn', { labels: { team: 'crime' }, roles: ['chatbot', 'police'] }),
    client('tax-bot', 'emta', 'dmr-tartu'),
    client('rescue-bot', 'rescue', 'dmr-tallinn', { status: 'suspended' }),
  ],
  links: [
    link('dmr-tallinn', 'dmr-tartu', 10),
    link('dmr-tartu', 'dmr-narva', 5),
    link('dmr-tallinn', 'dmr-narva', 30),
  ],
  denylist: [
    {
      id: 'evil-bot',
      kind: 'client',
      reason: 'compromised',
      since: '2025-05-01T00:00:00.000Z',
      addedBy: 'spiffe://dmr.test/operator/alice',
    },
  ],
});

const certificates = [
  certificate('police-bot', 'aa01'),
  certificate('police-bot', 'aa02', { notAfter: '2025-06-01T11:59:59.000Z' }), // expired
  certificate('tax-bot', 'bb01', { revokedAt: '2025-06-01T01:00:00.000Z', revocationReason: 'keyCompromise' }),
  certificate('tax-bot', 'bb02'),
  certificate('dmr-tartu', 'cc01', { kind: 'node' }),
];

describe('buildNodeConfig', () => {
  const config = buildNodeConfig(mesh, certificates, 'dmr-tallinn', NOW, BUILD);

  it('describes the node, its local clients, links, routes, denylist and limits', () => {
    assert.equal(config.apiVersion, 'dmr.ee/v1');
    assert.equal(config.kind, 'NodeConfig');
    assert.equal(config.trustDomain, 'dmr.test');
    assert.equal(config.revision, 7);
    assert.equal(config.issuedAt, NOW.toISOString());
    assert.deepEqual(config.node, {
      id: 'dmr-tallinn',
      amqpsEndpoint: 'amqps://dmr-tallinn.dmr.example.ee:5671',
      managementEndpoint: 'https://dmr-tallinn.dmr.example.ee:15671',
    });
    assert.deepEqual(
      config.clients.map((c) => [c.id, c.status]),
      [
        ['police-bot', 'active'],
        ['rescue-bot', 'suspended'],
      ],
    );
    assert.deepEqual(config.clients[0]?.labels, { team: 'crime' });
    assert.deepEqual(
      config.links.map((l) => [l.peer, l.cost, l.peerCertificates.length]),
      [
        ['dmr-narva', 30, 0],
        ['dmr-tartu', 10, 1],
      ],
    );
    assert.deepEqual(config.routes, [
      { destination: 'dmr-narva', reachable: true, nextHop: 'dmr-tartu', cost: 15 },
      { destination: 'dmr-parnu', reachable: false },
      { destination: 'dmr-tartu', reachable: true, nextHop: 'dmr-tartu', cost: 10 },
    ]);
    assert.deepEqual(config.denylist, [
      { id: 'evil-bot', kind: 'client', reason: 'compromised', since: '2025-05-01T00:00:00.000Z' },
    ]);
    assert.deepEqual(config.limits, DEFAULT_LIMITS);
    assert.deepEqual(nodeConfigProblems(config), []);
  });

  it('lists only current certificates: not revoked, not expired', () => {
    const police = config.directory.find((entry) => entry.id === 'police-bot');
    const tax = config.directory.find((entry) => entry.id === 'tax-bot');
    assert.deepEqual(
      police?.certificates.map((c) => c.serial),
      ['aa01'],
    );
    assert.deepEqual(
      tax?.certificates.map((c) => c.serial),
      ['bb02'],
    );
    assert.equal(tax?.homeNode, 'dmr-tartu');
  });

  it('leaves denylisted nodes out of links and routes', () => {
    const denied = snapshotOf({
      ...{ revision: 8, nodes: mesh.resources.Node.map((s) => s.spec), links: mesh.resources.Link.map((s) => s.spec) },
      denylist: [{ id: 'dmr-tartu', kind: 'node', reason: 'stolen', since: NOW.toISOString(), addedBy: 'x' }],
    });
    const result = buildNodeConfig(denied, [], 'dmr-tallinn', NOW, BUILD);
    assert.deepEqual(
      result.links.map((l) => l.peer),
      ['dmr-narva'],
    );
    assert.deepEqual(result.routes, [
      { destination: 'dmr-narva', reachable: true, nextHop: 'dmr-narva', cost: 30 },
      { destination: 'dmr-parnu', reachable: false },
    ]);
  });

  it('refuses an unknown node with NOT_FOUND', () => {
    assert.throws(
      () => buildNodeConfig(mesh, [], 'dmr-nowhere', NOW, BUILD),
      (error: unknown) => isDmrError(error) && error.code === 'NOT_FOUND',
    );
  });

  it('is pure: the same inputs in any order give the same canonical document', () => {
    const shuffled = snapshotOf({
      revision: 7,
      nodes: mesh.resources.Node.map((s) => s.spec).reverse(),
      clients: mesh.resources.Client.map((s) => s.spec).reverse(),
      links: mesh.resources.Link.map((s) => s.spec).reverse(),
      denylist: mesh.denylist,
    });
    const again = buildNodeConfig(shuffled, [...certificates].reverse(), 'dmr-tallinn', NOW, BUILD);
    assert.equal(canonicalJson(again), canonicalJson(config));
  });

  it('the schema refuses unknown fields and wrong shapes', () => {
    assert.equal(isNodeConfig({ ...config, extra: 1 }), false);
    assert.equal(isNodeConfig({ ...config, revision: -1 }), false);
    assert.equal(isNodeConfig({ ...config, apiVersion: 'dmr.ee/v2' }), false);
    assert.ok(nodeConfigProblems({ ...config, node: { id: 'X' } }).length > 0);
    assert.equal(isNodeConfig({ ...config, trustDomain: 'Not A Domain' }), false);
    const withoutTrustDomain = Object.fromEntries(Object.entries(config).filter(([key]) => key !== 'trustDomain'));
    assert.deepEqual(nodeConfigProblems(withoutTrustDomain).slice(0, 1), ['/trustDomain: Expected required property']);
  });

  it('refuses to build for an invalid trust domain', () => {
    assert.throws(
      () => buildNodeConfig(mesh, [], 'dmr-tallinn', NOW, { trustDomain: 'under_score' }),
      (error) => isDmrError(error) && error.code === 'INVALID_ARGUMENT',
    );
  });

  it('every client once in the directory; local clients are exactly those at home; no private data of others (property)', () => {
    const ids = ['n-a', 'n-b', 'n-c', 'n-d'];
    const registries = fc.record({
      homes: fc.array(fc.constantFrom(...ids), { maxLength: 12 }),
      costs: fc.array(fc.option(fc.integer({ min: 1, max: 9 })), { minLength: 6, maxLength: 6 }),
      self: fc.constantFrom(...ids),
    });
    fc.assert(
      fc.property(registries, ({ homes, costs, self }) => {
        const pairs = ids.flatMap((a, i) => ids.slice(i + 1).map((b) => [a, b] as const));
        const snapshot = snapshotOf({
          revision: 3,
          nodes: ids.map((id) => node(id, { labels: { secret: `label-of-${id}` } })),
          clients: homes.map((home, index) =>
            client(`client-${index}`, 'org', home, { labels: { private: `label-of-client-${index}` } }),
          ),
          links: pairs.flatMap(([a, b], index) => {
            const cost = costs[index];
            return cost === null || cost === undefined ? [] : [link(a, b, cost)];
          }),
        });
        const result = buildNodeConfig(snapshot, [], self, NOW, BUILD);
        assert.ok(isNodeConfig(result));
        assert.deepEqual(
          result.directory.map((entry) => entry.id),
          homes.map((_, index) => `client-${index}`).sort(),
        );
        assert.deepEqual(
          result.clients.map((c) => c.id),
          homes.flatMap((home, index) => (home === self ? [`client-${index}`] : [])).sort(),
        );
        const text = JSON.stringify(result);
        for (const id of ids) {
          assert.ok(!text.includes(`label-of-${id}`), 'node labels never leave CentOps');
          if (id !== self) assert.ok(!text.includes(`https://${id}.`), 'no other node management endpoint');
        }
        for (const [index, home] of homes.entries()) {
          assert.equal(text.includes(`label-of-client-${index}"`), home === self, 'client labels only at home');
        }
        assert.equal(result.routes.length, ids.length - 1);
      }),
      { numRuns: 200 },
    );
  });
});

describe('prepareNodeConfigs', () => {
  it('builds every node’s document from one preparation, as a fresh build would, sharing the directory', () => {
    const denied = {
      ...mesh,
      denylist: [
        ...mesh.denylist,
        { id: 'dmr-narva', kind: 'node' as const, reason: 'stolen', since: '2025-05-02T00:00:00.000Z', addedBy: 'x' },
      ],
    };
    const prepared = prepareNodeConfigs(denied, certificates, NOW, BUILD);
    assert.equal(prepared.revision, 7);
    const built = ['dmr-narva', 'dmr-parnu', 'dmr-tallinn', 'dmr-tartu'].map((id) => prepared.build(id, NOW));
    for (const config of built) {
      assert.deepEqual(config, buildNodeConfig(denied, certificates, config.node.id, NOW, BUILD));
      assert.ok(isNodeConfig(config), nodeConfigProblems(config).join('; '));
      assert.equal(config.directory, built[0]?.directory, 'one directory per revision');
    }
    assert.ok(
      !built[2]?.routes.some((route) => route.destination === 'dmr-narva'),
      'others do not route to a denylisted node',
    );
    assert.throws(
      () => prepared.build('dmr-nowhere', NOW),
      (error) => isDmrError(error) && error.code === 'NOT_FOUND',
    );
  });
});

describe('canonicalDocument', () => {
  it('is byte-identical to the store canonical JSON', async () => {
    const { canonicalDocument } = await import('./canonical.js');
    const config = buildNodeConfig(mesh, certificates, 'dmr-tallinn', NOW, BUILD);
    assert.equal(canonicalDocument(config), canonicalJson(config));
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        assert.equal(canonicalDocument(value), canonicalJson(value));
      }),
    );
  });

  it('splices shared fields (the directory) serialised once, byte-identical every time', async () => {
    const { canonicalDocument, shareCanonical } = await import('./canonical.js');
    const prepared = prepareNodeConfigs(mesh, certificates, NOW, BUILD);
    for (const id of ['dmr-tallinn', 'dmr-tartu', 'dmr-tallinn']) {
      const config = prepared.build(id, NOW);
      assert.equal(canonicalDocument(config), canonicalJson(config));
    }
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.array(fc.jsonValue()), (fields, list) => {
        const document = { ...fields, shared: shareCanonical([...list]) };
        assert.equal(canonicalDocument(document), canonicalJson(document));
        assert.equal(canonicalDocument(document), canonicalJson(document), 'and again, from the cache');
      }),
    );
  });
});
