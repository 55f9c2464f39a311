/**
 * DmrClient: a DMR client's connection to its home node (DESIGN.md
 * "Message contract"), over AMQPS with its client certificate (EXTERNAL).
 *
 * - send(): publishes to `dmr.ingress` with the contract's properties and
 *   resolves only on the broker's publisher confirm. Unconfirmed sends
 *   survive a connection loss: they are published again, with the same
 *   message id, once the client has reconnected.
 * - receive(): consumes `dmr.client.<id>`, hands each message id to the
 *   handler once (DedupWindow), acks after the handler resolved; delivery
 *   reports become `report` events instead. A message or report whose
 *   `dmr-recipient` is not this client's id never reaches the handler or a
 *   `report` listener: it is dead-lettered (MESSAGE_MISADDRESSED).
 * - The connection keeps itself up: exponential back-off with jitter,
 *   re-subscription, `state` events. close() drains.
 * - The broker is pinned: besides the chain and the host name, it must
 *   present `spiffe://<td>/node/<node>` (the node certificate its agent
 *   installed), `<td>` being the trust domain of the client's own
 *   certificate. Another node's broker, or anything else the mesh CA
 *   certified, is refused with SERVER_IDENTITY_MISMATCH.
 *
 * Background failures (a reconnect attempt, a malformed or tampered message,
 * a failed renewal) are emitted as `error` events only when someone listens:
 * an unhandled `error` event would crash the application, which a transient
 * broker outage must never do.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  connect as amqpConnect,
  credentials,
  type ChannelModel,
  type Channel,
  type ConfirmChannel,
  type ConsumeMessage,
  type Options,
} from 'amqplib';
import { AckBatcher, DmrError, isDmrError, isValidId, reconnectLoop, spiffeId, type BackoffOptions } from '@dmr/core';
import { brokerServerCheck, type CheckServerIdentity } from '@dmr/pki';
import { checkPeerCertificate, describeCertificate } from './certificates.js';
import { DedupWindow, type DedupOptions } from './dedup.js';
import { renewCertificate, renewalDelayMs, type EnrolledIdentity } from './enrolment.js';
import { listOf } from './list.js';
import {
  PROTECTED_CONTENT_TYPE,
  protectPayload,
  protectionStage,
  unprotectPayload,
  type PrivateKeyInput,
} from './protect.js';
import { DELIVERY_REPORT_TYPE, parseDeliveryReport, type DeliveryReport } from './report.js';
import { loadTls, type TlsOptions, type TlsPem } from './tls.js';

/** The exchange every client publishes to (the only thing it may write). */
export const INGRESS_EXCHANGE = 'dmr.ingress';
export const CONTRACT_VERSION = 1;
/** Headers the client sets. */
export const RECIPIENT_HEADER = 'dmr-recipient';
export const VERSION_HEADER = 'dmr-version';
/** Headers only DMR sets (a client setting one is refused with HEADER_RESERVED). */
export const SENDER_HEADER = 'dmr-sender';
export const ORIGIN_HEADER = 'dmr-origin';
export const HOPS_HEADER = 'dmr-hops';
export const SIGNATURE_HEADER = 'dmr-sig';
const RESERVED_HEADERS: readonly string[] = [SENDER_HEADER, ORIGIN_HEADER, HOPS_HEADER, SIGNATURE_HEADER];

/** The queue a client reads. */
export function clientQueue(id: string): string {
  return `dmr.client.${id}`;
}

/** The vhost of a DMR node. */
export function nodeVhost(node: string): string {
  return `dmr-${node}`;
}

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Checks a peer's certificate before it is used for end-to-end protection; throw to refuse it. */
export type CertificateCheck = (
  certificatePem: string,
  peer: { id: string; use: 'encrypt' | 'verify' },
) => void | Promise<void>;

export interface ConnectOptions {
  /** `amqps://host:port` of the node's broker (only AMQPS: DMR has no plain listener). */
  url: string;
  /** The node id: the vhost is `dmr-<node>`. */
  node: string;
  /**
   * This client's id: the certificate's CN and the id in its SPIFFE id
   * (`spiffe://<trust domain>/client/<id>`, which is also `user_id` of every
   * message), the queue `dmr.client.<id>`.
   */
  id: string;
  tls: TlsOptions;
  /**
   * TLS server name (SNI and host name check); default the URL's host. The
   * broker must also present the SPIFFE id `spiffe://<td>/node/<node>`.
   */
  servername?: string;
  /** Overrides the vhost derived from `node`. */
  vhost?: string;
  heartbeatSeconds?: number;
  /** Per connection attempt (default 10 s). */
  connectTimeoutMs?: number;
  /** Reconnect back-off (default 100 ms doubling to 30 s, with jitter). */
  backoff?: BackoffOptions;
  /** The receive-side dedup window (see DedupWindow). */
  dedup?: DedupOptions;
  /**
   * An unconfirmed send is published again after each reconnect; after this
   * many connections lost before its confirm it fails (default 10), so one
   * message that breaks the channel cannot loop forever.
   */
  maxSendAttempts?: number;
  /** Automatic certificate renewal at ~2/3 of its lifetime through CentOps' mTLS API. */
  renew?: { apiUrl: string; timeoutMs?: number };
  /**
   * Checks peer certificates for end-to-end protection. Default: the CN is the
   * peer id, the chain is valid now and chains to `tls.ca`. Plug in a check
   * against the CentOps directory, CRL and denylist here.
   */
  checkCertificate?: CertificateCheck;
}

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
  /** Extra headers (e.g. `traceparent`); `dmr-*` DMR headers are refused. */
  headers?: Record<string, string | number | boolean>;
  /** Default `application/json` for objects, `text/plain; charset=utf-8` for strings, else none. */
  contentType?: string;
  /** End-to-end protection: sign with the sender's key, encrypt for the recipient's certificate. */
  protect?: { signWith: PrivateKeyInput; encryptFor: string };
}

export interface Hop {
  node: string;
  at: string;
}

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

export interface DmrClientEvents {
  state: [state: ClientState, previous: ClientState];
  report: [report: DeliveryReport];
  /** A message id whose copy was acked without calling the handler. */
  duplicate: [messageId: string];
  /** A background failure; never emitted without a listener. */
  error: [error: Error];
  /** The certificate was renewed: persist `identity.keyPem`/`chainPem` to keep using them after a restart. */
  renewed: [identity: EnrolledIdentity];
}

export interface ClientStats {
  /** Sends the broker confirmed. */
  confirmed: number;
  /** Publishes of an unconfirmed send again after a reconnect. */
  resent: number;
  /** Messages handed to the handler (handler succeeded). */
  handled: number;
  /** Copies acked without calling the handler (dedup). */
  duplicates: number;
  /** Delivery reports emitted. */
  reports: number;
  /** Messages and reports whose dmr-recipient was not this client: dead-lettered unhandled (MESSAGE_MISADDRESSED). */
  misaddressed: number;
  /** MESSAGE_REPLAYED reports about this client's own re-sends, not emitted (the node had the first copy). */
  replayReportsSuppressed: number;
  /** Connections lost (each followed by reconnect attempts). */
  reconnects: number;
}

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

interface Session {
  seq: number;
  connection: ChannelModel;
  publisher: ConfirmChannel;
  consumer: Channel;
  /** Every delivery of `consumer` is settled through it: acks of one turn go out as one frame when they can. */
  acks: AckBatcher<ConsumeMessage>;
  alive: boolean;
  closed: Promise<void>;
  consumerTag: string | undefined;
}

interface Receiver {
  handler: MessageHandler;
  options: ReceiveOptions;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function headerString(headers: Record<string, unknown>, name: string): string | undefined {
  const value = headers[name];
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

function parseHops(text: string | undefined): Hop[] {
  if (text === undefined) return [];
  try {
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed)) return [];
    return parsed
      .filter(isRecord)
      .filter((hop) => typeof hop.node === 'string' && typeof hop.at === 'string')
      .map((hop) => ({ node: hop.node as string, at: hop.at as string }));
  } catch {
    return [];
  }
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

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

/** Longest setTimeout delay (2^31 − 1 ms ≈ 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

export class DmrClient extends EventEmitter<DmrClientEvents> {
  readonly id: string;
  readonly node: string;
  readonly vhost: string;
  readonly #options: ConnectOptions;
  /** `user_id` of every message: the certificate's SPIFFE id, the user the broker logged this client in as. */
  readonly #userId: string;
  readonly #url: URL;
  #tls: TlsPem;
  /** Pins the broker of `node` in this client's trust domain. */
  readonly #checkServer: CheckServerIdentity;
  /** Keys this client renewed away from, until their certificate expires (end-to-end decryption). */
  #previousKeys: Array<{ key: string; until: number }> = [];
  #state: ClientState = 'connecting';
  #session: Session | undefined;
  #sessionSeq = 0;
  readonly #pending = new Map<string, PendingSend>();
  /** Ids published again after a reconnect: the node may report them as MESSAGE_REPLAYED (its earlier copy won). */
  readonly #resent = new DedupWindow({ windowMs: 3_600_000, maxEntries: 100_000 });
  readonly #dedup: DedupWindow;
  /** Ids whose handler is running: a concurrent copy waits for its outcome instead of running twice. */
  readonly #inflight = new Map<string, Promise<boolean>>();
  readonly #handlers = new Set<Promise<void>>();
  #receiver: Receiver | undefined;
  readonly #stopping = new AbortController();
  #loop: Promise<void> | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;
  readonly #stats: ClientStats = {
    confirmed: 0,
    resent: 0,
    handled: 0,
    duplicates: 0,
    reports: 0,
    misaddressed: 0,
    replayReportsSuppressed: 0,
    reconnects: 0,
  };

  private constructor(options: ConnectOptions, tls: TlsPem, checkServer: CheckServerIdentity, userId: string) {
    super();
    this.#checkServer = checkServer;
    this.#options = options;
    this.id = options.id;
    this.#userId = userId;
    this.node = options.node;
    this.vhost = options.vhost ?? nodeVhost(options.node);
    this.#url = new URL(options.url);
    this.#tls = tls;
    this.#dedup = new DedupWindow(options.dedup);
  }

  /**
   * Connects and resolves once the first connection is open; a failure of the
   * first attempt rejects (NODE_UNREACHABLE: a wrong URL or certificate should
   * fail loudly, not retry forever). Later losses reconnect by themselves.
   */
  static async connect(options: ConnectOptions): Promise<DmrClient> {
    if (!isValidId(options.id)) throw new DmrError('INVALID_ID', `"${options.id}" is not a valid client id`);
    if (!isValidId(options.node)) throw new DmrError('INVALID_ID', `"${options.node}" is not a valid node id`);
    const url = new URL(options.url);
    if (url.protocol !== 'amqps:') {
      throw new DmrError('INVALID_ARGUMENT', `url must be amqps://host:port, not ${url.protocol}//`, {
        hint: 'DMR nodes accept only TLS connections with a client certificate',
      });
    }
    const tls = await loadTls(options.tls);
    const certificate = describeCertificate(tls.cert);
    if (certificate.id !== options.id) {
      // RabbitMQ would close the channel (406) on the first send: say why now.
      throw new DmrError(
        'INVALID_ARGUMENT',
        `the certificate is for ${certificate.id ?? '(no CN)'}, not ${options.id}`,
      );
    }
    if (certificate.trustDomain === undefined) {
      throw new DmrError('CERTIFICATE_INVALID', `the certificate of ${options.id} has no SPIFFE id`, {
        hint: 'use the certificate CentOps issued to this client: its trust domain says which brokers to trust',
      });
    }
    // The broker logs the certificate in as its SPIFFE id and accepts no other user_id.
    const userId = spiffeId(certificate.trustDomain, 'client', options.id);
    if (certificate.spiffeId !== userId) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `the certificate's SPIFFE id is ${certificate.spiffeId ?? '(none)'}, not that of client ${options.id}`,
        { hint: 'connect with the client certificate CentOps issued for this id (kind client)' },
      );
    }
    const client = new DmrClient(options, tls, brokerServerCheck(certificate.trustDomain, options.node), userId);
    await client.#start();
    return client;
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The certificate chain in use (it changes after a renewal). */
  get certificatePem(): string {
    return this.#tls.cert;
  }

  /** Counters since connect (a copy: for logs and metrics). */
  get stats(): ClientStats {
    return { ...this.#stats };
  }

  /** Sends not confirmed yet (published or waiting for a connection). */
  get unconfirmed(): number {
    return this.#pending.size;
  }

  // ---- sending -------------------------------------------------------------------------------------

  /** Publishes a message; resolves with its id once the node's broker confirmed it (persisted). */
  async send(options: SendOptions): Promise<string> {
    if (this.#closing !== undefined || this.#state === 'closed') {
      throw new DmrError('CLIENT_CLOSED', 'send() after close()');
    }
    if (!isValidId(options.to)) throw new DmrError('INVALID_ID', `"${options.to}" is not a valid recipient id`);
    if (typeof options.type !== 'string' || options.type === '')
      throw new DmrError('INVALID_ARGUMENT', 'type is required');
    const id = options.messageId ?? randomUUID();
    if (!UUID.test(id)) throw new DmrError('INVALID_ARGUMENT', 'messageId must be a UUID');
    if (this.#pending.has(id)) throw new DmrError('INVALID_ARGUMENT', `message ${id} is already being sent`);
    if (options.ttl !== undefined && (!Number.isInteger(options.ttl) || options.ttl < 0)) {
      throw new DmrError('INVALID_ARGUMENT', 'ttl must be a whole number of milliseconds');
    }
    const headers = Object.create(null) as Record<string, unknown>;
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      if (RESERVED_HEADERS.includes(name) || name === RECIPIENT_HEADER || name === VERSION_HEADER) {
        throw new DmrError('INVALID_ARGUMENT', `header ${name} is set by the SDK or by DMR`);
      }
      headers[name] = value;
    }
    headers[RECIPIENT_HEADER] = options.to;
    headers[VERSION_HEADER] = CONTRACT_VERSION;
    let { content, contentType } = encodeBody(options.body, options.contentType);
    if (options.protect !== undefined) {
      await this.#checkCertificate(options.protect.encryptFor, options.to, 'encrypt');
      content = await protectPayload(
        content,
        { id, from: this.id, to: options.to, type: options.type },
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
      userId: this.#userId,
      type: options.type,
      headers,
      ...(contentType === undefined ? {} : { contentType }),
    };
    if (this.#closing !== undefined) throw new DmrError('CLIENT_CLOSED', 'close() was called during send()');
    return new Promise<string>((resolve, reject) => {
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
      const session = this.#session;
      if (session?.alive === true) this.#publish(session, pending);
      // Otherwise the next session publishes it.
    });
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
          pending.reject(
            new DmrError('MESSAGE_NOT_ACCEPTED', `the node did not accept message ${pending.id} (negative confirm)`, {
              details: { messageId: pending.id },
              hint: 'the ingress queue is full or the broker failed; send again later with the same messageId',
            }),
          );
        }
        // Anything else is the channel closing: the message stays pending and goes out again after the reconnect.
      });
    } catch {
      // The channel is closing: the reconnect publishes it again.
    }
  }

  // ---- receiving -----------------------------------------------------------------------------------

  /** Consumes this client's queue; see ReceiveOptions. One receiver per client. */
  async receive(handler: MessageHandler, options: ReceiveOptions = {}): Promise<Subscription> {
    if (this.#closing !== undefined || this.#state === 'closed') {
      throw new DmrError('CLIENT_CLOSED', 'receive() after close()');
    }
    if (this.#receiver !== undefined) throw new DmrError('INVALID_ARGUMENT', 'this client is already receiving');
    const receiver: Receiver = { handler, options };
    this.#receiver = receiver;
    const session = this.#session;
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
    const session = this.#session;
    if (session?.alive === true && session.consumerTag !== undefined) {
      const tag = session.consumerTag;
      session.consumerTag = undefined;
      await session.consumer.cancel(tag).catch(() => undefined);
    }
    await Promise.allSettled([...this.#handlers]);
    // The handlers' acks would otherwise wait for the next turn: cancel() promises they are settled.
    const current = this.#session;
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
        const decryptWith = [...listOf(unprotect.decryptWith), ...this.#ownKeys()];
        // The current sender certificate first; an earlier one is checked and tried only for a message the
        // current one does not verify (signed just before a renewal).
        const open = async (fresh: boolean): Promise<Buffer> =>
          unprotectPayload(message.content, binding, {
            decryptWith,
            senderCertificate: listOf(await unprotect.verifySender(received.from, { fresh })),
            checkSender: (pem) => this.#checkCertificate(pem, received.from, 'verify'),
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
    this.emit('duplicate', id);
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
      this.#resent.has(report.messageId, Date.now())
    ) {
      this.#stats.replayReportsSuppressed += 1;
      return;
    }
    this.#stats.reports += 1;
    this.emit('report', report);
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
      redelivered: message.fields.redelivered,
      protected: false,
    };
  }

  /** This client's decryption keys: the current one, then those it renewed away from whose certificate is still valid. */
  #ownKeys(): string[] {
    const now = Date.now();
    this.#previousKeys = this.#previousKeys.filter((previous) => previous.until > now);
    return [this.#tls.key, ...this.#previousKeys.map((previous) => previous.key)];
  }

  async #checkCertificate(pem: string, id: string, use: 'encrypt' | 'verify'): Promise<void> {
    const check = this.#options.checkCertificate;
    if (check !== undefined) await check(pem, { id, use });
    else checkPeerCertificate(pem, id, this.#tls.ca);
  }

  #emitError(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  // ---- connection lifecycle ------------------------------------------------------------------------

  async #start(): Promise<void> {
    let first: Session;
    try {
      first = await this.#open();
    } catch (error) {
      this.#setState('closed');
      throw this.#unreachable(error);
    }
    this.#setState('open');
    this.#loop = this.#run(first);
    this.#scheduleRenewal();
  }

  #unreachable(error: unknown): DmrError {
    if (isDmrError(error)) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new DmrError(
      'NODE_UNREACHABLE',
      `cannot connect to ${this.#url.host} (vhost ${this.vhost}) as ${this.id}: ${message}`,
      {
        details: { host: this.#url.host, vhost: this.vhost, id: this.id },
        hint: 'check the URL, that the certificate is current and issued by the mesh CA, and that the client is active on this node',
        cause: error,
      },
    );
  }

  #run(first: Session): Promise<void> {
    return reconnectLoop<Session>({
      first,
      signal: this.#stopping.signal,
      ...(this.#options.backoff === undefined ? {} : { backoff: this.#options.backoff }),
      open: () => this.#open(),
      closed: (session) => session.closed,
      drop: (session) => this.#drop(session),
      onOpen: () => this.#setState('open'),
      onOpenFailed: (error) => this.#emitError(this.#unreachable(error)),
      onLost: () => {
        this.#stats.reconnects += 1;
        this.#setState('reconnecting');
      },
    });
  }

  async #open(): Promise<Session> {
    const tls = this.#tls;
    const port = this.#url.port === '' ? 5671 : Number(this.#url.port);
    const connection = await amqpConnect(
      {
        protocol: 'amqps',
        hostname: this.#url.hostname,
        port,
        vhost: this.vhost,
        heartbeat: this.#options.heartbeatSeconds ?? 30,
      },
      {
        credentials: credentials.external(),
        // Without it, Nagle's algorithm holds back the small handshake frames (≈56 ms instead of ≈10 ms).
        noDelay: true,
        timeout: this.#options.connectTimeoutMs ?? 10_000,
        servername: this.#options.servername ?? this.#url.hostname,
        checkServerIdentity: this.#checkServer,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
      },
    );
    try {
      const publisher = await connection.createConfirmChannel();
      const consumer = await connection.createChannel();
      let markClosed: () => void = () => undefined;
      const session: Session = {
        seq: ++this.#sessionSeq,
        connection,
        publisher,
        consumer,
        acks: new AckBatcher<ConsumeMessage>(consumer),
        alive: true,
        closed: new Promise<void>((resolve) => (markClosed = resolve)),
        consumerTag: undefined,
      };
      const lost = (): void => {
        if (!session.alive) return;
        session.alive = false;
        session.acks.discard();
        markClosed();
        // One channel alone cannot be trusted to recover the other: drop the whole connection.
        void connection.close().catch(() => undefined);
      };
      // 'error' is always followed by 'close'; listening keeps it from becoming an uncaught exception.
      connection.on('error', (error: Error) => this.#emitError(this.#unreachable(error)));
      publisher.on('error', (error: Error) => this.#emitError(this.#unreachable(error)));
      consumer.on('error', (error: Error) => this.#emitError(this.#unreachable(error)));
      connection.on('close', lost);
      publisher.on('close', lost);
      consumer.on('close', lost);
      this.#session = session;
      if (this.#receiver !== undefined) await this.#consume(session, this.#receiver);
      // Everything unconfirmed goes out again, in the order it was sent, with its original id.
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
      return session;
    } catch (error) {
      if (this.#session?.connection === connection) this.#session = undefined;
      await connection.close().catch(() => undefined);
      throw error;
    }
  }

  #drop(session: Session): void {
    session.alive = false;
    if (this.#session === session) this.#session = undefined;
    void session.connection.close().catch(() => undefined);
  }

  #setState(state: ClientState): void {
    const previous = this.#state;
    if (previous === state || previous === 'closed') return;
    this.#state = state;
    this.emit('state', state, previous);
  }

  // ---- certificate renewal -------------------------------------------------------------------------

  #scheduleRenewal(delayMs?: number): void {
    const renew = this.#options.renew;
    if (renew === undefined || this.#stopping.signal.aborted) return;
    const info = describeCertificate(this.#tls.cert);
    const delay = delayMs ?? renewalDelayMs(info.notBefore, info.notAfter, new Date());
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => void this.renewNow().catch(() => undefined), Math.min(delay, MAX_TIMER_MS));
    this.#renewTimer.unref();
  }

  /**
   * Renews the certificate now (normally automatic at ~2/3 of its lifetime
   * when connected with `renew`): new key and CSR, POST
   * /v1/certificates/renew with the current certificate, then a reconnect
   * with the new one. Unconfirmed sends go out again on the new connection.
   */
  async renewNow(): Promise<EnrolledIdentity> {
    const renew = this.#options.renew;
    if (renew === undefined) throw new DmrError('INVALID_ARGUMENT', 'the client was connected without renew options');
    try {
      const identity = await renewCertificate({
        apiUrl: renew.apiUrl,
        current: this.#tls,
        ...(renew.timeoutMs === undefined ? {} : { timeoutMs: renew.timeoutMs }),
      });
      // Senders may encrypt for the previous certificate until they see the new one: keep its key while it is valid.
      this.#previousKeys.push({ key: this.#tls.key, until: describeCertificate(this.#tls.cert).notAfter.getTime() });
      this.#tls = { cert: identity.chainPem, key: identity.keyPem, ca: identity.trustBundlePem };
      this.emit('renewed', identity);
      // The next connection presents the new certificate; messages in flight are re-sent or redelivered.
      const session = this.#session;
      if (session !== undefined) void session.connection.close().catch(() => undefined);
      this.#scheduleRenewal();
      return identity;
    } catch (error) {
      this.#emitError(error instanceof Error ? error : new Error(String(error)));
      const info = describeCertificate(this.#tls.cert);
      const left = info.notAfter.getTime() - Date.now();
      // Retry well before expiry: a tenth of what is left, at least 1 s, at most 10 min.
      this.#scheduleRenewal(Math.max(1_000, Math.min(600_000, left / 10)));
      throw error;
    }
  }

  // ---- closing -------------------------------------------------------------------------------------

  /**
   * Stops receiving, waits for running handlers and for unconfirmed sends
   * (up to `drainTimeoutMs`, default 10 s; still unconfirmed then: rejected
   * with CLIENT_CLOSED), then closes the connection. Idempotent.
   */
  close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#close(options.drainTimeoutMs ?? 10_000);
    return this.#closing;
  }

  async #close(drainTimeoutMs: number): Promise<void> {
    clearTimeout(this.#renewTimer);
    this.#receiver = undefined;
    await this.#cancelConsumer();
    const deadline = Date.now() + drainTimeoutMs;
    while (this.#pending.size > 0 && Date.now() < deadline) await sleep(20);
    for (const pending of this.#pending.values()) {
      pending.reject(new DmrError('CLIENT_CLOSED', `message ${pending.id} was not confirmed before close()`));
    }
    this.#pending.clear();
    this.#stopping.abort();
    const session = this.#session;
    // Its 'close' event ends the session, which lets the connection loop finish.
    if (session !== undefined) {
      if (session.alive) session.acks.flush();
      await session.connection.close().catch(() => undefined);
    }
    await this.#loop;
    this.#setState('closed');
  }
}
