/**
 * Routes over the link graph: for one node, the next hop and total cost to
 * every other node (Dijkstra). Links are undirected and their cost is a
 * positive integer, so shortest paths are well defined.
 *
 * Ties are broken deterministically so that every CentOps replica (and every
 * rebuild at the same revision) signs the same document: among all shortest
 * paths to a destination, the next hop is the lowest-id neighbour that starts
 * one. Dijkstra finalises a node only after every strictly closer node, so a
 * node's best first hop is the minimum over its shortest-path predecessors;
 * relaxing with "equal cost, smaller first hop" computes exactly that.
 */

export interface GraphLink {
  nodes: readonly [string, string];
  cost: number;
}

export type Route =
  { destination: string; reachable: true; nextHop: string; cost: number } | { destination: string; reachable: false };

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Adjacency lists of the undirected graph, restricted to `nodes`. */
export function adjacency(nodes: readonly string[], links: readonly GraphLink[]): Map<string, Map<string, number>> {
  const graph = new Map<string, Map<string, number>>(nodes.map((id) => [id, new Map()]));
  for (const {
    nodes: [a, b],
    cost,
  } of links) {
    const fromA = graph.get(a);
    const fromB = graph.get(b);
    // A link to a node outside the set (denylisted) carries no traffic.
    if (fromA === undefined || fromB === undefined || a === b) continue;
    // One link per pair in the registry; if ever two, the cheaper one counts.
    fromA.set(b, Math.min(cost, fromA.get(b) ?? Infinity));
    fromB.set(a, Math.min(cost, fromB.get(a) ?? Infinity));
  }
  return graph;
}

/**
 * Routes from `source` to every other node in `nodes`, sorted by destination.
 * The mesh is small (tens of nodes), so a linear scan for the closest
 * unfinished node is simpler than a heap and fast enough.
 */
export function computeRoutes(source: string, nodes: readonly string[], links: readonly GraphLink[]): Route[] {
  const graph = adjacency(nodes, links);
  const distance = new Map<string, number>([[source, 0]]);
  const firstHop = new Map<string, string>();
  const done = new Set<string>();
  for (;;) {
    let current: string | undefined;
    for (const [id, d] of distance) {
      if (done.has(id)) continue;
      const best = current === undefined ? undefined : (distance.get(current) as number);
      if (best === undefined || d < best || (d === best && byId(id, current as string) < 0)) current = id;
    }
    if (current === undefined) break;
    done.add(current);
    const base = distance.get(current) as number;
    for (const [neighbour, cost] of graph.get(current) ?? []) {
      if (done.has(neighbour)) continue;
      const candidate = base + cost;
      const hop = current === source ? neighbour : (firstHop.get(current) as string);
      const known = distance.get(neighbour);
      const knownHop = firstHop.get(neighbour);
      if (
        known === undefined ||
        candidate < known ||
        (candidate === known && knownHop !== undefined && byId(hop, knownHop) < 0)
      ) {
        distance.set(neighbour, candidate);
        firstHop.set(neighbour, hop);
      }
    }
  }
  return nodes
    .filter((id) => id !== source)
    .sort(byId)
    .map((destination): Route => {
      const cost = distance.get(destination);
      const nextHop = firstHop.get(destination);
      return cost === undefined || nextHop === undefined
        ? { destination, reachable: false }
        : { destination, reachable: true, nextHop, cost };
    });
}
