/**
 * The dead-letter path: a client queue's dead letter (expired, or over the
 * delivery limit) from `dmr.dead-letter-reports` becomes a report to its
 * sender, with an audit record, then the ack.
 */
import type { ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { RECIPIENT_HEADER, SENDER_HEADER } from '@dmr/contract';
import { DELIVERY_REPORT_TYPE, deadLetterReason, deliveryReport, type RoutingContext } from './envelope.js';
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
  readonly #logger: Logger;
  readonly #outcome: Outcomes;

  constructor(options: DeadLetterPathOptions) {
    this.#nodeId = options.nodeId;
    this.#now = options.now;
    this.#logger = options.logger;
    this.#outcome = options.outcome;
  }

  /** A dead letter (expired or over the delivery limit in a client queue) becomes a report to its sender. */
  async report(session: Session, message: ConsumeMessage, context: RoutingContext): Promise<void> {
    const now = this.#now();
    const headers = message.properties.headers;
    const reason = deadLetterReason(headers);
    const sender = headers?.[SENDER_HEADER] as unknown;
    const recipient = headers?.[RECIPIENT_HEADER] as unknown;
    const messageId = validMessageId(message);
    // Never a report about a report (a report that expired in its queue): that could loop.
    const aboutReport = message.properties.type === DELIVERY_REPORT_TYPE;
    if (
      reason !== undefined &&
      !aboutReport &&
      typeof sender === 'string' &&
      this.#outcome.reportable(context, sender)
    ) {
      const where = validId(recipient) === null ? 'a recipient queue' : `the queue of ${String(recipient)}`;
      const detail =
        reason === 'MESSAGE_EXPIRED'
          ? `expired in ${where}`
          : `delivered too often from ${where} without an ack (delivery limit)`;
      const report = deliveryReport(messageId, 'dead-lettered', { reason, detail }, this.#nodeId, now);
      // A full sender queue nacks the report: it cannot be sent now or by retrying in a loop, so it is logged.
      const outcome = await this.#outcome.sendReport(session, sender, report, now);
      await this.#outcome.audit({
        kind: 'dead-letter',
        messageId,
        sender,
        recipient: validId(recipient),
        result: 'reported',
        reason,
        policyRevision: null,
        policyReasons: [],
        configRevision: context.revision,
        at: new Date(now).toISOString(),
      });
      this.#logger.info({ messageId, sender, reason, report: outcome }, 'dead-letter');
    }
    session.acks.ack(message);
  }
}
