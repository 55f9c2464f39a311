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
 */
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { RECIPIENT_HEADER, SENDER_HEADER, outboundQueueName } from '@dmr/contract';
import { DELIVERY_REPORT_TYPE, deadLetterReason, deliveryReport } from './envelope.js';
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
    const { context, mesh } = state;
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
    const known = senderId !== null && (context.localQueues.has(senderId) || context.message.directory.has(senderId));
    if (reason !== undefined && !aboutReport && senderId !== null && known) {
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
      const report = deliveryReport(messageId, 'dead-lettered', { reason, detail }, this.#nodeId, now);
      // A full sender queue (or link) holds this dead letter unacked until the report is taken (outcome.ts Held).
      const outcome = await this.#outcome.report(session, context, mesh, senderId, report, now, message);
      await this.#outcome.audit({
        kind: 'dead-letter',
        messageId,
        sender: senderId,
        recipient: validId(recipient),
        result: 'reported',
        reason,
        policyRevision: null,
        policyReasons: [],
        configRevision: context.revision,
        at: new Date(now).toISOString(),
      });
      // The dead letter's one log line is its delivery.failed event (the audit record is the one just written).
      this.#outcome.failedDelivery(
        { messageId, sender: senderId, recipient: validId(recipient), reason },
        { report: outcome, ...(link === undefined ? {} : { link }) },
        'dead-letter',
      );
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
}

/** `dmr.outbound.`: the contract names the queues, not their prefix. */
const OUTBOUND_QUEUE_PREFIX = outboundQueueName('');

/** A client rejected it (nack without requeue) from its own queue: the x-death entry says `rejected`, not a link. */
function refusedByRecipient(message: ConsumeMessage): boolean {
  const deaths = message.properties.headers?.['x-death'];
  const latest = Array.isArray(deaths) ? (deaths[0] as Record<string, unknown> | undefined) : undefined;
  return latest?.reason === 'rejected' && linkOf(message) === undefined;
}

/** The peer whose link a dead letter expired in (`x-death` names `dmr.outbound.<peer>`), else undefined. */
function linkOf(message: ConsumeMessage): string | undefined {
  const deaths = message.properties.headers?.['x-death'];
  const queue = Array.isArray(deaths) ? (deaths[0] as Record<string, unknown> | undefined)?.queue : undefined;
  const name = typeof queue === 'string' ? queue : message.fields.routingKey;
  if (!name.startsWith(OUTBOUND_QUEUE_PREFIX)) return undefined;
  return validId(name.slice(OUTBOUND_QUEUE_PREFIX.length)) ?? undefined;
}
