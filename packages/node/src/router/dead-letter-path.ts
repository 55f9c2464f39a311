/**
 * The dead-letter path: a dead letter from `dmr.dead-letter-reports` — a
 * client queue's (expired, or over the delivery limit), or a link's (expired
 * in `dmr.outbound.<peer>`, its routing key) — becomes a report to its
 * sender, with an audit record, then the ack. The sender is local (a local
 * report) or homed on another node (a mesh report signed by this node,
 * routed back toward it): Outcomes.report decides.
 *
 * A message its recipient rejected (the bridge gave up on its endpoint, an
 * SDK client dead-lettered it) comes the same way, with x-death reason
 * `rejected`: no report (the recipient chose it), but the audit record and
 * the delivery.failed event (RECIPIENT_REFUSED) a failed delivery needs,
 * written here because only routers write `dmr.audit` (docs/events.md).
 *
 * A router input's dead letter (input-dead-letter.ts, decision 0042): a
 * message the sender was told was accepted that expired in its input, or hit
 * the input's delivery limit, before a router settled it. No router set its
 * `dmr-sender`: the report goes to the client its `user_id` names (ingress),
 * or to the sender its hop chain proves when verified again here (mesh
 * ingress); a chain that does not verify gets no report, only the record.
 */
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { RECIPIENT_HEADER, SENDER_HEADER, outboundQueueName, type SignableMessage } from '@dmr/contract';
import { ownHeader } from '../message/headers.js';
import { mayReportOn } from '../message/mesh-report.js';
import { DELIVERY_REPORT_TYPE, deadLetterReason, deliveryReport, latestDeath, type Refusal } from './envelope.js';
import { asInInput, ingressSender, inputDeathDetail, inputDeathOf, type InputDeath } from './input-dead-letter.js';
import type { RoutingState } from './origin-path.js';
import { validId, validMessageId, type Outcomes, type Session } from './outcome.js';

export interface DeadLetterPathOptions {
  nodeId: string;
  now: () => number;
  logger: Logger;
  outcome: Outcomes;
}

export class DeadLetterPath {
  readonly #nodeId: string;
  readonly #now: () => number;
  readonly #outcome: Outcomes;

  constructor(options: DeadLetterPathOptions) {
    this.#nodeId = options.nodeId;
    this.#now = options.now;
    this.#outcome = options.outcome;
  }

  /** A dead letter (expired or over the delivery limit in a client queue) becomes a report to its sender. */
  async report(session: Session, message: ConsumeMessage, state: RoutingState): Promise<void> {
    const input = inputDeathOf(message);
    if (input !== undefined) return this.#inputDeadLetter(session, message, state, input);
    const { context } = state;
    const now = this.#now();
    const headers = message.properties.headers;
    const reason = deadLetterReason(headers);
    const sender = headers?.[SENDER_HEADER] as unknown;
    const recipient = headers?.[RECIPIENT_HEADER] as unknown;
    const messageId = validMessageId(message);
    // Never a report about a report (a report that expired in its queue): that could loop.
    const aboutReport = message.properties.type === DELIVERY_REPORT_TYPE;
    // Only the router writes what dead-letters here (client queues, outbound queues), so its dmr-sender is one the
    // router set or verified; a sender no longer in the directory gets nothing.
    const senderId = validId(sender);
    if (reason !== undefined && !aboutReport && senderId !== null && known(state, senderId)) {
      const link = linkOf(message);
      const where =
        link !== undefined
          ? `the link to node ${link}`
          : validId(recipient) === null
            ? 'a recipient queue'
            : `the queue of ${String(recipient)}`;
      const detail =
        reason === 'MESSAGE_EXPIRED'
          ? `expired in ${where}`
          : `delivered too often from ${where} without an ack (delivery limit)`;
      await this.#reportAndRecord(session, message, state, {
        messageId,
        sender: senderId,
        recipient: validId(recipient),
        refusal: { reason, detail },
        reportTo: senderId,
        event: link === undefined ? {} : { link },
      });
    } else if (reason === undefined && !aboutReport && refusedByRecipient(message)) {
      const decision = { messageId, sender: senderId, recipient: validId(recipient), reason: 'RECIPIENT_REFUSED' };
      await this.#outcome.audit({
        kind: 'dead-letter',
        ...decision,
        result: 'rejected',
        policyRevision: null,
        policyReasons: [],
        configRevision: context.revision,
        at: new Date(now).toISOString(),
      });
      this.#outcome.failedDelivery(decision, {}, 'dead-letter');
    }
    session.acks.ack(message);
  }

  /**
   * A router input's dead letter: a report to the sender it can be proved to be from (MESSAGE_EXPIRED or
   * DELIVERY_LIMIT_EXCEEDED), the audit record (`reported`, or `rejected` when nobody can be told), the
   * delivery.failed event, then the ack. Its whole copy is in dmr.rejected already (the layout's binding).
   */
  async #inputDeadLetter(
    session: Session,
    message: ConsumeMessage,
    state: RoutingState,
    death: InputDeath,
  ): Promise<void> {
    // The router's own dead-letter after an internal error: audited, with its event, before its nack (router.ts).
    if (death.reason === 'rejected') {
      session.acks.ack(message);
      return;
    }
    const { context, mesh } = state;
    const now = this.#now();
    const reason = death.reason === 'expired' ? 'MESSAGE_EXPIRED' : 'DELIVERY_LIMIT_EXCEEDED';
    const messageId = validMessageId(message);
    const recipient = validId(ownHeader(message.properties.headers, RECIPIENT_HEADER));
    let sender: string | undefined;
    let hops: string[] | undefined;
    let unproven: string | undefined;
    if (death.input === 'ingress') {
      sender = ingressSender(death, context.message.trustDomain);
      if (sender === undefined) unproven = 'its user_id is not a client of this trust domain';
    } else if (mesh === undefined) {
      unproven = 'this router has no node identity to verify it with';
    } else {
      // The same verification the relay path does (hop protocol v3), as of now: a claim it does not prove gets
      // no report (a peer could otherwise have any client told anything).
      const verified = await mesh.verifier.verify(asInInput(message, death) as SignableMessage, new Date(now));
      if (!verified.ok) unproven = `its hop chain does not verify: ${verified.reason} (${verified.detail})`;
      else if (verified.message.sender === verified.message.origin) unproven = 'it is a node report';
      else {
        sender = verified.message.sender;
        hops = verified.message.hops.map((entry) => entry.node);
      }
    }
    // Never a report about a report, and none to a sender that is not (or no longer) in the directory.
    const reportTo =
      sender !== undefined && known(state, sender) && mayReportOn(message.properties.type) ? sender : undefined;
    const detail = inputDeathDetail(death);
    await this.#reportAndRecord(session, message, state, {
      messageId,
      sender: sender ?? null,
      recipient,
      refusal: { reason, detail },
      reportTo,
      ...(hops === undefined ? {} : { hops }),
      event: { input: death.queue, detail, ...(unproven === undefined ? {} : { unreported: unproven }) },
    });
    session.acks.ack(message);
  }

  /**
   * The tail both kinds of reported dead letter share: the report (when someone can be told; a full sender queue
   * or link holds the dead letter unacked until it is taken, outcome.ts Held), the audit record (`reported`, or
   * `rejected` when nobody was told), then its one log line, the delivery.failed event with `event`'s fields.
   */
  async #reportAndRecord(
    session: Session,
    message: ConsumeMessage,
    state: RoutingState,
    dead: {
      messageId: string | null;
      sender: string | null;
      recipient: string | null;
      refusal: Refusal;
      reportTo: string | undefined;
      hops?: string[];
      event: Record<string, unknown>;
    },
  ): Promise<void> {
    const { context, mesh } = state;
    const now = this.#now();
    const { messageId, sender, recipient, refusal, reportTo } = dead;
    const outcome =
      reportTo === undefined
        ? undefined
        : await this.#outcome.report(
            session,
            context,
            mesh,
            reportTo,
            deliveryReport(messageId, 'dead-lettered', refusal, this.#nodeId, now),
            now,
            message,
          );
    await this.#outcome.audit({
      kind: 'dead-letter',
      messageId,
      sender,
      recipient,
      result: reportTo === undefined ? 'rejected' : 'reported',
      reason: refusal.reason,
      policyRevision: null,
      policyReasons: [],
      configRevision: context.revision,
      at: new Date(now).toISOString(),
      ...(dead.hops === undefined ? {} : { hops: dead.hops }),
    });
    this.#outcome.failedDelivery(
      { messageId, sender, recipient, reason: refusal.reason },
      { ...dead.event, ...(outcome === undefined ? {} : { report: outcome }) },
      'dead-letter',
    );
  }
}

/** Whether `id` is a sender this node can still tell: a local client, or one in the directory. */
function known(state: RoutingState, id: string): boolean {
  return state.context.localQueues.has(id) || state.context.message.directory.has(id);
}

/** `dmr.outbound.`: the contract names the queues, not their prefix. */
const OUTBOUND_QUEUE_PREFIX = outboundQueueName('');

/** A client rejected it (nack without requeue) from its own queue: the x-death entry says `rejected`, not a link. */
function refusedByRecipient(message: ConsumeMessage): boolean {
  return latestDeath(message.properties.headers)?.reason === 'rejected' && linkOf(message) === undefined;
}

/** The peer whose link a dead letter expired in (`x-death` names `dmr.outbound.<peer>`), else undefined. */
function linkOf(message: ConsumeMessage): string | undefined {
  const queue = latestDeath(message.properties.headers)?.queue;
  const name = typeof queue === 'string' ? queue : message.fields.routingKey;
  if (!name.startsWith(OUTBOUND_QUEUE_PREFIX)) return undefined;
  return validId(name.slice(OUTBOUND_QUEUE_PREFIX.length)) ?? undefined;
}
