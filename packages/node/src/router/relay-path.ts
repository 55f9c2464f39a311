/**
 * The relay path: a message a peer node's link wrote to this node's
 * `dmr.mesh-ingress` (docs/mesh.md "What the router does"), from delivery to
 * ack, readable top to bottom in route():
 *
 * hop chain (previous hop, `dmr-sig`, every entry: HopChainVerifier) →
 * parties (checkMeshParties) → this node's view of the metadata
 * (validateRelayed) → replay guard: a duplicate (link redelivery) is
 * dropped, acked and audited, never reported → policy with the hop context
 * (a client's message; a node's report is not a principal's) → recipient
 * homed here: this node's final entry, delivered to its queue like a local
 * message (a report as a local report); else the next hop from the route
 * index, the hop limit, this node's entry, the next hop's outbound queue;
 * published while the audit record is written, both confirmed → ack.
 *
 * A refusal: the rejected copy and the audit record here, and a report
 * signed by this node back to the sender (Outcomes.report: local if the
 * sender is, else a mesh message toward its home node) — never a report
 * about a report.
 */
import { performance } from 'node:perf_hooks';
import { isValidId } from '@dmr/core';
import { ORIGIN_HEADER, SENDER_HEADER, relayHeaderCap, type Rejection, type SignableMessage } from '@dmr/contract';
import type { PolicyDecider, PolicyDecision } from '@dmr/policy';
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import type { RelayedMessage } from '../message/contract.js';
import type { VerifiedHopChain } from '../message/hop-chain.js';
import { checkMeshParties, mayReportOn } from '../message/mesh-report.js';
import { MAX_HEADER_DEPTH, encodedTableSize, ownHeader } from '../message/headers.js';
import { validateRelayed } from '../message/validate.js';
import { relayPolicyInput, relayedOptions, remainingTtl, type Refusal, type RoutingContext } from './envelope.js';
import type { MeshContext } from './mesh-context.js';
import { hopEvent } from './hop-trace.js';
import { askPolicy } from './policy-step.js';
import type { RouterMetrics } from './metrics.js';
import type { RoutingState } from './origin-path.js';
import {
  Held,
  Transient,
  linkKey,
  recipientKey,
  validMessageId,
  type Outcomes,
  type RefusalParties,
  type Session,
} from './outcome.js';

export interface RelayPathOptions {
  nodeId: string;
  now: () => number;
  /** Swapped by its owner; the path only calls decide(). */
  policy: PolicyDecider;
  logger: Logger;
  metrics: RouterMetrics;
  outcome: Outcomes;
}

export class RelayPath {
  readonly #nodeId: string;
  readonly #now: () => number;
  readonly #policy: PolicyDecider;
  readonly #logger: Logger;
  readonly #metrics: RouterMetrics;
  readonly #outcome: Outcomes;

  constructor(options: RelayPathOptions) {
    this.#nodeId = options.nodeId;
    this.#now = options.now;
    this.#policy = options.policy;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#outcome = options.outcome;
  }

  /** One message from a peer node, from delivery to ack (or held on a transient failure); `retry`: the router's own second attempt. */
  async route(session: Session, message: ConsumeMessage, state: RoutingState, retry = false): Promise<void> {
    const started = performance.now();
    const now = this.#now();
    const { context, guard, mesh } = state;
    if (!retry) this.#metrics.received.inc();
    if (mesh === undefined) {
      // Not consumed without an identity (router.ts); a revision may not take it away, but be safe.
      throw new Transient('broker', 'this router has no node identity to verify mesh messages with');
    }

    // 0. Before anything reads the table: a peer's message must stay small enough to check and to pass on. The
    // cap is the origin's header limit plus one hop entry's allowance per link (docs/decisions/0015-hop-chain.md).
    const headerCap = relayHeaderCap(context.message.limits.maxHeaderBytes, mesh.maxHops);
    if (encodedTableSize(message.properties.headers, headerCap) > headerCap) {
      const detail = `the header table needs more than ${headerCap} bytes encoded (or nests deeper than ${MAX_HEADER_DEPTH})`;
      return this.#refuse(session, message, state, started, { reason: 'HEADERS_TOO_LARGE', detail }, undefined);
    }

    // 1. The hop chain: previous hop, origin signature, every entry (docs/mesh.md "What each hop checks").
    const verified = await mesh.verifier.verify(message as SignableMessage, new Date(now));
    if (!verified.ok) return this.#refuse(session, message, state, started, verified, undefined);
    const chain = verified.message;
    this.#metrics.observeHop(chain.previous, chain.hops.at(-1)?.at, now);
    hopEvent('verified');

    // 2. Who may send what: a client's message from its home node, a node's report in its own name.
    const parties = checkMeshParties(message, chain, context.message.directory);
    if (!parties.ok) return this.#refuse(session, message, state, started, parties, chain);
    const isReport = parties.message === 'report';

    // 3. This node's view of the metadata (its directory, denylist, limits).
    const checked = validateRelayed(message, chain, isReport, context.message);
    if (!checked.ok) return this.#refuse(session, message, state, started, checked, chain);
    const relayed = checked.message;

    // 4. Replays: one id reaches one router (the mesh ingress is sharded by id), so a second copy is the
    // link's redelivery (a shovel reconnecting before its confirm), or a second copy of a message this router
    // parked: dropped, never reported. The router's own attempt at a message it held or parked takes its id back.
    const replay = guard.check(relayed.messageId, now, relayed.sender, retry);
    if (!replay.ok && replay.reason === 'MESSAGE_REPLAYED') {
      return this.#duplicate(session, message, context, started, relayed, chain, now);
    }
    if (!replay.ok) return this.#refuse(session, message, state, started, replay, chain);
    session.inflightIds.add(relayed.messageId);
    try {
      // 5. Expired before routing (waited in a link or held here for a full queue): no use anywhere, and no
      // question for the policy, whose input cannot carry a TTL that ran out.
      const ttl = remainingTtl(relayed, now);
      if (ttl !== undefined && ttl <= 0) {
        const detail = `expiration of ${relayed.expirationMs ?? 0} ms passed before node ${this.#nodeId} routed it`;
        return await this.#refuse(session, message, state, started, { reason: 'MESSAGE_EXPIRED', detail }, chain);
      }

      // 6. Policy, with where the message comes from; a node's report is not a principal's message.
      let decision: PolicyDecision | undefined;
      if (!isReport) {
        decision = await this.#decide(relayed, chain, context, now);
        if (!decision.allow) {
          const detail = `policy revision ${decision.revision ?? '?'} at node ${this.#nodeId} denied: ${decision.reasons.join(', ')}`;
          const policy = { revision: decision.revision, reasons: decision.reasons };
          return await this.#refuse(
            session,
            message,
            state,
            started,
            { reason: 'POLICY_DENIED', detail, policy },
            chain,
          );
        }
      }
      const policy = decision === undefined ? undefined : { revision: decision.revision, reasons: decision.reasons };

      // 7. Deliver here, or pass on to the next hop (a full queue or link holds the message: outcome.ts Held),
      // while the audit record is written; the ack once both are confirmed.
      const at = new Date(now);
      const hop = relayed.recipientHomeNode === this.#nodeId ? undefined : this.#nextHop(relayed, chain, mesh);
      if (hop !== undefined && !hop.ok) {
        const refusal = { ...hop, ...(policy === undefined ? {} : { policy }) };
        return await this.#refuse(session, message, state, started, refusal, chain);
      }
      const nextHop = hop?.nextHop;
      const record = {
        messageId: relayed.messageId,
        sender: relayed.sender,
        recipient: relayed.recipient,
        result: nextHop === undefined ? ('routed' as const) : ('forwarded' as const),
        reason: null,
        ...(nextHop === undefined ? {} : { nextHop }),
        hops: chain.hops.map((entry) => entry.node),
        policyRevision: decision?.revision ?? null,
        policyReasons: decision?.reasons ?? [],
        configRevision: context.revision,
        at: at.toISOString(),
      };
      const destination = nextHop === undefined ? recipientKey(relayed.recipient) : linkKey(nextHop);
      const refused = await this.#outcome.sendAndSettle(session, message, started, record, destination, () => {
        if (nextHop === undefined) {
          const options = relayedOptions(message.properties, relayed, chain, mesh.signer, { to: null, ttl }, at);
          return this.#outcome.deliver(session, message, relayed.recipient, options);
        }
        const options = relayedOptions(
          message.properties,
          relayed,
          chain,
          mesh.signer,
          { to: nextHop, userId: mesh.userId },
          at,
        );
        return this.#outcome.forward(session, message, nextHop, options);
      });
      if (refused !== undefined) {
        const refusal = { ...refused, ...(policy === undefined ? {} : { policy }) };
        return await this.#refuse(session, message, state, started, refusal, chain);
      }
      this.#metrics.relayed.inc({ outcome: nextHop === undefined ? 'delivered' : 'forwarded' });
    } catch (error) {
      // Held (or parked) for another attempt, or back to the broker: that attempt is the same message, not a
      // duplicate; a held one's id still refuses a copy from elsewhere (ReplayGuard.park).
      if (error instanceof Held) guard.park(relayed.messageId);
      else guard.release(relayed.messageId);
      throw error;
    } finally {
      session.inflightIds.delete(relayed.messageId);
    }
  }

  /** The next hop toward the recipient's home, or why there is none (RECIPIENT_UNREACHABLE, HOP_LOOP, HOP_LIMIT_EXCEEDED). */
  #nextHop(
    relayed: RelayedMessage,
    chain: VerifiedHopChain,
    mesh: MeshContext,
  ): { ok: true; nextHop: string } | Rejection {
    const home = relayed.recipientHomeNode;
    const hop = mesh.routes.nextHop(home);
    if (!hop.ok) {
      return {
        ok: false,
        reason: 'RECIPIENT_UNREACHABLE',
        detail: `recipient ${relayed.recipient} is homed on ${home}: ${hop.detail}`,
      };
    }
    // The next hop would refuse it as a loop anyway; saying so here spares the link and names the culprit: routes.
    if (chain.hops.some((entry) => entry.node === hop.nextHop)) {
      return {
        ok: false,
        reason: 'HOP_LOOP',
        detail: `the next hop to ${home}, ${hop.nextHop}, already handled the message (loop)`,
      };
    }
    const limit = mesh.verifier.checkForward(chain);
    if (limit !== undefined) return limit;
    return { ok: true, nextHop: hop.nextHop };
  }

  async #decide(
    relayed: RelayedMessage,
    chain: VerifiedHopChain,
    context: RoutingContext,
    now: number,
  ): Promise<PolicyDecision> {
    const input = relayPolicyInput(relayed, chain, context, now);
    // validateRelayed found the recipient in the directory, checkMeshParties the sender; the index holds both.
    if (input === undefined) throw new Error('a party of a verified mesh message is missing from the policy index');
    return askPolicy(this.#policy, this.#metrics, input);
  }

  /** A copy of a message this node already handled: acked, counted and audited, no report. */
  async #duplicate(
    session: Session,
    message: ConsumeMessage,
    context: RoutingContext,
    started: number,
    relayed: RelayedMessage,
    chain: VerifiedHopChain,
    now: number,
  ): Promise<void> {
    await this.#outcome.duplicate(session, message, started, {
      messageId: relayed.messageId,
      sender: relayed.sender,
      recipient: relayed.recipient,
      result: 'duplicate',
      reason: 'MESSAGE_REPLAYED',
      hops: chain.hops.map((entry) => entry.node),
      policyRevision: null,
      policyReasons: [],
      configRevision: context.revision,
      at: new Date(now).toISOString(),
    });
  }

  /**
   * The refusal of a mesh message: the shared tail (rejected copy, audit,
   * ack), with the report going back to the sender across the mesh. When the
   * chain verified, the sender is the one it proved; when it did not, the
   * report still goes to the `dmr-sender` the message claims if that is a
   * client of the `dmr-origin` it claims in this node's directory: the
   * sender learns its message was tampered with, and nobody else can be made
   * to receive a report about a message that names other parties.
   */
  async #refuse(
    session: Session,
    message: ConsumeMessage,
    state: RoutingState,
    started: number,
    refusal: Refusal | Rejection,
    chain: VerifiedHopChain | undefined,
  ): Promise<void> {
    const { context, mesh } = state;
    const refusalOf: Refusal = {
      reason: refusal.reason,
      detail: refusal.detail,
      ...('policy' in refusal && refusal.policy !== undefined ? { policy: refusal.policy } : {}),
    };
    this.#metrics.relayRefused.inc({ reason: refusalOf.reason });
    const sender = chain?.sender ?? this.#claimedSender(message, context);
    const reportable =
      sender !== undefined &&
      mayReportOn(message.properties.type) &&
      // A node's report has the node as its sender: never a report about a report, nor to a node.
      (chain === undefined || chain.sender !== chain.origin) &&
      !context.message.denied.has(sender);
    const parties: RefusalParties = {
      sender,
      report: reportable
        ? (report) =>
            this.#outcome.report(session, context, mesh, sender, report, this.#now(), message).then((outcome) => {
              this.#logger.info({ messageId: validMessageId(message), to: sender, report: outcome }, 'mesh report');
              return outcome;
            })
        : undefined,
      ...(chain === undefined ? {} : { hops: chain.hops.map((entry) => entry.node) }),
    };
    await this.#outcome.refuse(session, message, context, started, refusalOf, parties);
  }

  /** The sender a message that failed verification claims, if the directory says it is a client of the claimed origin. */
  #claimedSender(message: ConsumeMessage, context: RoutingContext): string | undefined {
    const headers = message.properties.headers;
    const sender = ownHeader(headers, SENDER_HEADER);
    const origin = ownHeader(headers, ORIGIN_HEADER);
    // A message from a peer claiming this node as its origin is a forgery: no report to a client of ours about it.
    if (typeof sender !== 'string' || !isValidId(sender) || typeof origin !== 'string' || origin === this.#nodeId) {
      return undefined;
    }
    return context.message.directory.get(sender)?.homeNode === origin ? sender : undefined;
  }
}
