import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import { TerminalProgress } from './progress.js';
import type { CentOpsApi } from './centops-client.js';
import { DEMO_CLIENTS, demoHomes, registryDocuments, staleRegistryItems } from './registry.js';
import {
  DEFAULT_NODES,
  MAX_NODES,
  TOPOLOGIES,
  followRoutes,
  linkIdOf,
  meshShape,
  parseNodeCount,
  parseTopology,
  type Topology,
} from './topology.js';

function capture(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

describe('mesh progress', () => {
  it('prints plain lines when the output is not a terminal: start, ✓ with detail and duration, ✗ with the first line', () => {
    const out = capture();
    const steps: string[] = [];
    const progress = new TerminalProgress({
      stream: out.stream,
      tty: false,
      onStepDone: (step) => steps.push(step.name),
    });
    const step = progress.step('CentOps');
    step.update('serve');
    step.done('https://127.0.0.1:8443');
    progress.line('a line');
    progress.step('broker').fail(new Error('did not boot\nlog excerpt'));
    const lines = out.text().split('\n');
    assert.equal(lines[0], '… CentOps');
    assert.match(lines[1] ?? '', /^✓ CentOps {2}https:\/\/127\.0\.0\.1:8443 {2}\(\d+ ms\)$/);
    assert.equal(lines[2], 'a line');
    assert.equal(lines[4], '✗ broker: did not boot');
    assert.ok(!out.text().includes('\x1b['), 'no terminal control sequences on a pipe');
    assert.deepEqual(steps, ['CentOps']);
  });

  it('redraws in place on a terminal and ends each step on its own line', () => {
    const out = capture();
    const progress = new TerminalProgress({ stream: out.stream, tty: true });
    progress.step('RabbitMQ').done();
    const text = out.text();
    assert.ok(text.startsWith('\r\u001b[K'), JSON.stringify(text));
    assert.match(text.slice(text.lastIndexOf('\u001b[K') + 3), /^✓ RabbitMQ {2}\(\d+ ms\)\n$/);
  });
});

describe('mesh registry', () => {
  it('registers every node, the links of the topology, bot-a on the first node and bot-b on the last', () => {
    const shape = meshShape(3, 'line');
    const documents = registryDocuments(shape, [
      { id: 'node-1', amqpsPort: 25000, managementPort: 25001 },
      { id: 'node-2', amqpsPort: 25010, managementPort: 25011 },
      { id: 'node-3', amqpsPort: 25020, managementPort: 25021 },
    ]);
    const specs = (kind: string) =>
      documents.filter((document) => document.kind === kind).map((document) => document.spec ?? {});
    assert.deepEqual(
      specs('Client').map((client) => [client.id, client.organisation, client.homeNode]),
      [
        ['bot-a', 'org-a', 'node-1'],
        ['bot-b', 'org-b', 'node-3'],
      ],
    );
    assert.deepEqual(
      specs('Node').map((node) => [node.id, node.amqpsEndpoint]),
      [
        ['node-1', 'amqps://localhost:25000'],
        ['node-2', 'amqps://localhost:25010'],
        ['node-3', 'amqps://localhost:25020'],
      ],
    );
    assert.deepEqual((specs('Node')[0]?.certificateProfile as { extraDns: string[] }).extraDns, ['localhost']);
    assert.deepEqual(
      specs('Link').map((link) => [link.id, link.nodes, link.cost]),
      [
        ['node-1--node-2', ['node-1', 'node-2'], 1],
        ['node-2--node-3', ['node-2', 'node-3'], 1],
      ],
    );
  });

  it('removes what an earlier mesh left in a reused CentOps: its nodes and links beyond this shape, nothing else', async () => {
    const registry: Record<string, Array<{ spec: Record<string, unknown> }>> = {
      '/v1/nodes': ['node-1', 'node-2', 'node-3', 'node-4'].map((id) => ({ spec: { id, labels: { mesh: 'local' } } })),
      '/v1/links': [
        ['node-1', 'node-2'],
        ['node-2', 'node-3'],
        ['node-3', 'node-4'],
        ['node-1', 'node-4'],
      ].map((nodes) => ({ spec: { id: `${nodes[0]}--${nodes[1]}`, nodes } })),
    };
    // An operator's own node and its link to a mesh node are not the mesh's to remove.
    registry['/v1/nodes']?.push({ spec: { id: 'dmr-tallinn', labels: {} } });
    registry['/v1/links']?.push({ spec: { id: 'dmr-tallinn--node-1', nodes: ['dmr-tallinn', 'node-1'] } });
    const api: Pick<CentOpsApi, 'call'> = {
      call: <T>(_method: string, path: string) =>
        Promise.resolve({ items: registry[path.split('?')[0] ?? ''] ?? [], next: null } as T),
    };
    assert.deepEqual(await staleRegistryItems(api, meshShape(3, 'ring')), [
      { op: 'delete', kind: 'Link', id: 'node-3--node-4' },
      { op: 'delete', kind: 'Link', id: 'node-1--node-4' },
      { op: 'delete', kind: 'Node', id: 'node-4' },
    ]);
    assert.deepEqual(
      (await staleRegistryItems(api, meshShape(2, 'line'))).map((item) => item.id),
      ['node-2--node-3', 'node-3--node-4', 'node-1--node-4', 'node-3', 'node-4'],
    );
  });

  it('keeps both demo clients on the one node of a one-node mesh', () => {
    const homes = demoHomes(meshShape(1, 'line'));
    assert.deepEqual(
      [...homes],
      [
        ['bot-a', 'node-1'],
        ['bot-b', 'node-1'],
      ],
    );
    assert.deepEqual(
      DEMO_CLIENTS.map((client) => client.id),
      ['bot-a', 'bot-b'],
    );
  });
});

describe('mesh topology', () => {
  const links = (count: number, topology: Topology) => meshShape(count, topology).links.map(linkIdOf);

  it('links a line 1–2–…–N, a ring the line and N–1, a star everything to node-1', () => {
    assert.deepEqual(links(4, 'line'), ['node-1--node-2', 'node-2--node-3', 'node-3--node-4']);
    assert.deepEqual(links(4, 'ring'), ['node-1--node-2', 'node-2--node-3', 'node-3--node-4', 'node-1--node-4']);
    assert.deepEqual(links(4, 'star'), ['node-1--node-2', 'node-1--node-3', 'node-1--node-4']);
    assert.deepEqual(meshShape(3, 'line').nodes, ['node-1', 'node-2', 'node-3']);
  });

  it('has no link for one node and one link for two, whatever the topology', () => {
    for (const topology of TOPOLOGIES) {
      assert.deepEqual(links(1, topology), [], topology);
      assert.deepEqual(links(2, topology), ['node-1--node-2'], topology);
    }
  });

  it('defaults to three nodes in a line', () => {
    assert.equal(parseNodeCount(undefined), DEFAULT_NODES);
    assert.equal(DEFAULT_NODES, 3);
    assert.equal(parseTopology(undefined), 'line');
    assert.equal(parseNodeCount('1'), 1);
    assert.equal(parseNodeCount(String(MAX_NODES)), MAX_NODES);
  });

  it('refuses a node count outside 1..MAX_NODES, or not a whole number, with INVALID_ARGUMENT and a hint', () => {
    for (const text of ['0', '-1', String(MAX_NODES + 1), '2.5', 'three', '', '1e1']) {
      assert.throws(
        () => parseNodeCount(text),
        (error: unknown) =>
          error instanceof DmrError &&
          error.code === 'INVALID_ARGUMENT' &&
          error.message.includes(`from 1 to ${MAX_NODES}`) &&
          (error.hint ?? '').length > 0,
        text,
      );
    }
  });

  it('refuses an unknown topology and names the known ones', () => {
    assert.throws(
      () => parseTopology('mesh'),
      (error: unknown) =>
        error instanceof DmrError &&
        error.code === 'INVALID_ARGUMENT' &&
        (error.hint ?? '').includes('line, ring, star'),
    );
  });

  it('follows next hops from node to node, and gives up on a missing route or a loop', () => {
    const routes: Record<string, Record<string, string>> = {
      'node-1': { 'node-3': 'node-2' },
      'node-2': { 'node-3': 'node-3' },
    };
    const next = (at: string, to: string) => routes[at]?.[to];
    assert.deepEqual(followRoutes('node-1', 'node-3', next), ['node-1', 'node-2', 'node-3']);
    assert.equal(followRoutes('node-3', 'node-1', next), undefined);
    const loop = (at: string) => (at === 'node-1' ? 'node-2' : 'node-1');
    assert.equal(followRoutes('node-1', 'node-3', loop), undefined);
  });
});
