/**
 * Two nodes, each with its own harness broker, linked both ways by the
 * reconciler's shovels (logging in to the far broker with the near node's
 * certificate): a client on A reaches a client on B exactly once with a
 * verified hop chain, the answer comes back, a policy deny at B and a
 * destination without a route reach the sender as reports, and a second
 * copy in B's mesh ingress is dropped, and a stuck recipient on B parks its
 * overflow from the mesh ingress while B keeps relaying to others (decision
 * 0039). Two router shards per node: the mesh
 * ingress hashes a message id to one shard, so both copies meet one replay
 * guard.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@dmr/core/testing';
import { parseHopChain } from '../message/hop-chain.js';
import { publishPropertiesOf } from '../testing/link-forwarder.js';
import { MeshFixture, shortestRoutes } from '../testing/mesh-fixture.js';
import { parseReport, type TestClient } from '../testing/node-fixture.js';

const NODES = ['node-a', 'node-b'];
const LINKS = [['node-a', 'node-b']] as const;

/** A counter summed over a node's router shards (`labels` filters by label). */
async function counted(
  mesh: MeshFixture,
  node: string,
  metric: 'forwarded' | 'relayed' | 'duplicatesDropped' | 'parked' | 'unparked',
  labels: Record<string, string> = {},
): Promise<number> {
  let total = 0;
  for (const { metrics } of mesh.node(node).routers) {
    for (const value of (await metrics[metric].get()).values) {
      const seen: Record<string, unknown> = value.labels;
      if (Object.entries(labels).every(([name, wanted]) => seen[name] === wanted)) total += value.value;
    }
  }
  return total;
}

function chainOf(headers: Record<string, unknown> | undefined): Array<[string, string | null]> {
  const chain = parseHopChain(headers?.['dmr-hops'], 8);
  assert.ok(chain.ok, 'dmr-hops is a hop chain');
  return chain.message.map((entry) => [entry.node, entry.to]);
}

describe('two nodes, one link', { timeout: 240_000 }, () => {
  let mesh: MeshFixture;
  let ria: TestClient;
  let rik: TestClient;

  before(async () => {
    mesh = await MeshFixture.start({
      label: 'mesh2',
      nodes: NODES,
      routerShards: 2,
      links: LINKS,
      clients: [
        { id: 'ria-bot', organisation: 'ria', roles: ['bot'], homeNode: 'node-a' },
        { id: 'rik-bot', organisation: 'rik', roles: ['bot'], homeNode: 'node-b' },
        { id: 'rik-desk', organisation: 'rik', roles: ['desk'], homeNode: 'node-b' },
        { id: 'far-bot', organisation: 'rik', roles: ['bot'], homeNode: 'node-z' },
      ],
      grants: {
        'node-a': [
          { from: 'ria', to: 'rik' },
          { from: 'rik', to: 'ria' },
        ],
        // B allows less than A: what A lets through, B still judges.
        'node-b': [
          { from: 'ria', to: 'rik', types: ['ChatMessage'] },
          { from: 'rik', to: 'ria' },
        ],
      },
      routes: {
        'node-a': [...shortestRoutes('node-a', NODES, LINKS), { destination: 'node-z', reachable: false }],
      },
    });
    ria = await mesh.node('node-a').client('ria-bot');
    rik = await mesh.node('node-b').client('rik-bot');
  });

  after(() => mesh?.stop());

  it('delivers a message from a client on A to a client on B exactly once, with the verified hop chain', async () => {
    const id = await ria.send({ to: 'rik-bot', body: '{"q":"across"}' });
    const delivered = await rik.next(20_000);
    assert.equal(delivered.properties.messageId, id);
    assert.equal(delivered.content.toString('utf8'), '{"q":"across"}');
    const headers = delivered.properties.headers;
    assert.equal(headers?.['dmr-sender'], 'ria-bot');
    assert.equal(headers?.['dmr-origin'], 'node-a');
    assert.deepEqual(chainOf(headers), [
      ['node-a', 'node-b'],
      ['node-b', null],
    ]);
    // B took node A as the previous hop from the user_id its broker checked; the client gets none.
    assert.equal(delivered.properties.userId, undefined);
    assert.deepEqual(await rik.drain(1_000), [], 'exactly one delivery');

    assert.equal(await counted(mesh, 'node-a', 'forwarded'), 1);
    assert.equal(await counted(mesh, 'node-b', 'relayed', { outcome: 'delivered' }), 1);
    const decision = mesh.node('node-b').decisions(id ?? '')[0];
    assert.equal(decision?.result, 'routed');
    assert.deepEqual(decision?.hops, ['node-a', 'node-b']);
    assert.equal(mesh.node('node-a').decisions(id ?? '')[0]?.result, 'forwarded');
  });

  it('carries the answer back from B to A', async () => {
    const id = await rik.send({ to: 'ria-bot', body: '{"a":"back"}' });
    const delivered = await ria.next(20_000);
    assert.equal(delivered.properties.messageId, id);
    assert.equal(delivered.properties.headers?.['dmr-sender'], 'rik-bot');
    assert.deepEqual(chainOf(delivered.properties.headers), [
      ['node-b', 'node-a'],
      ['node-a', null],
    ]);
  });

  it('reports a policy deny at B to the sender on A, signed by B, like a local report', async () => {
    const id = await ria.send({ to: 'rik-bot', type: 'FileTransfer' });
    const report = await ria.next(20_000);
    assert.equal(report.properties.type, 'dmr.DeliveryReport', report.content.toString('utf8'));
    assert.equal(report.properties.correlationId, id);
    assert.equal(report.properties.headers?.['dmr-recipient'], 'ria-bot');
    assert.equal(report.properties.headers?.['dmr-origin'], 'node-b');
    assert.equal(report.properties.headers?.['dmr-sender'], 'node-b');
    assert.deepEqual(chainOf(report.properties.headers), [
      ['node-b', 'node-a'],
      ['node-a', null],
    ]);
    const body = parseReport(report);
    assert.equal(body.messageId, id);
    assert.equal(body.status, 'rejected');
    assert.equal(body.reason, 'POLICY_DENIED');
    assert.equal(body.node, 'node-b');
    assert.match(body.detail, /at node node-b denied/);
    assert.deepEqual(await rik.drain(500), []);
  });

  it('drops a second copy of a message in B mesh ingress (a link redelivery): one delivery, no report', async () => {
    const id = await ria.send({ to: 'rik-bot', body: '{"q":"twice"}' });
    const delivered = await rik.next(20_000);
    // The copy that crossed the link: the delivered one without B's final entry, published by A.
    const properties = publishPropertiesOf(delivered);
    const chain = parseHopChain(properties.headers['dmr-hops'], 8);
    assert.ok(chain.ok);
    properties.headers['dmr-hops'] = JSON.stringify(chain.message.slice(0, -1));
    properties.userId = 'spiffe://dmr.test/node/node-a';
    await mesh.link('node-a', 'node-b').inject({ content: delivered.content, properties });
    await waitFor('the duplicate dropped at B', async () => (await counted(mesh, 'node-b', 'duplicatesDropped')) === 1);

    assert.deepEqual(await rik.drain(1_000), []);
    assert.deepEqual(await ria.drain(500), [], 'no report about a duplicate');
    const decisions = mesh.node('node-b').decisions(id ?? '');
    assert.deepEqual(
      decisions.map((line) => line.result),
      ['routed', 'duplicate'],
    );
  });

  it('refuses a recipient on a node it has no usable route to at the origin: RECIPIENT_UNREACHABLE, says why', async () => {
    const id = await ria.send({ to: 'far-bot' });
    const report = parseReport(await ria.next(20_000));
    assert.equal(report.messageId, id);
    assert.equal(report.reason, 'RECIPIENT_UNREACHABLE');
    assert.equal(report.node, 'node-a');
    assert.match(report.detail, /homed on node-z: node node-z is unreachable from this node \(unreachable\)$/);
  });
  it('parks what a stuck recipient on B cannot hold from the mesh ingress; B keeps relaying to others; all arrive once', async () => {
    const b = mesh.node('node-b');
    await b.stopRouters();
    await b.resizeQueue('dmr.client.rik-desk', 2, [['dmr.delivery', 'rik-desk']]);
    // Without parking each shard would stop at 4 held, all of them for rik-desk, and rik-bot would wait.
    for (const shard of [0, 1]) await b.startRouter({ shard, hold: { maxMessages: 4, maxPerKey: 1 } });
    const stuck = new Set<string>();
    const others: string[] = [];
    const parked = (): Promise<number> => counted(mesh, 'node-b', 'parked', { kind: 'recipient' });
    // Bursts of 20 until B parks one: a quorum queue applies its bound late, and on a busy machine a whole burst
    // from B's router window can fit past rik-desk's bound of 2, so that nothing is held or parked yet.
    for (let burst = 0; burst < 10 && (burst < 3 || (await parked()) === 0); burst += 1) {
      const sending: Array<Promise<unknown>> = [];
      for (let i = 0; i < 20; i += 1) {
        sending.push(ria.send({ to: 'rik-desk' }).then((id) => stuck.add(id ?? '')));
        if (i % 10 === 9) sending.push(ria.send({ to: 'rik-bot' }).then((id) => others.push(id ?? '')));
      }
      await Promise.all(sending);
      if (burst >= 2) {
        await waitFor(`B parked a message for rik-desk (burst ${burst + 1})`, async () => (await parked()) > 0, {
          timeoutMs: 10_000,
        }).catch(() => undefined);
      }
    }
    const arrived: string[] = [];
    while (arrived.length < others.length) arrived.push(String((await rik.next(30_000)).properties.messageId));
    assert.deepEqual(arrived.sort(), [...others].sort());
    assert.ok((await parked()) > 0, `B parked none of ${stuck.size} messages for rik-desk`);
    await waitFor(
      'a parked relayed message back in the mesh ingress',
      async () => (await counted(mesh, 'node-b', 'unparked')) > 0,
      {
        timeoutMs: 30_000,
      },
    );
    // The stuck recipient consumes: every relayed message arrives once.
    const desk = await b.client('rik-desk');
    const received = new Set<string>();
    let copies = 0;
    while (received.size < stuck.size) {
      const id = String((await desk.next(30_000)).properties.messageId);
      if (received.has(id)) copies += 1;
      received.add(id);
    }
    assert.deepEqual(received, stuck);
    assert.equal(copies, 0, 'no message twice');
    assert.deepEqual(await desk.drain(300), [], 'nothing more');
    assert.deepEqual(await ria.drain(300), [], 'no report: nothing was refused');
    await desk.close();
  });
});
