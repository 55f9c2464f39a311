/**
 * The shape of a local mesh: how many DMR nodes, and which of them are
 * linked. CentOps computes the routes from these links, exactly as it would
 * for an operator's registry; the mesh only chooses the graph.
 *
 * - line: node-1 – node-2 – … – node-N (the demo crosses N−1 links)
 * - ring: the line plus node-N – node-1
 * - star: node-1 in the middle, linked to every other node
 */
import { DmrError } from '@dmr/core';

export const TOPOLOGIES = ['line', 'ring', 'star'] as const;
export type Topology = (typeof TOPOLOGIES)[number];

export const DEFAULT_TOPOLOGY: Topology = 'line';
/** What `npm start` shows: a message crossing two links, through a node that only relays. */
export const DEFAULT_NODES = 3;
/**
 * The most nodes one `dmr up` starts. Each node is a RabbitMQ (its own Erlang
 * VM), an agent and a router process; on a 2-core machine their boots share
 * the two cores (docs/decisions/0025-local-multi-node-mesh.md has the
 * measured figures). Eight also keeps a line inside the default hop limit
 * (DEFAULT_MAX_HOPS, 8 links): a line of 8 crosses 7.
 */
export const MAX_NODES = 8;

export interface MeshShape {
  topology: Topology;
  /** node-1 … node-N, in order. */
  nodes: string[];
  /** Each pair once, the lower index first. */
  links: Array<[string, string]>;
}

export function nodeIdAt(index: number): string {
  return `node-${index + 1}`;
}

export function parseNodeCount(text: string | undefined): number {
  if (text === undefined) return DEFAULT_NODES;
  const count = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_NODES) {
    throw new DmrError('INVALID_ARGUMENT', `--nodes must be a whole number from 1 to ${MAX_NODES}, not "${text}"`, {
      details: { option: 'nodes', value: text, min: 1, max: MAX_NODES },
      hint: `each node is its own RabbitMQ, agent and router on this machine; ${MAX_NODES} is the most dmr up starts (default ${DEFAULT_NODES})`,
    });
  }
  return count;
}

export function parseTopology(text: string | undefined): Topology {
  if (text === undefined) return DEFAULT_TOPOLOGY;
  const topology = TOPOLOGIES.find((name) => name === text);
  if (topology === undefined) {
    throw new DmrError('INVALID_ARGUMENT', `unknown topology "${text}"`, {
      details: { option: 'topology', value: text, allowed: [...TOPOLOGIES] },
      hint: `use one of ${TOPOLOGIES.join(', ')} (default ${DEFAULT_TOPOLOGY})`,
    });
  }
  return topology;
}

export function meshShape(count: number, topology: Topology): MeshShape {
  const nodes = Array.from({ length: count }, (_, index) => nodeIdAt(index));
  const pairs: Array<[number, number]> = [];
  if (topology === 'star') {
    for (let index = 1; index < count; index++) pairs.push([0, index]);
  } else {
    for (let index = 1; index < count; index++) pairs.push([index - 1, index]);
    // Two nodes already share their one link: a ring needs three to close.
    if (topology === 'ring' && count >= 3) pairs.push([0, count - 1]);
  }
  return {
    topology,
    nodes,
    links: pairs.map(([a, b]) => [nodes[a] as string, nodes[b] as string]),
  };
}

/** CentOps' id of a link (`<a>--<b>`, the ids in sorted order). */
export function linkIdOf([a, b]: readonly [string, string]): string {
  return a < b ? `${a}--${b}` : `${b}--${a}`;
}

/**
 * The nodes a message from `from` to `to` crosses, following each node's
 * next hop as a node's applied routes give it; undefined when some node has
 * no route. Stops at the hop limit rather than follow a loop.
 */
export function followRoutes(
  from: string,
  to: string,
  nextHop: (node: string, destination: string) => string | undefined,
  maxHops = 16,
): string[] | undefined {
  const path = [from];
  let at = from;
  while (at !== to) {
    const next = nextHop(at, to);
    if (next === undefined || path.includes(next) || path.length > maxHops) return undefined;
    path.push(next);
    at = next;
  }
  return path;
}
