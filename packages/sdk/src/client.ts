/**
 * DmrClient: a DMR client's connection to its home node (docs/contract.md
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
 *
 * The class is the public surface; the work is done by its parts, one file
 * per concept: connection.ts (state machine, reconnect, renewal), sending.ts
 * (publish, confirms, protection), receiving.ts (consume, reports,
 * misaddressed dead-lettering).
 */
import { EventEmitter } from 'node:events';
import { DmrError, isValidId, spiffeId } from '@dmr/core';
import { brokerServerCheck, type CheckServerIdentity } from '@dmr/pki';
import { describeCertificate } from './certificates.js';
import {
  zeroClientStats,
  type ClientState,
  type ClientStats,
  type ConnectOptions,
  type DmrClientEvents,
} from './client-types.js';
import { Connection, type Session } from './connection.js';
import type { EnrolledIdentity } from './enrolment.js';
import { Receiving, type MessageHandler, type ReceiveOptions, type Subscription } from './receiving.js';
import { Sending, type SendOptions } from './sending.js';
import { loadTls, type TlsPem } from './tls.js';

export type { CertificateCheck, ClientState, ClientStats, ConnectOptions, DmrClientEvents } from './client-types.js';
export type {
  ErrorOutcome,
  MessageHandler,
  ReceivedMessage,
  ReceiveOptions,
  SenderCertificates,
  Subscription,
} from './receiving.js';
export type { SendOptions } from './sending.js';
export * from './contract-names.js';

export class DmrClient extends EventEmitter<DmrClientEvents> {
  readonly id: string;
  readonly node: string;
  readonly vhost: string;
  readonly #connection: Connection;
  readonly #sending: Sending;
  readonly #receiving: Receiving;
  #closing: Promise<void> | undefined;
  readonly #stats: ClientStats = zeroClientStats();

  private constructor(options: ConnectOptions, tls: TlsPem, checkServer: CheckServerIdentity, userId: string) {
    super();
    const closing = (): boolean => this.#closing !== undefined;
    this.#connection = new Connection({
      options,
      tls,
      checkServer,
      userId,
      events: this,
      stats: this.#stats,
      prepare: (session) => this.#prepare(session),
    });
    this.#sending = new Sending(this.#connection, options, this.#stats, closing);
    this.#receiving = new Receiving({
      connection: this.#connection,
      sending: this.#sending,
      options,
      events: this,
      stats: this.#stats,
      closing,
    });
    this.id = this.#connection.id;
    this.node = this.#connection.node;
    this.vhost = this.#connection.vhost;
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
    await client.#connection.start();
    return client;
  }

  get state(): ClientState {
    return this.#connection.state;
  }

  /** The certificate chain in use (it changes after a renewal). */
  get certificatePem(): string {
    return this.#connection.certificatePem;
  }

  /** Counters since connect (a copy: for logs and metrics). */
  get stats(): ClientStats {
    return { ...this.#stats };
  }

  /** Sends not confirmed yet (published or waiting for a connection). */
  get unconfirmed(): number {
    return this.#sending.unconfirmed;
  }

  /** Publishes a message; resolves with its id once the node's broker confirmed it (persisted). */
  send(options: SendOptions): Promise<string> {
    return this.#sending.send(options);
  }

  /** Consumes this client's queue; see ReceiveOptions. One receiver per client. */
  receive(handler: MessageHandler, options: ReceiveOptions = {}): Promise<Subscription> {
    return this.#receiving.receive(handler, options);
  }

  /**
   * Renews the certificate now (normally automatic at ~2/3 of its lifetime
   * when connected with `renew`): new key and CSR, POST
   * /v1/certificates/renew with the current certificate, then a reconnect
   * with the new one. Unconfirmed sends go out again on the new connection.
   */
  renewNow(): Promise<EnrolledIdentity> {
    return this.#connection.renewNow();
  }

  /** Every new session: the receiver consumes again, then everything unconfirmed is published again. */
  async #prepare(session: Session): Promise<void> {
    await this.#receiving.resume(session);
    this.#sending.resend(session);
  }

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
    this.#connection.stopRenewal();
    await this.#receiving.stop();
    await this.#sending.drain(Date.now() + drainTimeoutMs);
    await this.#connection.stop();
  }
}
