/**
 * What the router knows about the mesh, per configuration revision and node
 * identity (docs/mesh.md): where a message for another node goes next (the
 * route index), who may hand it messages (the link peers), how many links a
 * message may cross, and the node's signer and verifier of the hop chain.
 *
 * Pure: no broker, no clock. The router builds a MeshContext in applyConfig
 * and applyIdentity and reads it once per message, so a message is judged by
 * exactly one revision.
 */
import { spiffeId } from '@dmr/core';
import { DEFAULT_MAX_HOPS, type NodeConfig } from '@dmr/contract';
import { HopChainSigner, HopChainVerifier } from '../message/hop-chain.js';

/** The node's key, certificate chain and what it trusts: read from the agent's state dir, or a test CA. */
export interface NodeIdentity {
  /** The node certificate followed by its intermediate(s). */
  certificateChainPem: string;
  privateKeyPem: string;
  /** The CentOps roots (old and new during a rollover). */
  trustBundlePem: string;
  /** CRLs (PEM) the node has: a revoked signer is refused. */
  crlPems?: readonly string[];
}

/** Why a destination node cannot be reached from here; `detail` ends in the check's name in parentheses. */
export type NextHop =
  | { ok: true; nextHop: string }
  | { ok: false; why: 'no-route' | 'unreachable' | 'not-linked' | 'denied'; detail: string };

/**
 * CentOps' routes for this node, indexed by destination, checked against
 * this node's own view: a next hop must be a configured link peer that is
 * not on the denylist. CentOps computes routes over the whole link graph; a
 * node that disagrees with them (a link it does not have, a peer it denies)
 * refuses rather than sends a message over a link it would not take.
 */
export class RouteIndex {
  readonly nodeId: string;
  readonly revision: number;
  /** Configured link peers minus denylisted nodes: who this node sends to and takes mesh messages from. */
  readonly peers: ReadonlySet<string>;
  readonly #routes: ReadonlyMap<string, NodeConfig['routes'][number]>;
  readonly #denied: ReadonlySet<string>;

  constructor(config: Pick<NodeConfig, 'node' | 'revision' | 'links' | 'routes' | 'denylist'>) {
    this.nodeId = config.node.id;
    this.revision = config.revision;
    this.#denied = new Set(config.denylist.filter((entry) => entry.kind === 'node').map((entry) => entry.id));
    this.peers = new Set(config.links.map((link) => link.peer).filter((peer) => !this.#denied.has(peer)));
    this.#routes = new Map(config.routes.map((route) => [route.destination, route]));
  }

  /** The link a message for a client homed on `destination` leaves by. */
  nextHop(destination: string): NextHop {
    if (this.#denied.has(destination)) {
      return { ok: false, why: 'denied', detail: `node ${destination} is on the denylist (denied)` };
    }
    const route = this.#routes.get(destination);
    if (route === undefined) {
      return {
        ok: false,
        why: 'no-route',
        detail: `configuration revision ${this.revision} has no route to node ${destination} (no-route)`,
      };
    }
    if (!route.reachable) {
      return {
        ok: false,
        why: 'unreachable',
        detail: `node ${destination} is unreachable from this node (unreachable)`,
      };
    }
    if (this.#denied.has(route.nextHop)) {
      return {
        ok: false,
        why: 'denied',
        detail: `the next hop to node ${destination}, ${route.nextHop}, is on the denylist (denied)`,
      };
    }
    if (!this.peers.has(route.nextHop)) {
      return {
        ok: false,
        why: 'not-linked',
        detail: `the next hop to node ${destination}, ${route.nextHop}, is not a link peer of this node (not-linked)`,
      };
    }
    return { ok: true, nextHop: route.nextHop };
  }
}

/** Everything a mesh message is judged and signed by, for one revision and one identity. */
export interface MeshContext {
  /** This node's broker user, `spiffe://<td>/node/<id>`: the `user_id` of everything it sends over a link. */
  userId: string;
  routes: RouteIndex;
  maxHops: number;
  signer: HopChainSigner;
  verifier: HopChainVerifier;
}

/**
 * Builds a MeshContext per revision, keeping the signer while the identity
 * is the same and the verifier while its inputs are (its cache of verified
 * certificate chains is worth keeping across revisions that change only the
 * directory or the routes).
 */
export class MeshContextBuilder {
  #signer: { key: string; signer: HopChainSigner } | undefined;
  #verifier: { key: string; verifier: HopChainVerifier } | undefined;
  /** Every peer this router had a link with, minus denylisted ones: who may still be a previous hop. */
  #senders = new Set<string>();

  build(config: NodeConfig, identity: NodeIdentity): MeshContext {
    const nodeId = config.node.id;
    const routes = new RouteIndex(config);
    const maxHops = config.limits.maxHops ?? DEFAULT_MAX_HOPS;
    const denied = new Set(config.denylist.map((entry) => entry.id));
    // A peer whose link left still drains towards us what it had queued (the reconciler keeps its broker user
    // for the drain's grace, then deleting the user cuts it off): refusing it here would turn those messages
    // into reports. Only the denylist cuts a peer off at once.
    this.#senders = new Set([...this.#senders, ...routes.peers].filter((peer) => !denied.has(peer)));
    const crlPems = [...(identity.crlPems ?? [])];

    const signerKey = JSON.stringify([nodeId, identity.certificateChainPem, identity.privateKeyPem]);
    if (this.#signer?.key !== signerKey) {
      this.#signer = {
        key: signerKey,
        signer: new HopChainSigner({
          nodeId,
          certificateChainPem: identity.certificateChainPem,
          privateKeyPem: identity.privateKeyPem,
        }),
      };
    }
    const verifierKey = JSON.stringify([
      nodeId,
      config.trustDomain,
      identity.trustBundlePem,
      crlPems,
      [...denied].sort(),
      [...this.#senders].sort(),
      maxHops,
    ]);
    if (this.#verifier?.key !== verifierKey) {
      this.#verifier = {
        key: verifierKey,
        verifier: new HopChainVerifier({
          nodeId,
          trustDomain: config.trustDomain,
          trustBundlePem: identity.trustBundlePem,
          crlPems,
          denied,
          peers: this.#senders,
          maxHops,
        }),
      };
    }
    const userId = spiffeId(config.trustDomain, 'node', nodeId);
    return { userId, routes, maxHops, signer: this.#signer.signer, verifier: this.#verifier.verifier };
  }
}
