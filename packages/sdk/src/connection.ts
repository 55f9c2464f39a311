/**
 * The client's connection to its home node: the state machine, the
 * connection loop that keeps itself up (exponential back-off with jitter),
 * the certificate in use and its renewal.
 *
 * A Session is one AMQP connection with its two channels; the loop opens a
 * new one after each loss and hands it to `prepare` (the receiver consumes
 * again, unconfirmed sends go out again) before it counts as open. The
 * broker is pinned: besides the chain and the host name, it must present
 * `spiffe://<td>/node/<node>` (`checkServer`).
 */
import {
  connect as amqpConnect,
  credentials,
  type ChannelModel,
  type Channel,
  type ConfirmChannel,
  type ConsumeMessage,
} from 'amqplib';
import { AckBatcher, DmrError, isDmrError, reconnectLoop } from '@dmr/core';
import type { CheckServerIdentity } from '@dmr/pki';
import { checkPeerCertificate, describeCertificate } from './certificates.js';
import {
  emitError,
  type ClientEvents,
  type ClientState,
  type ClientStats,
  type ConnectOptions,
} from './client-types.js';
import { renewCertificate, renewalDelayMs, type EnrolledIdentity } from './enrolment.js';
import type { TlsPem } from './tls.js';
import { nodeVhost } from './wire.js';

export interface Session {
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

/** Longest setTimeout delay (2^31 − 1 ms ≈ 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

export interface ConnectionParts {
  options: ConnectOptions;
  tls: TlsPem;
  /** Pins the broker of `node` in this client's trust domain. */
  checkServer: CheckServerIdentity;
  /** `user_id` of every message: the certificate's SPIFFE id, the user the broker logged this client in as. */
  userId: string;
  events: ClientEvents;
  stats: ClientStats;
  /** Runs on every new session before it is used: consume again, publish what is unconfirmed. */
  prepare: (session: Session) => Promise<void>;
}

/** What sending and receiving use of the connection: narrow, so each part can be tested with a stand-in. */
export type ConnectionView = Pick<
  Connection,
  'id' | 'node' | 'userId' | 'state' | 'session' | 'checkCertificate' | 'ownKeys'
>;

export class Connection {
  readonly id: string;
  readonly node: string;
  readonly vhost: string;
  readonly userId: string;
  readonly #options: ConnectOptions;
  readonly #url: URL;
  #tls: TlsPem;
  readonly #checkServer: CheckServerIdentity;
  readonly #events: ClientEvents;
  readonly #stats: ClientStats;
  readonly #prepare: (session: Session) => Promise<void>;
  /** Keys this client renewed away from, until their certificate expires (end-to-end decryption). */
  #previousKeys: Array<{ key: string; until: number }> = [];
  #state: ClientState = 'connecting';
  #session: Session | undefined;
  #sessionSeq = 0;
  readonly #stopping = new AbortController();
  #loop: Promise<void> | undefined;
  #renewTimer: NodeJS.Timeout | undefined;

  constructor(parts: ConnectionParts) {
    const options = parts.options;
    this.#checkServer = parts.checkServer;
    this.#options = options;
    this.id = options.id;
    this.userId = parts.userId;
    this.node = options.node;
    this.vhost = options.vhost ?? nodeVhost(options.node);
    this.#url = new URL(options.url);
    this.#tls = parts.tls;
    this.#events = parts.events;
    this.#stats = parts.stats;
    this.#prepare = parts.prepare;
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The session in use, if any (it may have died since; check `alive`). */
  get session(): Session | undefined {
    return this.#session;
  }

  /** The certificate chain in use (it changes after a renewal). */
  get certificatePem(): string {
    return this.#tls.cert;
  }

  /** This client's decryption keys: the current one, then those it renewed away from whose certificate is still valid. */
  ownKeys(): string[] {
    const now = Date.now();
    this.#previousKeys = this.#previousKeys.filter((previous) => previous.until > now);
    return [this.#tls.key, ...this.#previousKeys.map((previous) => previous.key)];
  }

  async checkCertificate(pem: string, id: string, use: 'encrypt' | 'verify'): Promise<void> {
    const check = this.#options.checkCertificate;
    if (check !== undefined) await check(pem, { id, use });
    else checkPeerCertificate(pem, id, this.#tls.ca);
  }

  #emitError(error: Error): void {
    emitError(this.#events, error);
  }

  // ---- connection lifecycle ------------------------------------------------------------------------

  async start(): Promise<void> {
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
      // The receiver consumes again and what is unconfirmed goes out again before the session is used.
      await this.#prepare(session);
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
    this.#events.emit('state', state, previous);
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
        ...(renew.enrolUrl === undefined ? {} : { enrolUrl: renew.enrolUrl }),
        current: this.#tls,
        ...(renew.timeoutMs === undefined ? {} : { timeoutMs: renew.timeoutMs }),
      });
      // Senders may encrypt for the previous certificate until they see the new one: keep its key while it is valid.
      this.#previousKeys.push({ key: this.#tls.key, until: describeCertificate(this.#tls.cert).notAfter.getTime() });
      this.#tls = { cert: identity.chainPem, key: identity.keyPem, ca: identity.trustBundlePem };
      this.#events.emit('renewed', identity);
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

  /** No renewal from now on (close() starts with it). */
  stopRenewal(): void {
    clearTimeout(this.#renewTimer);
  }

  /** Ends the connection loop and closes the session; the state becomes `closed`. */
  async stop(): Promise<void> {
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
