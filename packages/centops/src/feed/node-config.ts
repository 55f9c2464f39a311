/**
 * Builds the per-node configuration document: what one node needs to run,
 * derived purely from a registry snapshot and the certificate records. The
 * document's schema is the wire contract's (@dmr/contract node-config.ts);
 * CentOps signs it (signing.ts); the node verifies it, validates it against
 * NODE_CONFIG_SCHEMA and applies it.
 *
 * What a node is told about the rest of the mesh is deliberately limited:
 * other nodes appear only as link peers (id, AMQPS endpoint, cost) and route
 * destinations; other nodes' management endpoints, labels and certificate
 * profiles, remote clients' labels and profiles, and who put an entry on the
 * denylist are never included. Remote clients appear with what routing and
 * the policy input need (home node, organisation, roles, status) plus their
 * current certificate fingerprints.
 *
 * docs/node-config.md documents every field for node implementers.
 */
import { DmrError, assertValidTrustDomain } from '@dmr/core';
import {
  NODE_CONFIG_API_VERSION,
  NODE_CONFIG_KIND,
  POLICY_BUNDLE_PATH,
  type CertificateRef,
  type NodeConfig,
} from '@dmr/contract';
import type { DmrNode } from '../model.js';
import type { CertificateRecord, RegistrySnapshot } from '../store/types.js';
import { shareCanonical } from './canonical.js';
import { resolveLimits, type Limits } from './limits.js';
import { computeRoutes } from './routing.js';

export {
  NODE_CONFIG_API_VERSION,
  NODE_CONFIG_KIND,
  NODE_CONFIG_SCHEMA,
  POLICY_BUNDLE_PATH,
  isNodeConfig,
  nodeConfigProblems,
  type CertificateRef,
  type NodeConfig,
} from '@dmr/contract';

export interface BuildOptions {
  /** CentOps' trust domain (its CA's): every document carries it. */
  trustDomain: string;
  /** Overrides of DEFAULT_LIMITS (limits.ts). */
  limits?: Partial<Limits>;
}

function byId<T extends { id: string }>(a: T, b: T): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The certificates of each principal that a peer may still meet: not
 * revoked and not expired at `now`. Not-yet-valid ones are kept (a renewal
 * issued slightly ahead), with their window, so the node judges them itself.
 */
function currentCertificates(certificates: readonly CertificateRecord[], now: Date): Map<string, CertificateRef[]> {
  const at = now.getTime();
  const byPrincipal = new Map<string, CertificateRef[]>();
  for (const record of certificates) {
    if (record.revokedAt !== null || Date.parse(record.notAfter) <= at) continue;
    const key = `${record.kind}/${record.id}`;
    const list = byPrincipal.get(key) ?? [];
    list.push({
      fingerprint: record.fingerprint,
      serial: record.serial,
      notBefore: new Date(record.notBefore).toISOString(),
      notAfter: new Date(record.notAfter).toISOString(),
    });
    byPrincipal.set(key, list);
  }
  for (const list of byPrincipal.values()) list.sort((a, b) => (a.fingerprint < b.fingerprint ? -1 : 1));
  return byPrincipal;
}

/**
 * What every node's document of one revision shares, computed once: the
 * directory (every client with its current certificates), the denylist, the
 * limits, and the indexes the per-node parts are cut from. At 100 nodes a
 * revision means 100 documents; building the directory 100 times was most of
 * the work. The shared arrays are referenced, not copied, by every document
 * built from them: treat documents as read-only (they are only serialised).
 */
export interface PreparedRegistry {
  readonly revision: number;
  /** The configuration of `nodeId` (NOT_FOUND if the snapshot has no such node). */
  build(nodeId: string, now: Date): NodeConfig;
}

export function prepareNodeConfigs(
  snapshot: RegistrySnapshot,
  certificates: readonly CertificateRecord[],
  now: Date,
  options: BuildOptions,
): PreparedRegistry {
  assertValidTrustDomain(options.trustDomain);
  const certs = currentCertificates(certificates, now);
  const deniedNodes = new Set(snapshot.denylist.filter((entry) => entry.kind === 'node').map((entry) => entry.id));
  const clients = snapshot.resources.Client.map((stored) => stored.spec).sort(byId);
  const nodes = snapshot.resources.Node.map((stored) => stored.spec).sort(byId);
  const nodesById = new Map(nodes.map((node) => [node.id, node]));
  const liveNodeIds = nodes.filter((node) => !deniedNodes.has(node.id)).map((node) => node.id);
  const links = snapshot.resources.Link.map((stored) => stored.spec);
  const linksByNode = new Map<string, typeof links>();
  for (const link of links) {
    for (const end of new Set(link.nodes)) linksByNode.set(end, [...(linksByNode.get(end) ?? []), link]);
  }
  const localClients = new Map<string, NodeConfig['clients']>();
  for (const client of clients) {
    const list = localClients.get(client.homeNode) ?? [];
    list.push({
      id: client.id,
      organisation: client.organisation,
      roles: [...client.roles],
      labels: { ...client.labels },
      status: client.status,
    });
    localClients.set(client.homeNode, list);
  }
  // Shared by every document of the revision, serialised once when signing (canonical.ts).
  const directory: NodeConfig['directory'] = shareCanonical(
    clients.map((client) => ({
      id: client.id,
      homeNode: client.homeNode,
      organisation: client.organisation,
      roles: [...client.roles],
      status: client.status,
      certificates: certs.get(`client/${client.id}`) ?? [],
    })),
  );
  const denylist: NodeConfig['denylist'] = shareCanonical(
    snapshot.denylist
      .map((entry) => ({
        id: entry.id,
        kind: entry.kind,
        reason: entry.reason,
        since: new Date(entry.since).toISOString(),
      }))
      .sort(byId),
  );
  const limits = resolveLimits(options.limits);
  const policy: NodeConfig['policy'] =
    snapshot.policy === undefined
      ? undefined
      : {
          revision: String(snapshot.policy.version),
          digest: `sha256:${snapshot.policy.bundleDigest}`,
          bundle: POLICY_BUNDLE_PATH,
        };

  return {
    revision: snapshot.revision,
    build(nodeId: string, at: Date): NodeConfig {
      const self = nodesById.get(nodeId);
      if (self === undefined) {
        throw new DmrError('NOT_FOUND', `Node ${nodeId} does not exist`, { details: { kind: 'Node', id: nodeId } });
      }
      // A denylisted node is still in its own graph (as before: its document is built like any other).
      const liveNodes = deniedNodes.has(nodeId) ? [...liveNodeIds, nodeId].sort() : liveNodeIds;
      return {
        apiVersion: NODE_CONFIG_API_VERSION,
        kind: NODE_CONFIG_KIND,
        trustDomain: options.trustDomain,
        node: { id: self.id, amqpsEndpoint: self.amqpsEndpoint, managementEndpoint: self.managementEndpoint },
        revision: snapshot.revision,
        issuedAt: at.toISOString(),
        clients: localClients.get(nodeId) ?? [],
        directory,
        links: (linksByNode.get(nodeId) ?? [])
          .map((link) => ({ link, peer: link.nodes[0] === nodeId ? link.nodes[1] : link.nodes[0] }))
          .filter(({ peer }) => !deniedNodes.has(peer) && nodesById.has(peer))
          .sort((a, b) => (a.peer < b.peer ? -1 : 1))
          .map(({ link, peer }) => ({
            peer,
            amqpsEndpoint: (nodesById.get(peer) as DmrNode).amqpsEndpoint,
            cost: link.cost,
            peerCertificates: certs.get(`node/${peer}`) ?? [],
          })),
        routes: computeRoutes(nodeId, liveNodes, links),
        denylist,
        ...(policy === undefined ? {} : { policy }),
        limits,
      };
    },
  };
}

/**
 * The configuration of `nodeId` at the snapshot's revision. Pure: the same
 * inputs give the same document (every list sorted by id), so replicas and
 * rebuilds agree byte for byte once canonicalised.
 *
 * Denylisted nodes are left out of links and routes: the node would drop
 * such a link anyway, and routing through it would strand messages.
 * (One node; for every node of a revision, prepare once: prepareNodeConfigs.)
 */
export function buildNodeConfig(
  snapshot: RegistrySnapshot,
  certificates: readonly CertificateRecord[],
  nodeId: string,
  now: Date,
  options: BuildOptions,
): NodeConfig {
  return prepareNodeConfigs(snapshot, certificates, now, options).build(nodeId, now);
}
