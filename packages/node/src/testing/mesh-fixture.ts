/**
 * Several DMR nodes linked into a mesh for integration tests: one
 * NodeFixture per node (each its own harness broker and in-process routers),
 * all with certificates from one CA, configurations whose links, routes and
 * directory span the nodes, and links: the reconciler's shovels (what a node
 * agent keeps), or, from the nodes named in `forwardersAt`, a test-only
 * LinkForwarder per outgoing link — the tampering middle hop.
 *
 * ```ts
 * const mesh = await MeshFixture.start({
 *   label: 'my-mesh',
 *   nodes: ['node-a', 'node-b'],
 *   links: [['node-a', 'node-b']],
 *   clients: [{ id: 'ria-bot', organisation: 'ria', homeNode: 'node-a' }, { id: 'rik-bot', organisation: 'rik', homeNode: 'node-b' }],
 * });
 * const ria = await mesh.node('node-a').client('ria-bot');
 * await ria.send({ to: 'rik-bot' });
 * await (await mesh.node('node-b').client('rik-bot')).next();
 * await mesh.stop();
 * ```
 *
 * Routes are shortest paths over the links (each of cost 1; ties to the
 * lowest id), as CentOps computes them; `routes` overrides them per node.
 * Not exported from the package index.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeConfig } from '@dmr/contract';
import type { Tracer } from '@opentelemetry/api';
import { CertificateAuthority } from '@dmr/pki';
import { LinkForwarder } from './link-forwarder.js';
import {
  NodeFixture,
  TRUST_DOMAIN,
  type FixtureClientSpec,
  type Grant,
  type NodeFixtureOptions,
} from './node-fixture.js';

export interface MeshFixtureOptions {
  label: string;
  /** Node ids, in the order they start. */
  nodes: readonly string[];
  /** Undirected links. */
  links: ReadonlyArray<readonly [string, string]>;
  /** Every client of the mesh, `homeNode` set (the directory of every node). */
  clients: readonly FixtureClientSpec[];
  /** Grants per node (default for every node: ria → rik, every type). */
  grants?: Readonly<Record<string, Grant[]>>;
  /** CentOps' routes of a node instead of the shortest paths. */
  routes?: Readonly<Record<string, NodeConfig['routes']>>;
  /** Nodes on a node's denylist. */
  deniedNodes?: Readonly<Record<string, string[]>>;
  limits?: NodeFixtureOptions['limits'];
  /** Router shards per node, each consuming its `dmr.ingress.<n>` and `dmr.mesh-ingress.<n>` (default 1). */
  routerShards?: number;
  /** Nodes whose outgoing links are LinkForwarders instead of shovels (default none). */
  forwardersAt?: readonly string[];
  /** A node's routers' tracer (hop spans); default none, tracing off. */
  tracers?: Readonly<Record<string, Tracer>>;
}

/** Shortest paths from `source` over unit-cost links: the first hop to each other node, lowest id first on ties. */
export function shortestRoutes(
  source: string,
  nodes: readonly string[],
  links: ReadonlyArray<readonly [string, string]>,
): NodeConfig['routes'] {
  const neighbours = new Map<string, string[]>(nodes.map((id) => [id, []]));
  for (const [a, b] of links) {
    neighbours.get(a)?.push(b);
    neighbours.get(b)?.push(a);
  }
  for (const list of neighbours.values()) list.sort();
  const first = new Map<string, { hop: string; cost: number }>();
  let frontier = [source];
  const seen = new Set([source]);
  for (let cost = 1; frontier.length > 0; cost += 1) {
    const next: string[] = [];
    for (const at of frontier) {
      for (const neighbour of neighbours.get(at) ?? []) {
        if (seen.has(neighbour)) continue;
        seen.add(neighbour);
        first.set(neighbour, { hop: at === source ? neighbour : (first.get(at)?.hop as string), cost });
        next.push(neighbour);
      }
    }
    frontier = next;
  }
  return nodes
    .filter((id) => id !== source)
    .sort()
    .map((destination) => {
      const found = first.get(destination);
      return found === undefined
        ? { destination, reachable: false as const }
        : { destination, reachable: true as const, nextHop: found.hop, cost: found.cost };
    });
}

export class MeshFixture {
  readonly dir: string;
  readonly ca: CertificateAuthority;
  readonly nodes: ReadonlyMap<string, NodeFixture>;
  /** One per direction of every link, keyed `from>to`: the link itself from a node in `forwardersAt`, else an injector only. */
  readonly links: ReadonlyMap<string, LinkForwarder>;

  private constructor(
    dir: string,
    ca: CertificateAuthority,
    nodes: Map<string, NodeFixture>,
    links: Map<string, LinkForwarder>,
  ) {
    this.dir = dir;
    this.ca = ca;
    this.nodes = nodes;
    this.links = links;
  }

  static async start(options: MeshFixtureOptions): Promise<MeshFixture> {
    const dir = await mkdtemp(join(tmpdir(), `dmr-${options.label}-`));
    const nodes = new Map<string, NodeFixture>();
    const links = new Map<string, LinkForwarder>();
    try {
      const ca = await CertificateAuthority.init(join(dir, 'pki'), { trustDomain: TRUST_DOMAIN });
      // One at a time: several brokers booting at once on a 2-core machine only slow each other down.
      for (const nodeId of options.nodes) {
        const peers = options.links.flatMap(([a, b]) => (a === nodeId ? [b] : b === nodeId ? [a] : []));
        const fixture = await NodeFixture.start({
          label: options.label,
          nodeId,
          ca,
          clients: [...options.clients],
          ...(options.grants?.[nodeId] === undefined ? {} : { grants: options.grants[nodeId] }),
          ...(options.limits === undefined ? {} : { limits: options.limits }),
          ...(options.routerShards === undefined ? {} : { routerShards: options.routerShards }),
          ...(options.tracers?.[nodeId] === undefined ? {} : { tracer: options.tracers[nodeId] }),
          mesh: {
            links: peers,
            routes: options.routes?.[nodeId] ?? shortestRoutes(nodeId, options.nodes, options.links),
            deniedNodes: options.deniedNodes?.[nodeId] ?? [],
          },
        });
        nodes.set(nodeId, fixture);
      }
      const forwarding = new Set(options.forwardersAt ?? []);
      const peersOf = (id: string): NodeFixture[] =>
        options.links
          .flatMap(([a, b]) => (a === id ? [b] : b === id ? [a] : []))
          .map((peer) => nodes.get(peer) as NodeFixture);
      for (const [id, node] of nodes) {
        if (!forwarding.has(id)) await node.linkWithShovels(peersOf(id));
      }
      // A forwarder per direction: it consumes the outbound queue where there is no shovel, else it only injects.
      for (const [id, node] of nodes) {
        for (const peer of peersOf(id)) {
          links.set(`${id}>${peer.nodeId}`, await LinkForwarder.start(node, peer, forwarding.has(id)));
        }
      }
      return new MeshFixture(dir, ca, nodes, links);
    } catch (error) {
      for (const link of links.values()) await link.stop();
      for (const node of nodes.values()) await node.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  node(id: string): NodeFixture {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id} in this mesh`);
    return node;
  }

  /** The forwarder of the link from `from` to `to`. */
  link(from: string, to: string): LinkForwarder {
    const link = this.links.get(`${from}>${to}`);
    if (link === undefined) throw new Error(`no link from ${from} to ${to}`);
    return link;
  }

  async stop(): Promise<void> {
    for (const link of this.links.values()) await link.stop();
    for (const node of this.nodes.values()) await node.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
