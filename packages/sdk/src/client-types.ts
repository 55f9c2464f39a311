/**
 * The client's public types that its parts (connection.ts, sending.ts,
 * receiving.ts) share: the options of DmrClient.connect(), the connection
 * state, the events and the counters.
 */
import type { EventEmitter } from 'node:events';
import type { BackoffOptions } from '@dmr/core';
import type { DedupOptions } from './dedup.js';
import type { EnrolledIdentity } from './enrolment.js';
import type { ReceivedDeliveryReport as DeliveryReport } from '@dmr/contract';
import type { TlsOptions } from './tls.js';

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
  /**
   * Automatic certificate renewal at ~2/3 of its lifetime through CentOps' mTLS API. With `enrolUrl`, a
   * certificate that already expired (the client was down) is renewed on CentOps' enrolment listener with a
   * proof of its key, within CentOps' grace period (decision 0030).
   */
  renew?: { apiUrl: string; enrolUrl?: string; timeoutMs?: number };
  /**
   * Checks peer certificates for end-to-end protection. Default: the CN is the
   * peer id, the chain is valid now and chains to `tls.ca`. Plug in a check
   * against the CentOps directory, CRL and denylist here.
   */
  checkCertificate?: CertificateCheck;
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

/** Every counter at zero: a new client's (and a test's) starting point. */
export function zeroClientStats(): ClientStats {
  return {
    confirmed: 0,
    resent: 0,
    handled: 0,
    duplicates: 0,
    reports: 0,
    misaddressed: 0,
    replayReportsSuppressed: 0,
    reconnects: 0,
  };
}

/** The emitter the parts report through: the DmrClient itself. */
export type ClientEvents = EventEmitter<DmrClientEvents>;

/** Background failures are emitted only when someone listens: an unhandled `error` event would crash the application. */
export function emitError(events: ClientEvents, error: Error): void {
  if (events.listenerCount('error') > 0) events.emit('error', error);
}
