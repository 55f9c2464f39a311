/**
 * The tail every router path ends in (origin-path.ts, relay-path.ts,
 * dead-letter-path.ts): publishing with the broker's confirm, delivery to a
 * recipient's queue, the one refusal (rejected copy + report + audit), and
 * the settle (audit record confirmed, then the ack, then metrics and the
 * decision log line). A step that cannot complete now throws Transient: the
 * router holds the message unacked and pauses (router.ts #failed), never a
 * requeue. A full destination (a recipient's queue or a link's outbound
 * queue) throws Held: the router holds that message per destination and
 * keeps routing the rest (hold.ts). So does a delivery report to a full
 * sender queue (or a full link toward the sender's node): the message the
 * report is about stays unacked and held until the report is taken, so a
 * refusal or a dead letter is never settled without its report reaching
 * the sender's queue (issue 14).
 */
import { performance } from 'node:perf_hooks';
import { EventRecorder, isErrorCode, isValidId, type AckBatcher } from '@dmr/core';
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message, Options } from 'amqplib';
import type { Logger } from 'pino';
import { ownHeader } from '../message/headers.js';
import { senderFromUserId } from '../message/validate.js';
import { DELIVERY_EXCHANGE, REJECTED_EXCHANGE, RECIPIENT_HEADER, UUID_PATTERN, outboundQueueName } from '@dmr/contract';
import { meshReport } from '../message/mesh-report.js';
import type { AuditEvent, AuditSink } from './audit.js';
import type { Holds } from './hold.js';
import { hopEvent, hopSettled, traceHeaders, traceIdFor } from './hop-trace.js';
import {
  deliveryReport,
  rejectedCopy,
  reportOptions,
  type DeliveryReport,
  type Refusal,
  type RoutingContext,
} from './envelope.js';
import type { MeshContext } from './mesh-context.js';
import type { RouterMetrics } from './metrics.js';

/** `unencodable`: amqplib refused to encode the message (thrown before anything reached the broker). */
export type PublishOutcome = 'confirmed' | 'returned' | 'nacked' | 'unencodable';

/** The default exchange: a routing key is a queue name, so `dmr.outbound.<peer>` needs no exchange of its own. */
const DEFAULT_EXCHANGE = '';

/** What a refusal says about its message and who gets the report, when the path knows better than `user_id`. */
export interface RefusalParties {
  /** The authenticated sender, named in the rejected copy and the audit record. */
  sender: string | undefined;
  /** Sends the report about the refusal; undefined when none is due (a report about a report, no sender). */
  report: ((report: DeliveryReport) => Promise<unknown>) | undefined;
  /** The hop chain's nodes on arrival, for the audit record and the log line. */
  hops?: string[];
}

/** Which path a delivery takes: its consumer decides. */
export type Handler = 'route' | 'relay' | 'dead-letter';

/** One connection's worth of state: dropped as a whole when the connection or channel goes. */
export interface Session {
  connection: ChannelModel;
  channel: ConfirmChannel;
  /** Every delivery of `channel` is settled through it: the acks of one turn go out as one frame when they can. */
  acks: AckBatcher<ConsumeMessage>;
  alive: boolean;
  /** Resolves when the connection or channel closes, for whatever reason. */
  closed: Promise<void>;
  ingressTag: string | undefined;
  reportsTag: string | undefined;
  /** The mesh ingress shard's consumer, when the router has a node identity to verify and sign with. */
  meshTag: string | undefined;
  /** Message ids the guard accepted in this session and not yet settled: released on loss. */
  inflightIds: Set<string>;
  /** (exchange, routing key, message id) of mandatory publishes the broker returned, until their confirm. */
  returned: Set<string>;
  /** Deliveries kept unacked after a transient failure, tried again when the pause ends (at most prefetch × 2). */
  held: Array<{ message: ConsumeMessage; handler: Handler; takenAt: number }>;
  paused: boolean;
  /** Deliveries kept unacked because their destination is full, per destination (hold.ts). */
  holds: Holds<ConsumeMessage, HeldDelivery>;
  /** Stopping and resuming the inputs for the hold's bound, one change after the other. */
  gate: Promise<void>;
  /** Messages held past their destination's share since parking last took one (0: parking takes them). */
  parkingRefused: number;
}

/** What the router needs to run a held delivery again. */
export interface HeldDelivery {
  handler: Handler;
  /** When the router first took it (ms): its contract is judged as of then, not as of the retry. */
  takenAt: number;
}

/** Thrown when a step cannot complete now but may later: the message goes back to the broker. */
export class Transient extends Error {
  constructor(
    /** Metric label: what was unavailable. */
    readonly reason: 'policy' | 'audit' | 'broker',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * Thrown when the destination is full (the broker nacked the publish, or
 * it would be held behind messages already waiting): not a refusal, the
 * message waits unacked for the destination, alone (hold.ts).
 */
export class Held extends Error {
  constructor(
    /** The destination: `recipient:<id>` or `link:<peer>`. */
    readonly key: string,
    /** Metric label: `report` is a delivery report waiting for a full sender queue or link. */
    readonly kind: 'recipient' | 'link' | 'report',
    message: string,
  ) {
    super(message);
  }
}

/** The hold key of a local recipient's queue (hold.ts). */
export function recipientKey(recipient: string): string {
  return `recipient:${recipient}`;
}

/** The hold key of the link to `peer`: its outbound queue (hold.ts). */
export function linkKey(peer: string): string {
  return `link:${peer}`;
}

export function returnKey(exchange: string, routingKey: string, messageId: unknown): string {
  return `${exchange}\0${routingKey}\0${typeof messageId === 'string' ? messageId : ''}`;
}

/** `value` if it is a valid principal id, else null: logs and records never carry an unvalidated client value. */
export function validId(value: unknown): string | null {
  return typeof value === 'string' && isValidId(value) ? value : null;
}

/** The message id if it is a usable one (a UUID, lowercased), else null: never an unvalidated client value. */
export function validMessageId(message: Message): string | null {
  const id = message.properties.messageId as unknown;
  return typeof id === 'string' && UUID_PATTERN.test(id.toLowerCase()) ? id.toLowerCase() : null;
}

/** What a settled message's audit record says (the sink adds kind and node). */
export type RouteDecision = Omit<AuditEvent, 'kind' | 'node'> & {
  result: 'routed' | 'forwarded' | 'duplicate' | 'rejected';
};

export interface OutcomeOptions {
  nodeId: string;
  now: () => number;
  logger: Logger;
  metrics: RouterMetrics;
  audit?: AuditSink;
}

export class Outcomes {
  readonly #nodeId: string;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #metrics: RouterMetrics;
  readonly #auditSink: AuditSink | undefined;
  /** Failed deliveries as events (docs/events.md): their audit record is the decision's, so `recorded`. */
  readonly events: EventRecorder;
  /**
   * Refused deliveries whose rejected copy is stored while their report is held (a full sender queue): their
   * retries store no second copy. Weak: a delivery object lives as long as its session (a redelivery after a
   * reconnect is a new object, and stores its copy again).
   */
  readonly #copied = new WeakSet<ConsumeMessage>();

  constructor(options: OutcomeOptions) {
    this.#nodeId = options.nodeId;
    this.#now = options.now;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#auditSink = options.audit;
    this.events = new EventRecorder({ logger: options.logger, counter: options.metrics.events });
  }

  /** Whether the rejected copy of `message` is stored while its report waits (parking carries it along). */
  hasCopy(message: ConsumeMessage): boolean {
    return this.#copied.has(message);
  }

  /** `message` came back from parking with its rejected copy stored already (parking.ts): none stored again. */
  markCopied(message: ConsumeMessage): void {
    this.#copied.add(message);
  }

  /**
   * A message refused or dead-lettered here, as the `delivery.failed` event:
   * the one log line the decision already had (`message`), now carrying
   * `event`, plus one counter increment. Its audit record is the decision's.
   */
  failedDelivery(
    decision: { messageId: string | null; sender: string | null; recipient: string | null; reason: string | null },
    context: Record<string, unknown>,
    message: string,
  ): void {
    this.events.recorded(
      'delivery.failed',
      {
        ...(decision.messageId === null ? {} : { messageId: decision.messageId }),
        reason: decision.reason !== null && isErrorCode(decision.reason) ? decision.reason : 'INTERNAL',
        ...(decision.sender === null || !isValidId(decision.sender) ? {} : { sender: decision.sender }),
        ...(decision.recipient === null || !isValidId(decision.recipient) ? {} : { recipient: decision.recipient }),
      },
      context,
      message,
    );
  }

  /**
   * Delivers `message` to the recipient's queue on this node (`dmr.delivery`,
   * mandatory, confirmed by the queue). Undefined when the queue took it,
   * else the refusal to settle the message with. A full queue is no refusal:
   * Held, and so is every message for that recipient while it is held.
   */
  async deliver(
    session: Session,
    message: ConsumeMessage,
    recipient: string,
    options: Options.Publish,
  ): Promise<Refusal | undefined> {
    const key = recipientKey(recipient);
    if (session.holds.blocks(key, message)) throw new Held(key, 'recipient', `the queue of ${recipient} is full`);
    const outcome = await this.publish(session, DELIVERY_EXCHANGE, recipient, message.content, options);
    if (outcome === 'returned') {
      return { reason: 'RECIPIENT_UNREACHABLE', detail: `no queue for ${recipient} on node ${this.#nodeId}` };
    }
    if (outcome === 'nacked') throw new Held(key, 'recipient', `the queue of ${recipient} is full`);
    if (outcome === 'unencodable') {
      // Not transient: the same message would fail the same way on every attempt.
      const detail = 'a property of the message cannot be encoded again for delivery';
      return { reason: 'MESSAGE_UNENCODABLE', detail };
    }
    return undefined;
  }

  /**
   * The one refusal tail: DMR's metadata about the refused message (never its
   * body or client headers) to `dmr.rejected`, a report to its sender when it
   * has a queue here (never for a report), the audit record; all confirmed,
   * then the ack.
   */
  async refuse(
    session: Session,
    message: ConsumeMessage,
    context: RoutingContext,
    started: number,
    refusal: Refusal,
    parties?: RefusalParties,
  ): Promise<void> {
    const now = this.#now();
    // user_id, when set, is what RabbitMQ checked against the login: a client's SPIFFE id names the sender.
    const from =
      parties === undefined ? senderFromUserId(message.properties.userId, context.message.trustDomain) : parties.sender;
    const messageId = validMessageId(message);
    // An unvalidated header: recorded only when it is a valid id.
    const recipient = validId(ownHeader(message.properties.headers, RECIPIENT_HEADER));
    const reportTo = parties === undefined && this.reportable(context, from) ? from : undefined;
    const copy = rejectedCopy(
      {
        messageId,
        sender: from,
        recipient,
        body: message.content,
        type: message.properties.type,
        timestamp: message.properties.timestamp,
      },
      refusal,
    );
    // While the sender's queue is held, the report waits behind the earlier ones without a publish (hold.ts).
    if (reportTo !== undefined) this.#holdReport(session, recipientKey(reportTo), message, reportTo);
    const stored: Promise<PublishOutcome> = this.#copied.has(message)
      ? Promise.resolve('confirmed')
      : this.publish(session, REJECTED_EXCHANGE, '', copy.content, copy.options);
    const body = deliveryReport(messageId, 'rejected', refusal, this.#nodeId, now);
    const report =
      reportTo !== undefined ? this.sendReport(session, reportTo, body, now, message) : parties?.report?.(body);
    const [copied, reported] = await Promise.allSettled([stored, report]);
    if (copied.status === 'fulfilled' && copied.value === 'confirmed') this.#copied.add(message);
    // A report that could not be taken (Held: a full sender queue or link) keeps the message unacked: retried.
    if (reported.status === 'rejected') throw reported.reason;
    if (copied.status === 'rejected') throw copied.reason;
    if (copied.value !== 'confirmed') {
      throw new Transient('broker', `the rejected queue did not take the refusal (${refusal.reason}: ${copied.value})`);
    }
    this.#copied.delete(message);
    await this.settle(
      session,
      message,
      started,
      {
        messageId,
        sender: from ?? null,
        recipient,
        result: 'rejected',
        reason: refusal.reason,
        policyRevision: refusal.policy?.revision ?? null,
        policyReasons: refusal.policy?.reasons ?? [],
        configRevision: context.revision,
        at: new Date(now).toISOString(),
        ...(parties?.hops === undefined ? {} : { hops: parties.hops }),
      },
      refusal.detail,
    );
  }

  /**
   * The end of every ingress message: its audit record confirmed, then the
   * ack, then the metrics and the one decision log line (the same fields as
   * the record, never payload).
   */
  async settle(
    session: Session,
    message: ConsumeMessage,
    started: number,
    decision: RouteDecision,
    detail?: string,
  ): Promise<void> {
    await this.audit(this.#record(message, decision));
    this.#acked(session, message, started, decision, detail);
  }

  /**
   * A copy of a message this router already handled (a link's redelivery, a second copy of a parked message):
   * acked, counted and audited `duplicate`, never reported.
   */
  async duplicate(
    session: Session,
    message: ConsumeMessage,
    started: number,
    decision: RouteDecision & { result: 'duplicate' },
  ): Promise<void> {
    this.#metrics.duplicatesDropped.inc();
    await this.settle(session, message, started, decision);
  }

  /**
   * The end of a message routed here or forwarded: `send` publishes it to
   * `destination` (recipientKey, linkKey) while its audit record is written,
   * and the ack waits for both confirms. One broker round trip per message
   * instead of two (publish, then record): a router's window of `prefetch`
   * messages turns over twice as often (docs/decisions/0027-mesh-path-speed.md).
   * Undefined once acked; else the refusal `send` met (no queue), not acked:
   * the caller refuses the message, and its `rejected` record follows this
   * one in the chain — the last record about a message id is its outcome.
   * While `destination` is held (full: hold.ts), one after the other as
   * before: most of its publishes are Held again, and a record written
   * beside each would be a `routed` record per retry.
   */
  async sendAndSettle(
    session: Session,
    message: ConsumeMessage,
    started: number,
    decision: RouteDecision & { result: 'routed' | 'forwarded' },
    destination: string,
    send: () => Promise<Refusal | undefined>,
  ): Promise<Refusal | undefined> {
    if (session.holds.holding(destination)) {
      const refused = await send();
      if (refused === undefined) await this.settle(session, message, started, decision);
      return refused;
    }
    const [sent, audited] = await Promise.allSettled([send(), this.audit(this.#record(message, decision))]);
    // A publish that did not complete is the message's fate (held or dead-lettered); then a missing record.
    if (sent.status === 'rejected') throw sent.reason;
    if (sent.value !== undefined) return sent.value;
    if (audited.status === 'rejected') throw audited.reason;
    this.#acked(session, message, started, decision);
    return undefined;
  }

  /** The audit record of a route decision, naming the trace the message belongs to (`dmr trace` links to it). */
  #record(message: ConsumeMessage, decision: RouteDecision): Omit<AuditEvent, 'node'> {
    const traceId = traceIdFor(message);
    return { kind: 'route', ...decision, ...(traceId === undefined ? {} : { traceId }) };
  }

  /** After the record is stored: the ack, then the metrics and the decision log line (the record's fields, never payload). */
  #acked(session: Session, message: ConsumeMessage, started: number, decision: RouteDecision, detail?: string): void {
    session.acks.ack(message);
    hopSettled(decision);
    const seconds = (performance.now() - started) / 1000;
    if (decision.result === 'routed') this.#metrics.routed.inc();
    else if (decision.result === 'rejected') this.#metrics.rejected.inc({ reason: decision.reason ?? 'UNKNOWN' });
    this.#metrics.routeSeconds.observe(seconds);
    const line = {
      ...decision,
      ...(detail === undefined ? {} : { detail }),
      // The path so far and this node: names only, never payload.
      hops: [...(decision.hops ?? []), this.#nodeId],
      ms: Math.round(seconds * 100_000) / 100,
    };
    // A refusal's decision line is its delivery.failed event: still one line per message.
    if (decision.result === 'rejected') this.failedDelivery(decision, line, 'route');
    else this.#logger.info(line, 'route');
  }

  /** Whether `sender` gets a report: a local client with a queue here and not denied. */
  reportable(context: RoutingContext, sender: string | undefined): sender is string {
    return sender !== undefined && context.localQueues.has(sender) && !context.message.denied.has(sender);
  }

  /**
   * A report to local client `to`, about the delivery `about`. A full queue (nacked) is no loss: Held under the
   * sender's queue key, so `about` stays unacked and is tried again with the deliveries waiting for that queue.
   * 'returned' (the sender's queue is gone) is counted as lost: no retry can make it deliverable.
   */
  async sendReport(
    session: Session,
    to: string,
    report: DeliveryReport,
    now: number,
    about: ConsumeMessage,
  ): Promise<PublishOutcome> {
    const key = recipientKey(to);
    this.#holdReport(session, key, about, to);
    const body = Buffer.from(JSON.stringify(report), 'utf8');
    const outcome = await this.publish(
      session,
      DELIVERY_EXCHANGE,
      to,
      body,
      reportOptions(report, this.#nodeId, now, to),
    );
    if (outcome === 'nacked') {
      this.#metrics.reports.inc({ kind: `${report.status}-held` });
      throw new Held(key, 'report', `the queue of ${to} is full: a report waits for it`);
    }
    this.#metrics.reports.inc({ kind: outcome === 'confirmed' ? report.status : `${report.status}-lost` });
    return outcome;
  }

  /** Held without a publish while `key` is held and `about` is not its probe: it waits behind the older ones. */
  #holdReport(session: Session, key: string, about: ConsumeMessage, to: string): void {
    if (session.holds.blocks(key, about)) throw new Held(key, 'report', `a report to ${to} waits for a full queue`);
  }

  /**
   * Publishes `message` (signed for the mesh in `options`) to the outbound
   * queue of `nextHop` (through the default exchange, mandatory, confirmed).
   * A nack (the queue is full) or a return (no such queue yet) is no
   * refusal: the message is Held for that link alone, so the pressure
   * reaches the publishers while the other destinations keep flowing.
   * Undefined when the queue took it, else the refusal to settle with.
   */
  async forward(
    session: Session,
    message: ConsumeMessage,
    nextHop: string,
    options: Options.Publish,
  ): Promise<Refusal | undefined> {
    const key = linkKey(nextHop);
    if (session.holds.blocks(key, message)) throw new Held(key, 'link', `the link to ${nextHop} is full`);
    const queue = outboundQueueName(nextHop);
    const outcome = await this.publish(session, DEFAULT_EXCHANGE, queue, message.content, options);
    if (outcome === 'unencodable') {
      const detail = 'a property of the message cannot be encoded again for forwarding';
      return { reason: 'MESSAGE_UNENCODABLE', detail };
    }
    if (outcome !== 'confirmed')
      throw new Held(key, 'link', `the link to ${nextHop} did not take the message (${outcome})`);
    return undefined;
  }

  /**
   * A report to client `to` wherever it is homed: to its queue here, as any
   * local report; else as a mesh message of this node's own (meshReport,
   * signed as origin), routed toward its home node like any message. A
   * full queue on the way (the sender's, or the link's outbound queue) is
   * Held: `about`, the delivery the report is about, stays unacked and is
   * tried again (hold.ts). A report that cannot be sent at all (no route,
   * denied) is logged and counted as lost: retrying it in a loop would not
   * make it deliverable.
   */
  async report(
    session: Session,
    context: RoutingContext,
    mesh: MeshContext | undefined,
    to: string,
    report: DeliveryReport,
    now: number,
    about: ConsumeMessage,
  ): Promise<PublishOutcome | 'unroutable'> {
    if (context.message.denied.has(to)) return 'unroutable';
    if (context.localQueues.has(to)) return this.sendReport(session, to, report, now, about);
    const home = context.message.directory.get(to)?.homeNode;
    const hop = home === undefined || home === this.#nodeId ? undefined : mesh?.routes.nextHop(home);
    if (mesh === undefined || hop === undefined || !hop.ok) {
      this.#metrics.reports.inc({ kind: `${report.status}-lost` });
      this.#logger.warn(
        { messageId: report.messageId, to, detail: hop?.ok === false ? hop.detail : 'no home node to route to' },
        'report not routable',
      );
      return 'unroutable';
    }
    const key = linkKey(hop.nextHop);
    this.#holdReport(session, key, about, to);
    const at = new Date(now);
    const message = meshReport({
      to,
      refusedId: report.messageId,
      body: Buffer.from(JSON.stringify(report), 'utf8'),
      now: at,
    });
    const { properties } = message;
    const options: Options.Publish = {
      messageId: properties.messageId,
      type: properties.type,
      timestamp: properties.timestamp,
      contentType: properties.contentType,
      ...(properties.correlationId === undefined ? {} : { correlationId: properties.correlationId }),
      headers: { ...properties.headers, ...mesh.signer.originate(message, this.#nodeId, hop.nextHop, at) },
      persistent: true,
      mandatory: true,
      userId: mesh.userId,
    };
    const outcome = await this.publish(
      session,
      DEFAULT_EXCHANGE,
      outboundQueueName(hop.nextHop),
      message.content,
      options,
    );
    if (outcome === 'nacked' || outcome === 'returned') {
      // As a forward (forward()): a full outbound queue, or none yet, waits for the link.
      this.#metrics.reports.inc({ kind: `${report.status}-held` });
      throw new Held(key, 'report', `the link to ${hop.nextHop} did not take a report (${outcome})`);
    }
    this.#metrics.reports.inc({ kind: outcome === 'confirmed' ? `${report.status}-mesh` : `${report.status}-lost` });
    return outcome;
  }

  async audit(event: Omit<AuditEvent, 'node'>): Promise<void> {
    const audit = this.#auditSink;
    if (audit === undefined) return;
    try {
      await audit.append({ ...event, node: this.#nodeId });
    } catch (error) {
      throw new Transient('audit', 'the audit record was not stored', { cause: error });
    }
    hopEvent('audit');
  }

  /**
   * Publishes and waits for the broker's answer; throws when the channel
   * closed meanwhile. A traced delivery's hop span goes along as the
   * `traceparent`, and marks the publish and its confirm.
   */
  async publish(
    session: Session,
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
  ): Promise<PublishOutcome> {
    hopEvent('publish', { 'messaging.destination.name': exchange === '' ? routingKey : exchange });
    const outcome = await this.#publish(session, exchange, routingKey, content, traceHeaders(options));
    hopEvent('confirm', { outcome });
    return outcome;
  }

  #publish(
    session: Session,
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
  ): Promise<PublishOutcome> {
    return new Promise<PublishOutcome>((resolve, reject) => {
      if (!session.alive) {
        reject(new Transient('broker', 'the broker connection is gone'));
        return;
      }
      const key = returnKey(exchange, routingKey, options.messageId);
      try {
        session.channel.publish(exchange, routingKey, content, options, (error: unknown) => {
          // A mandatory message without a queue is returned first, then confirmed (AMQP 0-9-1).
          const returned = session.returned.delete(key);
          if (error === null || error === undefined) resolve(returned ? 'returned' : 'confirmed');
          else if (error instanceof Error && error.message === 'message nacked') resolve('nacked');
          else reject(new Transient('broker', 'the channel closed before the confirm', { cause: error }));
        });
      } catch (error) {
        // amqplib throws before writing anything when it cannot encode the message; the channel is fine.
        if (session.alive) {
          this.#logger.warn({ error: error instanceof Error ? error.message : String(error) }, 'unencodable');
          resolve('unencodable');
        } else reject(new Transient('broker', 'publish failed', { cause: error }));
      }
    });
  }
}
