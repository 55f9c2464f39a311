/**
 * The node agent's side of CentOps: the one CentOps client
 * (@dmr/centops-client) with the node's keep-alive connections, plus the
 * configuration feed's SSE stream. Enrolment goes to the enrolment listener
 * (server-authenticated TLS only: the node has no certificate yet),
 * everything else to the API with mutual TLS as the node. The client
 * certificate can be swapped after a renewal without a restart: only new
 * requests use the new one.
 *
 * Every connection pins CentOps' identity, `spiffe://<trustDomain>/centops/api`
 * (the run configuration's `centops.trustDomain`): another node's
 * certificate from the same CA cannot stand in for CentOps, neither for
 * enrolment (the token) nor for the feed (configuration, CRL, policy
 * bundles) or the status reports. A server that is not CentOps is
 * SERVER_IDENTITY_MISMATCH; an unreachable CentOps is CENTOPS_UNREACHABLE; an
 * error answer becomes a DmrError with CentOps' own code, so the caller can
 * tell a refused token from an outage.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import {
  CentOpsClient as SharedCentOpsClient,
  type HttpMethod,
  type IssuedCertificateResponse,
} from '@dmr/centops-client';
import type { NodeStatusReport } from '@dmr/contract';
import { DmrError, readSse, type DmrEvent, type SseEvent } from '@dmr/core';
import { centOpsError, centOpsUnreachable } from '@dmr/pki';

export type { IssuedCertificateResponse } from '@dmr/centops-client';
export type { NodeStatusReport } from '@dmr/contract';

export interface TlsIdentity {
  /** Leaf then intermediate(s). */
  chainPem: string;
  privateKeyPem: string;
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

// The feed's event shape is @dmr/core's, where the one SSE parser lives.
export type { SseEvent };

/** The DmrError a CentOps error answer stands for; its own code when it is one of ours. */
export function errorFromAnswer(answer: HttpAnswer, what: string): DmrError {
  return centOpsError(answer, what);
}

function readBody(response: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on('data', (chunk: Buffer) => chunks.push(chunk));
    response.on('end', () => resolve(Buffer.concat(chunks)));
    response.on('error', reject);
  });
}

// CentOps sends a heartbeat every 15 s: silence for three of them is a dead (half-open) connection.
const STREAM_IDLE_MS = 45_000;

export interface RequestOptions {
  method?: HttpMethod;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Gives up (CENTOPS_UNREACHABLE) when no answer arrived by then. */
  timeoutMs?: number;
}

export class CentOpsClient {
  readonly apiUrl: string;
  readonly enrolUrl: string;
  readonly trustDomain: string;
  readonly #client: SharedCentOpsClient;

  constructor(options: {
    apiUrl: string;
    enrolUrl: string;
    caPem: string;
    /** The mesh's trust domain: CentOps must present `spiffe://<trustDomain>/centops/api`. */
    trustDomain: string;
    identity?: TlsIdentity;
  }) {
    this.apiUrl = options.apiUrl;
    this.enrolUrl = options.enrolUrl;
    this.trustDomain = options.trustDomain;
    this.#client = new SharedCentOpsClient({
      apiUrl: options.apiUrl,
      enrolUrl: options.enrolUrl,
      caPem: options.caPem,
      trustDomain: options.trustDomain,
      keepAlive: true,
      ...(options.identity === undefined
        ? {}
        : { identity: { certPem: options.identity.chainPem, keyPem: options.identity.privateKeyPem } }),
    });
  }

  /** Uses `identity` for every later request; requests and streams under way keep the old one. */
  setIdentity(identity: TlsIdentity): void {
    this.#client.setIdentity({ certPem: identity.chainPem, keyPem: identity.privateKeyPem });
  }

  close(): void {
    this.#client.close();
  }

  #requireIdentity(): SharedCentOpsClient {
    if (!this.#client.hasIdentity) throw new DmrError('INTERNAL', 'the node has no certificate yet: enrol first');
    return this.#client;
  }

  /** A call on the mutual-TLS API as the node. */
  api(path: string, options: RequestOptions = {}): Promise<HttpAnswer> {
    return this.#requireIdentity().request(options.method ?? 'GET', path, {
      headers: { accept: '*/*', ...options.headers },
      ...(options.body === undefined ? {} : { body: options.body }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    });
  }

  /** Enrolment: the body carries the token and the CSR only; the private key never leaves the node. */
  async enrol(token: string, csrPem: string): Promise<IssuedCertificateResponse> {
    return this.#client.enrol(token, csrPem);
  }

  /** Renewal as the node's current identity (the agent's keep-alive agent). */
  async renew(csrPem: string): Promise<IssuedCertificateResponse> {
    return this.#requireIdentity().renew(csrPem);
  }

  /** Grace renewal of an expired certificate: a proof signed with its key, on the enrolment listener. */
  async renewExpired(csrPem: string): Promise<IssuedCertificateResponse> {
    return this.#requireIdentity().renewExpired(csrPem);
  }

  async crl(): Promise<string> {
    return this.#requireIdentity().crl();
  }

  /**
   * One long-poll: the document if CentOps has a revision other than
   * `known`, undefined on 304 (nothing new within `waitSeconds`).
   */
  async config(
    nodeId: string,
    known: number | undefined,
    waitSeconds: number,
    signal?: AbortSignal,
  ): Promise<{ revision: number; jws: string } | undefined> {
    return this.#requireIdentity().nodeConfig(nodeId, known, waitSeconds, signal);
  }

  /** The policy bundle archive at `path` (the document's `policy.bundle`). */
  async bundle(path: string): Promise<Buffer> {
    return this.#requireIdentity().policyBundle(path);
  }

  async putStatus(nodeId: string, report: NodeStatusReport): Promise<void> {
    return this.#requireIdentity().putNodeStatus(nodeId, report);
  }

  /** One of the node's events, appended to CentOps' audit log (docs/events.md). */
  async postEvent(nodeId: string, event: DmrEvent): Promise<void> {
    return this.#requireIdentity().postNodeEvent(nodeId, event);
  }

  /**
   * Opens the SSE stream and calls `onEvent` for each event until the
   * stream ends (resolves) or fails (rejects). `onOpen` fires once the
   * server accepted the stream. Abort `signal` to close it.
   */
  async stream(
    nodeId: string,
    onEvent: (event: SseEvent) => void,
    signal: AbortSignal,
    onOpen?: () => void,
  ): Promise<void> {
    const path = `/v1/nodes/${nodeId}/config/stream`;
    const url = `${this.apiUrl}${path}`;
    const response = await this.#requireIdentity().open(path, {
      headers: { accept: 'text/event-stream' },
      signal,
      idleTimeoutMs: STREAM_IDLE_MS,
    });
    if (response.statusCode !== 200) {
      const body = await readBody(response).catch(() => Buffer.alloc(0));
      throw errorFromAnswer({ status: response.statusCode ?? 0, headers: response.headers, body }, 'config stream');
    }
    onOpen?.();
    await readSse(response, onEvent).catch((error: unknown) => {
      if (!signal.aborted) throw centOpsUnreachable(url, error);
    });
  }
}
