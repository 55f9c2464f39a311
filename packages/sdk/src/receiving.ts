/**
 * Receiving: consumes `dmr.client.<id>`, hands each message id to the
 * handler once (DedupWindow), acks after the handler resolved; delivery
 * reports become `report` events instead. A message or report whose
 * `dmr-recipient` is not this client's id never reaches the handler or a
 * `report` listener: it is dead-lettered (MESSAGE_MISADDRESSED). Protected
 * bodies are verified and decrypted before the handler sees them.
 */
import type { ConsumeMessage } from 'amqplib';
import { DmrError, isDmrError, isValidId, validTraceparent } from '@dmr/core';
import { emitError, type ClientEvents, type ClientStats, type ConnectOptions } from './client-types.js';
import type { ConnectionView, Session } from './connection.js';
import { DedupWindow } from './dedup.js';
import { listOf } from './list.js';
import { PROTECTED_CONTENT_TYPE, protectionStage, unprotectPayload, type PrivateKeyInput } from './protect.js';
import {
  DELIVERY_REPORT_TYPE,
  TRACEPARENT_HEADER,
  parseDeliveryReport,
  type ReceivedDeliveryReport as DeliveryReport,
} from '@dmr/contract';
import type { Sending } from './sending.js';
import {
  HOPS_HEADER,
  ORIGIN_HEADER,
  RECIPIENT_HEADER,
  SENDER_HEADER,
  UUID,
  clientQueue,
  headerString,
  isRecord,
  parseHops,
  type Hop,
} from './wire.js';

export interface ReceivedMessage {
  /** The message id (idempotency key end to end). */
  id: string;
  /** The authenticated sender (header `dmr-sender`, set by the origin node). */
  from: string;
  /** This client (header `dmr-recipient`). */
  to: string;
  type: string;
  /** The payload; decrypted and verified when it was protected and receive() has `unprotect`. */
  body: Buffer;
  contentType: string | undefined;
  /** The sender's `timestamp` (whole seconds). */
  sentAt: Date;
  /** The origin node (header `dmr-origin`). */
  origin: string;
  /** Nodes the message passed, with times (header `dmr-hops`). */
  hops: Hop[];
  /** Every header as delivered, DMR's included. */
  headers: Record<string, unknown>;
  /** The W3C trace context to continue (header `traceparent`), only when it is a valid version 00 one. */
  traceparent: string | undefined;
  /** The broker delivered it before (to this or an earlier connection). */
  redelivered: boolean;
  /** The body was end-to-end protected and has been verified and decrypted. */
  protected: boolean;
}

export type MessageHandler = (message: ReceivedMessage) => void | Promise<void>;

/** What happens to a message whose handler threw. */
export type ErrorOutcome = 'requeue' | 'dead-letter';

export interface ReceiveOptions {
  /** Unacknowledged messages at a time (default 16). */
  prefetch?: number;
  /**
   * When the handler throws: `requeue` (default) hands the message back; the
   * queue's delivery limit dead-letters a message that keeps failing (the
   * sender gets DELIVERY_LIMIT_EXCEEDED). `dead-letter` dead-letters at once.
   * A function decides per failure (e.g. dead-letter a message the
   * application refuses, requeue one it could not finish because it is
   * shutting down); if it throws, the message is requeued.
   */
  onError?: ErrorOutcome | ((error: unknown, message: ReceivedMessage) => ErrorOutcome);
  /**
   * End-to-end protection. With it, every message must be protected (an
   * unprotected one is refused, so a node cannot downgrade it) unless
   * `required: false`.
   */
  unprotect?: {
    /**
     * Default: this client's own keys — the current one and those it renewed
     * away from while running (until their certificate expires), since senders
     * may still encrypt for the previous certificate for a while. Keys given
     * here are tried first, then those.
     */
    decryptWith?: PrivateKeyInput | readonly PrivateKeyInput[];
    /**
     * The certificate(s) (PEM) of a sender id: from the CentOps directory
     * (`CentOpsDirectory.verifySender`) or a local store. When a signature does
     * not verify, it is asked once more with `fresh: true` (the sender may
     * have renewed since a cached answer).
     */
    verifySender: (senderId: string, options: { fresh: boolean }) => SenderCertificates | Promise<SenderCertificates>;
    required?: boolean;
  };
}

/** One sender certificate (PEM), or several to try in order (e.g. the current and the previous). */
export type SenderCertificates = string | readonly string[];

export interface Subscription {
  /** Stops consuming; waits for handlers under way to finish and be acked. */
  cancel(): Promise<void>;
}

interface Receiver {
  handler: MessageHandler;
  options: ReceiveOptions;
}

export class Receiving {
  readonly #connection: ConnectionView;
  readonly #sending: Pick<Sending, 'wasResent'>;
  readonly #events: ClientEvents;
  readonly #stats: ClientStats;
  /** close() was called: no new receiver. */
  readonly #closing: () => boolean;
  readonly #dedup: DedupWindow;
  /** Ids whose handler is running: a concurrent copy waits for its outcome instead of running twice. */
  readonly #inflight = new Map<string, Promise<boolean>>();
  readonly #handlers = new Set<Promise<void>>();
  #receiver: Receiver | undefined;

  constructor(parts: {
    connection: ConnectionView;
    sending: Pick<Sending, 'wasResent'>;
    options: ConnectOptions;
    events: ClientEvents;
    stats: ClientStats;
    closing: () => boolean;
  }) {
    this.#connection = parts.connection;
    this.#sending = parts.sending;
    this.#events = parts.events;
    this.#stats = parts.stats;
    this.#closing = parts.closing;
    this.#dedup = new DedupWindow(parts.options.dedup);
  }

  get id(): string {
    return this.#connection.id;
  }

  get node(): string {
    return this.#connection.node;
  }

  /** A new session: the receiver, if any, consumes again. */
  async resume(session: Session): Promise<void> {
    if (this.#receiver !== undefined) await this.#consume(session, this.#receiver);
  }

  /** close(): no receiver from now on; waits for handlers under way and their acks. */
  async stop(): Promise<void> {
    this.#receiver = undefined;
    await this.#cancelConsumer();
  }

  #emitError(error: Error): void {
    emitError(this.#events, error);
  }

  /** Consumes this client's queue; see ReceiveOptions. One receiver per client. */
  async receive(handler: MessageHandler, options: ReceiveOptions = {}): Promise<Subscription> {
    if (this.#closing() || this.#connection.state === 'closed') {
      throw new DmrError('CLIENT_CLOSED', 'receive() after close()');
    }
    if (this.#receiver !== undefined) throw new DmrError('INVALID_ARGUMENT', 'this client is already receiving');
    const receiver: Receiver = { handler, options };
    this.#receiver = receiver;
    const session = this.#connection.session;
    if (session?.alive === true) {
      try {
        await this.#consume(session, receiver);
      } catch (error) {
        this.#receiver = undefined;
        throw new DmrError('NODE_UNREACHABLE', `cannot consume ${clientQueue(this.id)}: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    return {
      cancel: async () => {
        if (this.#receiver !== receiver) return;
        this.#receiver = undefined;
        await this.#cancelConsumer();
      },
    };
  }

  async #consume(session: Session, receiver: Receiver): Promise<void> {
    await session.consumer.prefetch(receiver.options.prefetch ?? 16);
    const reply = await session.consumer.consume(clientQueue(this.id), (message) => {
      if (message === null) {
        // The broker cancelled the consumer (queue deleted or node failover): a new session re-consumes.
        void session.connection.close().catch(() => undefined);
        return;
      }
      session.acks.track(message);
      const task = this.#deliver(session, receiver, message)
        .catch((error: unknown) => {
          this.#emitError(error instanceof Error ? error : new Error(String(error)));
          this.#settle(session, message, 'requeue');
        })
        .finally(() => this.#handlers.delete(task));
      this.#handlers.add(task);
    });
    session.consumerTag = reply.consumerTag;
  }

  async #cancelConsumer(): Promise<void> {
    const session = this.#connection.session;
    if (session?.alive === true && session.consumerTag !== undefined) {
      const tag = session.consumerTag;
      session.consumerTag = undefined;
      await session.consumer.cancel(tag).catch(() => undefined);
    }
    await Promise.allSettled([...this.#handlers]);
    // The handlers' acks would otherwise wait for the next turn: cancel() promises they are settled.
    const current = this.#connection.session;
    if (current?.alive === true) current.acks.flush();
  }

  #settle(session: Session, message: ConsumeMessage, outcome: 'ack' | 'requeue' | 'dead-letter'): void {
    // On a dead channel the broker requeues the delivery itself; the dedup window catches the copy if handled.
    if (!session.alive) return;
    try {
      if (outcome === 'ack') session.acks.ack(message);
      else session.acks.nack(message, outcome === 'requeue');
    } catch {
      // The channel closed between the check and the call: same as above.
    }
  }

  async #deliver(session: Session, receiver: Receiver, message: ConsumeMessage): Promise<void> {
    const properties = message.properties;
    const headers = isRecord(properties.headers) ? (properties.headers as Record<string, unknown>) : {};
    const recipient = headerString(headers, RECIPIENT_HEADER);
    if (recipient !== this.id) {
      this.#misaddressed(session, message, recipient);
      return;
    }
    if (properties.type === DELIVERY_REPORT_TYPE) {
      this.#onReport(session, message);
      return;
    }
    const received = this.#parse(message);
    if (received instanceof DmrError) {
      this.#emitError(received);
      this.#settle(session, message, 'dead-letter');
      return;
    }
    const id = received.id;
    // A copy of a message whose handler is running (prefetch > 1): wait for it rather than run the handler twice.
    const running = this.#inflight.get(id);
    if (running !== undefined && (await running)) {
      this.#duplicate(session, message, id);
      return;
    }
    if (this.#dedup.has(id, Date.now())) {
      this.#duplicate(session, message, id);
      return;
    }
    const outcome = this.#handle(receiver, message, received);
    this.#inflight.set(
      id,
      outcome.then((settled) => settled === 'ack'),
    );
    try {
      this.#settle(session, message, await outcome);
    } finally {
      this.#inflight.delete(id);
    }
  }

  async #handle(
    receiver: Receiver,
    message: ConsumeMessage,
    received: ReceivedMessage,
  ): Promise<'ack' | 'requeue' | 'dead-letter'> {
    const unprotect = receiver.options.unprotect;
    const isProtected = message.properties.contentType === PROTECTED_CONTENT_TYPE;
    if (unprotect !== undefined && (isProtected || unprotect.required !== false)) {
      try {
        if (!isProtected) {
          throw new DmrError('PROTECTION_INVALID', `message ${received.id} from ${received.from} is not protected`);
        }
        const binding = { id: received.id, from: received.from, to: this.id, type: received.type };
        const decryptWith = [...listOf(unprotect.decryptWith), ...this.#connection.ownKeys()];
        // The current sender certificate first; an earlier one is checked and tried only for a message the
        // current one does not verify (signed just before a renewal).
        const open = async (fresh: boolean): Promise<Buffer> =>
          unprotectPayload(message.content, binding, {
            decryptWith,
            senderCertificate: listOf(await unprotect.verifySender(received.from, { fresh })),
            checkSender: (pem) => this.#connection.checkCertificate(pem, received.from, 'verify'),
          });
        try {
          received.body = await open(false);
        } catch (error) {
          // A signature by a key newer than the certificate we were given: ask once more, bypassing caches.
          if (protectionStage(error) !== 'verify') throw error;
          received.body = await open(true);
        }
        const inner = headerString(received.headers, 'dmr-e2e-content-type');
        received.contentType = inner === undefined || inner === '' ? undefined : inner;
        received.protected = true;
      } catch (error) {
        // Tampered, misdirected or unverifiable: never reaches the handler; dead-lettered as evidence.
        this.#emitError(
          isDmrError(error) && error.code === 'PROTECTION_INVALID'
            ? error
            : new DmrError('PROTECTION_INVALID', `message ${received.id}: ${(error as Error).message}`, {
                cause: error,
              }),
        );
        return 'dead-letter';
      }
    }
    try {
      await receiver.handler(received);
    } catch (error) {
      return this.#onHandlerError(receiver, error, received);
    }
    this.#dedup.record(received.id, Date.now());
    this.#stats.handled += 1;
    return 'ack';
  }

  #onHandlerError(receiver: Receiver, error: unknown, received: ReceivedMessage): ErrorOutcome {
    const onError = receiver.options.onError;
    if (typeof onError !== 'function') return onError === 'dead-letter' ? 'dead-letter' : 'requeue';
    try {
      return onError(error, received) === 'dead-letter' ? 'dead-letter' : 'requeue';
    } catch (decisionError) {
      // Requeue is the outcome that loses nothing; the delivery limit still ends a message that keeps failing.
      this.#emitError(decisionError instanceof Error ? decisionError : new Error(String(decisionError)));
      return 'requeue';
    }
  }

  /**
   * Something in this client's queue that is not addressed to it (a routing flaw upstream, e.g. a `CC`
   * header the node copied, or a report without a recipient). Dead-lettering without requeue ends it at
   * once (no redelivery loop), keeps it in `dmr.client.<id>.dlq` as evidence, and gets no report: the
   * routers report only expiry and the delivery limit. Logged without payload; header values are
   * untrusted, so only well-formed ids are named.
   */
  #misaddressed(session: Session, message: ConsumeMessage, recipient: string | undefined): void {
    this.#stats.misaddressed += 1;
    const properties = message.properties;
    const headers = isRecord(properties.headers) ? (properties.headers as Record<string, unknown>) : {};
    const messageId: unknown = properties.messageId;
    const sender = headerString(headers, SENDER_HEADER);
    const report = properties.type === DELIVERY_REPORT_TYPE;
    const validRecipient = recipient !== undefined && isValidId(recipient) ? recipient : null;
    const shown =
      recipient === undefined
        ? 'no dmr-recipient'
        : validRecipient === null
          ? 'a malformed dmr-recipient'
          : `dmr-recipient ${validRecipient}`;
    this.#settle(session, message, 'dead-letter');
    this.#emitError(
      new DmrError(
        'MESSAGE_MISADDRESSED',
        `a ${report ? 'delivery report' : 'message'} in ${clientQueue(this.id)} carries ${shown}, not ${this.id}: dead-lettered unhandled`,
        {
          details: {
            messageId: typeof messageId === 'string' && UUID.test(messageId) ? messageId.toLowerCase() : null,
            recipient: validRecipient,
            sender: sender !== undefined && isValidId(sender) ? sender : null,
            report,
          },
          hint: `it stays in ${clientQueue(this.id)}.dlq as evidence; tell the operator of node ${this.node}: a message for another client reached this client's queue`,
        },
      ),
    );
  }

  #duplicate(session: Session, message: ConsumeMessage, id: string): void {
    this.#settle(session, message, 'ack');
    this.#stats.duplicates += 1;
    this.#events.emit('duplicate', id);
  }

  #onReport(session: Session, message: ConsumeMessage): void {
    let report: DeliveryReport;
    try {
      report = parseDeliveryReport(message.content);
    } catch (error) {
      this.#emitError(new DmrError('INTERNAL', `a malformed delivery report: ${(error as Error).message}`));
      this.#settle(session, message, 'dead-letter');
      return;
    }
    this.#settle(session, message, 'ack');
    // Our own re-send after a reconnect: the node had taken the first copy, so nothing was refused.
    if (
      report.reason === 'MESSAGE_REPLAYED' &&
      report.messageId !== null &&
      this.#sending.wasResent(report.messageId, Date.now())
    ) {
      this.#stats.replayReportsSuppressed += 1;
      return;
    }
    this.#stats.reports += 1;
    this.#events.emit('report', report);
  }

  #parse(message: ConsumeMessage): ReceivedMessage | DmrError {
    const properties = message.properties;
    const headers = (isRecord(properties.headers) ? properties.headers : {}) as Record<string, unknown>;
    const id = properties.messageId as unknown;
    const from = headerString(headers, SENDER_HEADER);
    const type = properties.type as unknown;
    if (typeof id !== 'string' || from === undefined || typeof type !== 'string') {
      return new DmrError(
        'MESSAGE_ID_INVALID',
        'a delivered message lacks message_id, dmr-sender or type; dead-lettered',
      );
    }
    const timestamp = properties.timestamp as unknown;
    return {
      id: id.toLowerCase(),
      from,
      // #deliver checked it: only messages for this client get here.
      to: this.id,
      type,
      body: message.content,
      contentType: typeof properties.contentType === 'string' ? properties.contentType : undefined,
      sentAt: new Date(typeof timestamp === 'number' ? timestamp * 1000 : 0),
      origin: headerString(headers, ORIGIN_HEADER) ?? '',
      hops: parseHops(headerString(headers, HOPS_HEADER)),
      headers,
      traceparent: validTraceparent(headers[TRACEPARENT_HEADER]),
      redelivered: message.fields.redelivered,
      protected: false,
    };
  }
}
