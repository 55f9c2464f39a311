/**
 * The route index: a next hop only through a configured link peer that is
 * not denylisted, and why not; the builder: who may be a previous hop.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeConfig } from '@dmr/contract';
import { originated, testMesh } from '../message/mesh-test-support.js';
import { denyNode, sampleConfig } from '../reconciler/test-support.js';
import { MeshContextBuilder, RouteIndex } from './mesh-context.js';

type IndexConfig = Pick<NodeConfig, 'node' | 'revision' | 'links' | 'routes' | 'denylist'>;

function config(overrides: Partial<IndexConfig> = {}): IndexConfig {
  const link = (peer: string): NodeConfig['links'][number] => ({
    peer,
    amqpsEndpoint: `amqps://${peer}:5671`,
    cost: 1,
    peerCertificates: [],
  });
  return {
    node: { id: 'node-a', amqpsEndpoint: 'amqps://a:5671', managementEndpoint: 'https://a:15671' },
    revision: 4,
    links: [link('node-b'), link('node-d')],
    routes: [
      { destination: 'node-b', reachable: true, nextHop: 'node-b', cost: 1 },
      { destination: 'node-c', reachable: true, nextHop: 'node-b', cost: 2 },
      { destination: 'node-e', reachable: false },
      { destination: 'node-f', reachable: true, nextHop: 'node-x', cost: 3 },
      { destination: 'node-g', reachable: true, nextHop: 'node-d', cost: 2 },
    ],
    denylist: [],
    ...overrides,
  };
}

describe('RouteIndex', () => {
  it('takes the next hop of the route: direct, and over another node', () => {
    const index = new RouteIndex(config());
    assert.deepEqual(index.nextHop('node-b'), { ok: true, nextHop: 'node-b' });
    assert.deepEqual(index.nextHop('node-c'), { ok: true, nextHop: 'node-b' });
    assert.deepEqual([...index.peers].sort(), ['node-b', 'node-d']);
  });

  it('says which: no route, unreachable, a next hop that is not a link peer', () => {
    const index = new RouteIndex(config());
    const none = index.nextHop('node-z');
    assert.equal(none.ok, false);
    assert.equal(!none.ok && none.why, 'no-route');
    assert.match(!none.ok ? none.detail : '', /revision 4 has no route to node node-z \(no-route\)$/);
    const unreachable = index.nextHop('node-e');
    assert.equal(!unreachable.ok && unreachable.why, 'unreachable');
    const notLinked = index.nextHop('node-f');
    assert.equal(!notLinked.ok && notLinked.why, 'not-linked');
    assert.match(!notLinked.ok ? notLinked.detail : '', /node-x, is not a link peer/);
  });

  it('never routes through or to a denylisted node, and drops it from the peers', () => {
    const denied = (id: string): NodeConfig['denylist'][number] => ({
      id,
      kind: 'node',
      reason: 'test',
      since: '2026-01-01T00:00:00.000Z',
    });
    const index = new RouteIndex(config({ denylist: [denied('node-d'), denied('node-c')] }));
    const viaDenied = index.nextHop('node-g');
    assert.equal(!viaDenied.ok && viaDenied.why, 'denied');
    assert.match(!viaDenied.ok ? viaDenied.detail : '', /the next hop to node node-g, node-d, is on the denylist/);
    const toDenied = index.nextHop('node-c');
    assert.equal(!toDenied.ok && toDenied.why, 'denied');
    assert.deepEqual([...index.peers], ['node-b']);
  });

  it('a client on the denylist does not hide a node route (ids are unique, kinds differ)', () => {
    const index = new RouteIndex(
      config({ denylist: [{ id: 'node-b', kind: 'client', reason: 'test', since: '2026-01-01T00:00:00.000Z' }] }),
    );
    assert.deepEqual(index.nextHop('node-c'), { ok: true, nextHop: 'node-b' });
  });
});

describe('MeshContextBuilder', () => {
  it('takes messages from a peer whose link left until it is denylisted, never from a node it had no link with', async () => {
    const mesh = await testMesh(['n1', 'n2', 'n3']);
    try {
      const link = (peer: string): NodeConfig['links'][number] => ({
        peer,
        amqpsEndpoint: `amqps://${peer}:5671`,
        cost: 1,
        peerCertificates: [],
      });
      const n2 = mesh.node('n2');
      const identity = {
        certificateChainPem: n2.chainPem,
        privateKeyPem: n2.privateKeyPem,
        trustBundlePem: mesh.ca.trustBundlePem(),
      };
      const builder = new MeshContextBuilder();
      const at = new Date();
      const verdict = async (config: NodeConfig, from: string): Promise<string> => {
        const result = await builder.build(config, identity).verifier.verify(originated(mesh.node(from), 'n2', at), at);
        return result.ok ? 'ok' : result.detail;
      };
      const linked = sampleConfig([], { node: 'n2', links: [link('n1')] });
      assert.equal(await verdict(linked, 'n1'), 'ok');
      assert.match(await verdict(linked, 'n3'), /not a link peer/);
      const unlinked = { ...sampleConfig([], { node: 'n2' }), revision: 2 };
      assert.equal(await verdict(unlinked, 'n1'), 'ok', 'its drain still arrives');
      const denied = { ...sampleConfig([], { node: 'n2', denylist: [denyNode('n1')] }), revision: 3 };
      assert.match(await verdict(denied, 'n1'), /denylist/);
      assert.match(await verdict({ ...unlinked, revision: 4 }, 'n1'), /not a link peer/, 'the denylist ended it');
    } finally {
      await mesh.cleanup();
    }
  });
});
