/**
 * The origin path: one message a local client published to `dmr.ingress`,
 * from delivery to ack, readable top to bottom in route(): contract checks →
 * sender rate → replay guard (per-sender share) → expiry → policy → deliver to the
 * recipient's queue and its audit record, both confirmed → ack. A
 * recipient homed on another node: its next hop from the route index →
 * signed (`dmr-sig`, entry 0 of `dmr-hops`) → the outbound queue of the next
 * hop and the audit record `forwarded`, both confirmed → ack. Every refusal and the
 * final settle go through the shared tail (outcome.ts).
 */
import { performance } from 'node:perf_hooks';
import type { PolicyDecider, PolicyDecision } from '@dmr/policy';
import type { ConsumeMessage } from 'amqplib';
import type { ValidatedMessage } from '../message/contract.js';
import type { ReplayGuard } from '../message/replay.js';
import type { SenderRateLimit } from '../message/rate-limit.js';
import { validateAtOrigin } from '../message/validate.js';
import {
  deliveredOptions,
  originForwardOptions,
  policyInputFor,
  remainingTtl,
  type RoutingContext,
} from './envelope.js';
import type { MeshContext } from './mesh-context.js';
import { hopEvent } from './hop-trace.js';
import { askPolicy } from './policy-step.js';
import type { RouterMetrics } from './metrics.js';
import { Held, linkKey, recipientKey, type Outcomes, type Session } from './outcome.js';

/** What one message is judged by: the revision applied when it arrived, and the stores that outlive revisions. */
export interface RoutingState {
  context: RoutingContext;
  guard: ReplayGuard;
  rate: SenderRateLimit;
  /** Routes, signer and verifier; undefined while the router has no node identity (it then relays nothing). */
  mesh: MeshContext | undefined;
}

export interface OriginPathOptions {
  nodeId: string;
  now: () => number;
  /** Swapped by its owner; the path only calls decide(). */
  policy: PolicyDecider;
  metrics: RouterMetrics;
  outcome: Outcomes;
}

export class OriginPath {
  readonly #nodeId: string;
  readonly #now: () => number;
  readonly #policy: PolicyDecider;
  readonly #metrics: RouterMetrics;
  readonly #outcome: Outcomes;

  constructor(options: OriginPathOptions) {
    this.#nodeId = options.nodeId;
    this.#now = options.now;
    this.#policy = options.policy;
    this.#metrics = options.metrics;
    this.#outcome = options.outcome;
  }

  /**
   * One ingress message, from delivery to ack (or held: a transient failure,
   * a full destination). `takenAt`: set on the router's own re-attempt at a
   * held message, when the router first took it.
   */
  async route(session: Session, message: ConsumeMessage, state: RoutingState, takenAt?: number): Promise<void> {
    const started = performance.now();
    const now = this.#now();
    const context = state.context;
    const guard = state.guard;
    const retry = takenAt !== undefined;
    if (!retry) this.#metrics.received.inc();

    // 1. The contract (docs/contract.md "Message contract"): the first broken rule is the reason. As of when the
    // router took the message: time spent held is not clock skew (its TTL still counts, step 5).
    const checked = validateAtOrigin(message, context.message, takenAt ?? now);
    if (!checked.ok) return this.#outcome.refuse(session, message, context, started, checked);
    const validated = checked.message;
    hopEvent('validated');

    // 2. The sender's rate, counted once per message: not again for the router's own re-attempts.
    if (!retry && !message.fields.redelivered) {
      const rate = state.rate.take(validated.sender, now);
      if (!rate.ok) return this.#outcome.refuse(session, message, context, started, rate);
    }

    // 3. Replays, within the sender's share of the window. A redelivery of an id we hold is our own
    // re-attempt (see router.ts), not a replay; so is a retry of a message held or parked here (ReplayGuard.park).
    // A retry that meets a seen id is a second copy of a parked message (a duplicate dead letter): dropped.
    const replay = guard.check(validated.messageId, now, validated.sender, retry);
    if (!replay.ok && !(replay.reason === 'MESSAGE_REPLAYED' && message.fields.redelivered)) {
      if (retry && replay.reason === 'MESSAGE_REPLAYED') {
        return this.#outcome.duplicate(session, message, started, {
          messageId: validated.messageId,
          sender: validated.sender,
          recipient: validated.recipient,
          result: 'duplicate',
          reason: 'MESSAGE_REPLAYED',
          policyRevision: null,
          policyReasons: [],
          configRevision: context.revision,
          at: new Date(now).toISOString(),
        });
      }
      return this.#outcome.refuse(session, message, context, started, replay);
    }
    session.inflightIds.add(validated.messageId);
    try {
      // 4. Expired before routing (it waited in the ingress, or held for a full queue): no use anywhere, and no
      // question for the policy, whose input cannot carry a TTL that ran out.
      const ttl = remainingTtl(validated, now);
      if (ttl !== undefined && ttl <= 0) {
        const detail = `expiration of ${validated.expirationMs ?? 0} ms passed before routing`;
        return await this.#outcome.refuse(session, message, context, started, { reason: 'MESSAGE_EXPIRED', detail });
      }

      // 5. Policy: deny by default; no answer at all is transient, never an allow.
      const input = policyInputFor(validated, context, now);
      if (input === undefined) {
        return await this.#outcome.refuse(session, message, context, started, {
          reason: 'POLICY_DENIED',
          detail: 'sender or recipient is missing from the directory index',
        });
      }
      const decision = await askPolicy(this.#policy, this.#metrics, input);
      const policy = { revision: decision.revision, reasons: decision.reasons };
      if (!decision.allow) {
        const detail = `policy revision ${decision.revision ?? '?'} denied: ${decision.reasons.join(', ')}`;
        return await this.#outcome.refuse(session, message, context, started, {
          reason: 'POLICY_DENIED',
          detail,
          policy,
        });
      }

      // 6. Route: homed elsewhere goes over a link.
      if (validated.recipientHomeNode !== this.#nodeId) {
        return await this.#forward(session, message, state, validated, started, now, decision);
      }

      // 7. Deliver, confirmed by the recipient's queue (a full queue holds the message: outcome.ts Held), while
      // its audit record is written; the ack once both are confirmed: nothing acknowledged lacks its record.
      const options = deliveredOptions(message.properties, validated, this.#nodeId, now, ttl);
      const record = {
        messageId: validated.messageId,
        sender: validated.sender,
        recipient: validated.recipient,
        result: 'routed' as const,
        reason: null,
        policyRevision: decision.revision ?? null,
        policyReasons: decision.reasons,
        configRevision: context.revision,
        at: new Date(now).toISOString(),
      };
      const refused = await this.#outcome.sendAndSettle(
        session,
        message,
        started,
        record,
        recipientKey(validated.recipient),
        () => this.#outcome.deliver(session, message, validated.recipient, options),
      );
      if (refused !== undefined) {
        return await this.#outcome.refuse(session, message, context, started, { ...refused, policy });
      }
    } catch (error) {
      // Held (or parked) for another attempt, or back to the broker: that attempt is the same message, not a
      // replay; a held one's id still refuses a client's replay meanwhile (ReplayGuard.park).
      if (error instanceof Held) guard.park(validated.messageId);
      else guard.release(validated.messageId);
      throw error;
    } finally {
      session.inflightIds.delete(validated.messageId);
    }
  }

  /**
   * A recipient homed on another node: the next hop from the route index
   * (none, unreachable, or not a usable link: RECIPIENT_UNREACHABLE, the
   * detail says which), the hop limit, then signed and sent to the next
   * hop's outbound queue with this node's own `user_id` (never the
   * client's), confirmed, audited `forwarded`, acked.
   */
  async #forward(
    session: Session,
    message: ConsumeMessage,
    state: RoutingState,
    validated: ValidatedMessage,
    started: number,
    now: number,
    decision: PolicyDecision,
  ): Promise<void> {
    const { context, mesh } = state;
    const policy = { revision: decision.revision, reasons: decision.reasons };
    const home = validated.recipientHomeNode;
    if (mesh === undefined) {
      const detail = `recipient ${validated.recipient} is homed on ${home}; this router has no node key to relay with`;
      return this.#outcome.refuse(session, message, context, started, {
        reason: 'RECIPIENT_UNREACHABLE',
        detail,
        policy,
      });
    }
    const hop = mesh.routes.nextHop(home);
    if (!hop.ok) {
      const detail = `recipient ${validated.recipient} is homed on ${home}: ${hop.detail}`;
      return this.#outcome.refuse(session, message, context, started, {
        reason: 'RECIPIENT_UNREACHABLE',
        detail,
        policy,
      });
    }
    const limit = mesh.verifier.checkForward({ count: 0 });
    if (limit !== undefined) {
      return this.#outcome.refuse(session, message, context, started, { ...limit, policy });
    }
    const options = originForwardOptions(
      message.properties,
      validated,
      message.content,
      mesh.signer,
      hop.nextHop,
      mesh.userId,
      new Date(now),
    );
    const record = {
      messageId: validated.messageId,
      sender: validated.sender,
      recipient: validated.recipient,
      result: 'forwarded' as const,
      reason: null,
      nextHop: hop.nextHop,
      policyRevision: decision.revision ?? null,
      policyReasons: decision.reasons,
      configRevision: context.revision,
      at: new Date(now).toISOString(),
    };
    const refused = await this.#outcome.sendAndSettle(session, message, started, record, linkKey(hop.nextHop), () =>
      this.#outcome.forward(session, message, hop.nextHop, options),
    );
    if (refused !== undefined) {
      return this.#outcome.refuse(session, message, context, started, { ...refused, policy });
    }
    this.#metrics.forwarded.inc();
  }
}
