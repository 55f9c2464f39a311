import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { computeRoutes, type GraphLink } from './routing.js';

/** All-pairs shortest distances, the slow obvious way, to check Dijkstra against. */
function floydWarshall(nodes: string[], links: GraphLink[]): Map<string, Map<string, number>> {
  const d = new Map(nodes.map((a) => [a, new Map(nodes.map((b) => [b, a === b ? 0 : Infinity]))]));
  for (const {
    nodes: [a, b],
    cost,
  } of links) {
    const ab = d.get(a) as Map<string, number>;
    const ba = d.get(b) as Map<string, number>;
    ab.set(b, Math.min(ab.get(b) as number, cost));
    ba.set(a, Math.min(ba.get(a) as number, cost));
  }
  for (const k of nodes)
    for (const i of nodes)
      for (const j of nodes) {
        const through = (d.get(i)?.get(k) as number) + (d.get(k)?.get(j) as number);
        if (through < (d.get(i)?.get(j) as number)) d.get(i)?.set(j, through);
      }
  return d;
}

const graphs = fc.integer({ min: 1, max: 8 }).chain((size) => {
  const nodes = Array.from({ length: size }, (_, index) => `n${index}`);
  const pairs = nodes.flatMap((a, i) => nodes.slice(i + 1).map((b) => [a, b] as const));
  return fc.record({
    nodes: fc.constant(nodes),
    links: fc
      .subarray(pairs)
      .chain((chosen) =>
        fc
          .tuple(...chosen.map(() => fc.integer({ min: 1, max: 4 })))
          .map((costs) => chosen.map(([a, b], index): GraphLink => ({ nodes: [a, b], cost: costs[index] as number }))),
      ),
    source: fc.constantFrom(...nodes),
  });
});

describe('computeRoutes', () => {
  it('routes over the cheaper path and lists unreachable nodes', () => {
    const routes = computeRoutes(
      'a',
      ['a', 'b', 'c', 'd', 'z'],
      [
        { nodes: ['a', 'b'], cost: 1 },
        { nodes: ['b', 'c'], cost: 1 },
        { nodes: ['a', 'c'], cost: 5 },
        { nodes: ['c', 'd'], cost: 1 },
      ],
    );
    assert.deepEqual(routes, [
      { destination: 'b', reachable: true, nextHop: 'b', cost: 1 },
      { destination: 'c', reachable: true, nextHop: 'b', cost: 2 },
      { destination: 'd', reachable: true, nextHop: 'b', cost: 3 },
      { destination: 'z', reachable: false },
    ]);
  });

  it('breaks ties by the lowest next-hop id, whatever the link order', () => {
    const links: GraphLink[] = [
      { nodes: ['s', 'y'], cost: 1 },
      { nodes: ['y', 't'], cost: 1 },
      { nodes: ['s', 'x'], cost: 1 },
      { nodes: ['x', 't'], cost: 1 },
      { nodes: ['s', 't'], cost: 2 },
    ];
    for (const order of [links, [...links].reverse()]) {
      const route = computeRoutes('s', ['t', 's', 'y', 'x'], order).find((r) => r.destination === 't');
      assert.deepEqual(route, { destination: 't', reachable: true, nextHop: 't', cost: 2 });
    }
    const withoutDirect = links.slice(0, 4);
    const route = computeRoutes('s', ['s', 't', 'x', 'y'], withoutDirect).find((r) => r.destination === 't');
    assert.deepEqual(route, { destination: 't', reachable: true, nextHop: 'x', cost: 2 });
  });

  it('gives shortest paths whose next hop is the lowest-id neighbour on one (property)', () => {
    fc.assert(
      fc.property(graphs, ({ nodes, links, source }) => {
        const distances = floydWarshall(nodes, links);
        const routes = computeRoutes(source, nodes, links);
        assert.deepEqual(
          routes.map((route) => route.destination),
          nodes.filter((id) => id !== source).sort(),
        );
        for (const route of routes) {
          const best = distances.get(source)?.get(route.destination) as number;
          if (!route.reachable) {
            assert.equal(best, Infinity);
            continue;
          }
          assert.equal(route.cost, best);
          const neighbours = links
            .filter((link) => link.nodes.includes(source))
            .map((link) => ({ id: link.nodes[0] === source ? link.nodes[1] : link.nodes[0], cost: link.cost }))
            .filter((n) => n.cost + (distances.get(n.id)?.get(route.destination) as number) === best)
            .map((n) => n.id)
            .sort();
          assert.equal(route.nextHop, neighbours[0]);
        }
      }),
      { numRuns: 300 },
    );
  });
});
