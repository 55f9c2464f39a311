/**
 * Sending: send() publishes to `dmr.ingress` with the contract's properties
 * (and, when asked, an end-to-end protected body) and resolves only on the
 * broker's publisher confirm. Unconfirmed sends survive a connection loss:
 * they are published again, with the same message id, once the client has
 * reconnected (resend()), up to `maxSendAttempts` connections.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Options } from 'amqplib';
import { DmrError, edgeTraceContext, isValidId, validTraceparent } from '@dmr/core';
import { TRACEPARENT_HEADER } from '@dmr/contract';
import type { ClientStats, ConnectOptions } from './client-types.js';
import type { ConnectionView, Session } from './connection.js';
import { DedupWindow } from './dedup.js';
import { PROTECTED_CONTENT_TYPE, protectPayload, type PrivateKeyInput } from './protect.js';
import {
  CONTRACT_VERSION,
  INGRESS_EXCHANGE,
  RECIPIENT_HEADER,
  RESERVED_HEADERS,
  UUID,
  VERSION_HEADER,
} from './wire.js';

export interface SendOptions {
  /** Recipient client id (header `dmr-recipient`). */
  to: string;
  /** Message type (property `type`), e.g. `ChatMessage`; `dmr.*` is reserved. */
  type: string;
  /** Payload: bytes, or a string (UTF-8), or any other value (JSON). */
  body: Buffer | Uint8Array | string | object;
  /** Time to live in ms (property `expiration`), capped by the node (limits.maxTtlMs). */
  ttl?: number;
  /** UUID; default a new v4. Reuse one to make a retry idempotent. */
  messageId?: string;
  /** Extra headers (e.g. a W3C version 00 `traceparent`, checked); `dmr-*` DMR headers are refused. */
  headers?: Record<string, string | number | boolean>;
  /** Default `application/json` for objects, `text/plain; charset=utf-8` for strings, else none. */
  contentType?: string;
  /** End-to-end protection: sign with the sender's key, encrypt for the recipient's certificate. */
  protect?: { signWith: PrivateKeyInput; encryptFor: string };
}

/**
 * The retry-after hint of a refused publish: long enough for a router to
 * settle a window of held messages (hold.ts backs off up to 2 s), short
 * enough that a sender is not idle long after the ingress drains.
 */
export const NACK_RETRY_AFTER_SECONDS = 1;

interface PendingSend {
  id: string;
  content: Buffer;
  options: Options.Publish;
  resolve: (id: string) => void;
  reject: (error: Error) => void;
  /** Session number of the latest publish; confirms of older sessions are ignored. */
  publishedIn: number;
  attempts: number;
  /** When send() was called (ms): the TTL counts from here, across re-sends. */
  createdAt: number;
  ttl: number | undefined;
}

/** A send under way, and what it sends (before protection): a second send of its id must send the same. */
interface Underway {
  promise: Promise<string>;
  to: string;
  type: string;
  content: Buffer;
}

function encodeBody(
  body: SendOptions['body'],
  contentType: string | undefined,
): { content: Buffer; contentType: string | undefined } {
  if (Buffer.isBuffer(body)) return { content: body, contentType };
  if (body instanceof Uint8Array) return { content: Buffer.from(body), contentType };
  if (typeof body === 'string')
    return { content: Buffer.from(body, 'utf8'), contentType: contentType ?? 'text/plain; charset=utf-8' };
  return { content: Buffer.from(JSON.stringify(body), 'utf8'), contentType: contentType ?? 'application/json' };
}

export class Sending {
  readonly #connection: ConnectionView;
  readonly #options: ConnectOptions;
  readonly #stats: ClientStats;
  /** close() was called: no new sends. */
  readonly #closing: () => boolean;
  readonly #pending = new Map<string, PendingSend>();
  /** Every send under way, by message id: a second send of the same message joins it (#join). */
  readonly #underway = new Map<string, Underway>();
  /** Ids published again after a reconnect: the node may report them as MESSAGE_REPLAYED (its earlier copy won). */
  readonly #resent = new DedupWindow({ windowMs: 3_600_000, maxEntries: 100_000 });

  constructor(connection: ConnectionView, options: ConnectOptions, stats: ClientStats, closing: () => boolean) {
    this.#connection = connection;
    this.#options = options;
    this.#stats = stats;
    this.#closing = closing;
  }

  /** Sends not confirmed yet (published or waiting for a connection). */
  get unconfirmed(): number {
    return this.#pending.size;
  }

  /** This client published `messageId` again after a reconnect (within the last hour). */
  wasResent(messageId: string, now: number): boolean {
    return this.#resent.has(messageId, now);
  }

  /** Publishes a message; resolves with its id once the node's broker confirmed it (persisted). */
  async send(options: SendOptions): Promise<string> {
    if (this.#closing() || this.#connection.state === 'closed') {
      throw new DmrError('CLIENT_CLOSED', 'send() after close()');
    }
    if (!isValidId(options.to)) throw new DmrError('INVALID_ID', `"${options.to}" is not a valid recipient id`);
    if (typeof options.type !== 'string' || options.type === '')
      throw new DmrError('INVALID_ARGUMENT', 'type is required');
    const id = options.messageId ?? randomUUID();
    if (!UUID.test(id)) throw new DmrError('INVALID_ARGUMENT', 'messageId must be a UUID');
    let { content, contentType } = encodeBody(options.body, options.contentType);
    const underway = this.#join(id, options.to, options.type, content);
    if (underway !== undefined) return underway;
    if (options.ttl !== undefined && (!Number.isInteger(options.ttl) || options.ttl < 0)) {
      throw new DmrError('INVALID_ARGUMENT', 'ttl must be a whole number of milliseconds');
    }
    const headers = Object.create(null) as Record<string, unknown>;
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      if (
        (RESERVED_HEADERS as readonly string[]).includes(name) ||
        name === RECIPIENT_HEADER ||
        name === VERSION_HEADER
      ) {
        throw new DmrError('INVALID_ARGUMENT', `header ${name} is set by the SDK or by DMR`);
      }
      // The router drops a traceparent that is not W3C version 00; say so here rather than lose the trace silently.
      if (name === TRACEPARENT_HEADER && validTraceparent(value) === undefined) {
        throw new DmrError('INVALID_ARGUMENT', 'header traceparent is not a W3C version 00 traceparent', {
          hint: 'use 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, lowercase, ids not all zeros',
        });
      }
      headers[name] = value;
    }
    // The edge starts the trace (decision 0032): the application's active OpenTelemetry span when it runs one
    // (whichever copy of @opentelemetry/api registered it), else a new sampled trace; a given one was checked above.
    if (headers[TRACEPARENT_HEADER] === undefined) {
      const edge = edgeTraceContext({});
      headers[TRACEPARENT_HEADER] = edge.traceparent;
      if (edge.tracestate !== undefined && headers.tracestate === undefined) headers.tracestate = edge.tracestate;
    }
    headers[RECIPIENT_HEADER] = options.to;
    headers[VERSION_HEADER] = CONTRACT_VERSION;
    const plain = content;
    if (options.protect !== undefined) {
      await this.#connection.checkCertificate(options.protect.encryptFor, options.to, 'encrypt');
      content = await protectPayload(
        content,
        { id, from: this.#connection.id, to: options.to, type: options.type },
        options.protect,
      );
      // The body is JOSE now; the application's own content type rides along in a header (not secret, not signed).
      headers['dmr-e2e-content-type'] = contentType ?? '';
      contentType = PROTECTED_CONTENT_TYPE;
    }
    // timestamp and expiration are set per publish (#publish).
    const publish: Options.Publish = {
      persistent: true,
      messageId: id,
      userId: this.#connection.userId,
      type: options.type,
      headers,
      ...(contentType === undefined ? {} : { contentType }),
    };
    if (this.#closing()) throw new DmrError('CLIENT_CLOSED', 'close() was called during send()');
    const joined = this.#join(id, options.to, options.type, plain);
    if (joined !== undefined) return joined;
    const sending = new Promise<string>((resolve, reject) => {
      const pending: PendingSend = {
        id,
        content,
        options: publish,
        resolve,
        reject,
        publishedIn: 0,
        attempts: 0,
        createdAt: Date.now(),
        ttl: options.ttl,
      };
      this.#pending.set(id, pending);
      const session = this.#connection.session;
      if (session?.alive === true) this.#publish(session, pending);
      // Otherwise the next session publishes it.
    });
    this.#underway.set(id, { promise: sending, to: options.to, type: options.type, content: plain });
    const settled = (): void => void this.#underway.delete(id);
    sending.then(settled, settled);
    return sending;
  }

  /**
   * The id is the idempotency key: a second send of an id still under way (an HTTP bridge's caller retrying a 503
   * while the first copy waits for its confirm) joins that send instead of failing or publishing twice. Only a
   * retry of the SAME message joins: another recipient, type or body under the id is refused, never answered with
   * the first message's confirm.
   */
  #join(id: string, to: string, type: string, content: Buffer): Promise<string> | undefined {
    const underway = this.#underway.get(id);
    if (underway === undefined) return undefined;
    if (underway.to !== to || underway.type !== type || !underway.content.equals(content)) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `message ${id} is already being sent with another recipient, type or body`,
        {
          details: { messageId: id },
          hint: 'a retry reuses the id with the same message; a different message needs a new id',
        },
      );
    }
    return underway.promise;
  }

  #publish(session: Session, pending: PendingSend): void {
    const now = Date.now();
    // A re-send after an outage carries the time of this publish (the node refuses a timestamp older than its
    // skew limit) and only what is left of the TTL: the message must not outlive what the sender asked for.
    const left = pending.ttl === undefined ? undefined : pending.ttl - (now - pending.createdAt);
    if (left !== undefined && pending.attempts > 0 && left <= 0) {
      this.#pending.delete(pending.id);
      pending.reject(
        new DmrError('MESSAGE_EXPIRED', `message ${pending.id} expired before it could be sent again`, {
          details: { messageId: pending.id, ttl: pending.ttl },
        }),
      );
      return;
    }
    pending.options.timestamp = Math.floor(now / 1000);
    if (left !== undefined) pending.options.expiration = String(Math.max(0, left));
    pending.publishedIn = session.seq;
    pending.attempts += 1;
    if (pending.attempts > 1) {
      this.#resent.record(pending.id, Date.now());
      this.#stats.resent += 1;
    }
    try {
      session.publisher.publish(INGRESS_EXCHANGE, '', pending.content, pending.options, (error: unknown) => {
        // A confirm (or the channel's death) for an older publish of a message that was published again since.
        if (pending.publishedIn !== session.seq || this.#pending.get(pending.id) !== pending) return;
        if (error === null || error === undefined) {
          this.#pending.delete(pending.id);
          this.#stats.confirmed += 1;
          pending.resolve(pending.id);
        } else if (error instanceof Error && error.message === 'message nacked') {
          this.#pending.delete(pending.id);
          // The broker refused to store it: the node's ingress is at its bound (DMR slowing its senders down,
          // docs/decisions/0028) or the queue failed. Nothing was taken, so the same send may succeed later.
          pending.reject(
            new DmrError('MESSAGE_NOT_ACCEPTED', `the node did not accept message ${pending.id} (negative confirm)`, {
              details: { messageId: pending.id, retryAfterSeconds: NACK_RETRY_AFTER_SECONDS },
              hint: `the node's ingress is full (DMR is slowing senders down): send again in ${NACK_RETRY_AFTER_SECONDS} s or more, with the same messageId`,
            }),
          );
        }
        // Anything else is the channel closing: the message stays pending and goes out again after the reconnect.
      });
    } catch {
      // The channel is closing: the reconnect publishes it again.
    }
  }

  /** A new session: everything unconfirmed goes out again, in the order it was sent, with its original id. */
  resend(session: Session): void {
    for (const pending of [...this.#pending.values()]) {
      // A send() that ran while this session was being set up already went out on it.
      if (pending.publishedIn === session.seq) continue;
      const limit = this.#options.maxSendAttempts ?? 10;
      if (pending.attempts >= limit) {
        this.#pending.delete(pending.id);
        pending.reject(
          new DmrError('MESSAGE_NOT_ACCEPTED', `message ${pending.id} was not confirmed in ${limit} connections`, {
            details: { messageId: pending.id },
          }),
        );
        continue;
      }
      this.#publish(session, pending);
    }
  }

  /** Waits for unconfirmed sends until `deadline` (ms since the epoch); what is still unconfirmed then is rejected with CLIENT_CLOSED. */
  async drain(deadline: number): Promise<void> {
    while (this.#pending.size > 0 && Date.now() < deadline) await sleep(20);
    for (const pending of this.#pending.values()) {
      pending.reject(new DmrError('CLIENT_CLOSED', `message ${pending.id} was not confirmed before close()`));
    }
    this.#pending.clear();
  }
}
