/**
 * What `dmr status` shows of each node beyond "is its process alive": the
 * configuration it applied (its links and CentOps' routes), the state of
 * each of its links (up or down, messages waiting) and the path a demo
 * message takes. Read-only; every source is optional, and what cannot be
 * read is reported as unknown, never guessed.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LINK_STATES, isNodeConfig, outboundQueueName, type NodeConfig } from '@dmr/contract';
import { managementFor } from '@dmr/broker-harness';
import type { MeshNodeState, MeshState } from './state.js';
import { followRoutes } from './topology.js';

/** One direction of a link: what waits at `from` for `to`, and whether it moves. */
export interface LinkReport {
  from: string;
  to: string;
  /** The link's shovel runs (the state below is `running`). */
  up: boolean;
  /** `running`, `starting`, `terminated`, `draining`, `absent` (no shovel), or `unknown` (nothing to ask). */
  state: string;
  /** Messages waiting in `dmr.outbound.<to>` on `from`'s broker; null when unknown. */
  messages: number | null;
  /** Where the state comes from: the node agent's status, or its broker's management API. */
  source: 'agent' | 'broker' | 'none';
}

/** The links of a node nothing can be asked about (its broker down or silent). */
export function unknownLinks(from: string, peers: readonly string[]): LinkReport[] {
  return peers.map((to) => ({ from, to, up: false, state: 'unknown', messages: null, source: 'none' }));
}

export interface AppliedConfig {
  revision: number;
  links: string[];
  /** destination → next hop (null: unreachable). */
  routes: Record<string, string | null>;
  maxHops: number | null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The document the node's agent last applied (`state/config.jws`, its last
 * good one): its payload, shape-checked against the contract. The agent
 * verified the signature before writing it; this only displays it.
 */
export async function appliedConfig(dataDir: string): Promise<AppliedConfig | undefined> {
  let config: NodeConfig;
  try {
    const jws = (await readFile(join(dataDir, 'state', 'config.jws'), 'utf8')).trim();
    const payload: unknown = JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString('utf8'));
    if (!isNodeConfig(payload)) return undefined;
    config = payload;
  } catch {
    return undefined;
  }
  return {
    revision: config.revision,
    links: config.links.map((link) => link.peer),
    routes: Object.fromEntries(
      config.routes.map((route) => [route.destination, route.reachable ? route.nextHop : null]),
    ),
    maxHops: config.limits.maxHops ?? null,
  };
}

/** The links the agent reports in `state/status.json` (`links: [{peer, state, messages}]`), when it does. */
async function agentLinks(dataDir: string): Promise<Map<string, { state: string; messages: number }> | undefined> {
  try {
    const status: unknown = JSON.parse(await readFile(join(dataDir, 'state', 'status.json'), 'utf8'));
    if (!isRecord(status) || !Array.isArray(status.links)) return undefined;
    const links = new Map<string, { state: string; messages: number }>();
    for (const link of status.links) {
      if (!isRecord(link) || typeof link.peer !== 'string') continue;
      const state =
        typeof link.state === 'string' && (LINK_STATES as readonly string[]).includes(link.state)
          ? link.state
          : 'unknown';
      links.set(link.peer, { state, messages: typeof link.messages === 'number' ? link.messages : Number.NaN });
    }
    return links;
  } catch {
    return undefined;
  }
}

/** The same facts from the node's broker: the link's shovel and its outbound queue. */
async function brokerLinks(
  brokerDir: string,
  index: number,
  node: MeshNodeState,
  peers: readonly string[],
): Promise<Map<string, { state: string; messages: number | null }>> {
  const management = await managementFor(brokerDir, index);
  const shovels = await management.shovelStatuses(node.vhost);
  const links = new Map<string, { state: string; messages: number | null }>();
  for (const peer of peers) {
    const queue = outboundQueueName(peer);
    const shovel = shovels.find((entry) => entry.name === `dmr.link.${peer}` || entry.sourceQueue === queue);
    let messages: number | null = null;
    try {
      const info = await management.request(
        'GET',
        `/queues/${encodeURIComponent(node.vhost)}/${encodeURIComponent(queue)}`,
      );
      if (isRecord(info) && typeof info.messages === 'number') messages = info.messages;
    } catch {
      // No outbound queue (yet): unknown, not zero.
    }
    links.set(peer, { state: shovel?.state ?? 'absent', messages });
  }
  return links;
}

/** Each direction of each of this node's links. */
export async function linkReports(
  brokerDir: string,
  index: number,
  node: MeshNodeState,
  peers: readonly string[],
): Promise<LinkReport[]> {
  const fromAgent = await agentLinks(node.dataDir);
  if (fromAgent !== undefined) {
    return peers.map((peer) => {
      const link = fromAgent.get(peer);
      const messages = link === undefined || Number.isNaN(link.messages) ? null : link.messages;
      const state = link?.state ?? 'absent';
      return { from: node.id, to: peer, up: state === 'running', state, messages, source: 'agent' };
    });
  }
  try {
    const fromBroker = await brokerLinks(brokerDir, index, node, peers);
    return peers.map((peer) => {
      const link = fromBroker.get(peer);
      const state = link?.state ?? 'absent';
      return {
        from: node.id,
        to: peer,
        up: state === 'running',
        state,
        messages: link?.messages ?? null,
        source: 'broker',
      };
    });
  } catch {
    return unknownLinks(node.id, peers);
  }
}

/**
 * The links a message from node `from` to node `to` crosses, following the
 * routes each node applied, with each link's state now; undefined while some
 * node on the way has no applied configuration or no route.
 */
export async function pathLinks(state: MeshState, from: string, to: string): Promise<LinkReport[] | undefined> {
  if (state.broker === null) return undefined;
  const applied = new Map(
    await Promise.all(state.nodes.map(async (node) => [node.id, await appliedConfig(node.dataDir)] as const)),
  );
  const route = followRoutes(from, to, (at, destination) => applied.get(at)?.routes[destination] ?? undefined);
  if (route === undefined) return undefined;
  const links: LinkReport[] = [];
  for (let index = 1; index < route.length; index++) {
    const at = state.nodes.findIndex((node) => node.id === route[index - 1]);
    const node = state.nodes[at];
    if (node === undefined) return undefined;
    links.push(...(await linkReports(state.broker.dir, at, node, [route[index] as string])));
  }
  return links;
}
