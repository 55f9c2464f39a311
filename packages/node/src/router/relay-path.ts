/**
 * The relay path: a message a peer node's link wrote to this node's
 * `dmr.mesh-ingress` (docs/mesh.md). This is the seam for the relay and not
 * the relay itself: the router does not consume the mesh ingress yet, and a
 * delivery handed to this path is refused with RECIPIENT_UNREACHABLE through
 * the same tail as the origin path (rejected copy, audit record, ack).
 *
 * What the relay will do here, top to bottom like origin-path.ts: check the
 * peer (`previousHop`) and the hop chain (`HopChainVerifier`), the parties
 * (`checkMeshParties`), replays and policy, then deliver to a local
 * recipient (`Outcomes.deliver`) or forward to the next node's outbound
 * queue with this node's hop appended; a refusal goes back to the origin
 * node as a mesh report (`meshReport`) instead of a local report.
 */
import { performance } from 'node:perf_hooks';
import type { ConsumeMessage } from 'amqplib';
import type { Refusal } from './envelope.js';
import type { RoutingState } from './origin-path.js';
import type { Outcomes, Session } from './outcome.js';

export interface RelayPathOptions {
  nodeId: string;
  outcome: Outcomes;
}

export class RelayPath {
  readonly #nodeId: string;
  readonly #outcome: Outcomes;

  constructor(options: RelayPathOptions) {
    this.#nodeId = options.nodeId;
    this.#outcome = options.outcome;
  }

  /** One message from a peer node: refused until nodes relay (see the file comment). */
  async route(session: Session, message: ConsumeMessage, state: RoutingState): Promise<void> {
    const started = performance.now();
    const refusal: Refusal = {
      reason: 'RECIPIENT_UNREACHABLE',
      detail: `node ${this.#nodeId} does not relay messages from peer nodes yet`,
    };
    await this.#outcome.refuse(session, message, state.context, started, refusal);
  }
}
