/**
 * The node's HTTPS client for CentOps: enrolment on the enrolment listener
 * (server-authenticated TLS only: the node has no certificate yet), and
 * everything else on the API with mutual TLS as the node. The client
 * certificate can be swapped after a renewal without a restart: each
 * identity gets its own https.Agent, and only new requests use the new one.
 *
 * Enrolment and renewal are @dmr/pki's enrolment client (the one the SDK
 * uses too); this class only supplies the URLs and the node's agent.
 *
 * Every connection pins CentOps' identity, `spiffe://<trustDomain>/centops/api`
 * (the run configuration's `centops.trustDomain`), on top of the chain and the
 * host name: another node's certificate from the same CA cannot stand in for
 * CentOps, neither for enrolment (the token) nor for the feed (configuration,
 * CRL, policy bundles) or the status reports.
 *
 * Errors: a server that is not CentOps is SERVER_IDENTITY_MISMATCH; an
 * unreachable CentOps is CENTOPS_UNREACHABLE; an error answer
 * becomes a DmrError with CentOps' own code (the catalogue is shared) so the
 * caller can tell a refused token from an outage.
 */
import { request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { DmrError, readSse, type SseEvent } from '@dmr/core';
import {
  CentOpsAgent,
  centOpsError,
  centOpsServerCheck,
  centOpsUnreachable,
  isServerIdentityMismatch,
  requestEnrolment,
  requestRenewal,
  type CheckServerIdentity,
  type IssuedCertificateResponse,
} from '@dmr/pki';

export type { IssuedCertificateResponse } from '@dmr/pki';

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

export interface NodeStatusReport {
  appliedRevision: number | null;
  refused?: { revision: number; reason: string } | null;
  policyRevision?: string | null;
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

const STREAM_IDLE_MS = 45_000;

export interface RequestOptions {
  method?: 'GET' | 'PUT' | 'POST';
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
  readonly #caPem: string;
  readonly #checkServer: CheckServerIdentity;
  #agent: CentOpsAgent | undefined;

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
    this.#caPem = options.caPem;
    this.#checkServer = centOpsServerCheck(options.trustDomain);
    if (options.identity) this.setIdentity(options.identity);
  }

  /** Uses `identity` for every later request; requests and streams under way keep the old one. */
  setIdentity(identity: TlsIdentity): void {
    const old = this.#agent;
    this.#agent = new CentOpsAgent({
      caPem: this.#caPem,
      certPem: identity.chainPem,
      keyPem: identity.privateKeyPem,
      trustDomain: this.trustDomain,
    });
    // Idle sockets of the old identity must not be reused; busy ones finish on their own.
    old?.destroy();
  }

  close(): void {
    this.#agent?.destroy();
    this.#agent = undefined;
  }

  #send(url: string, agent: CentOpsAgent | false, options: RequestOptions): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const body = options.body === undefined ? undefined : JSON.stringify(options.body);
      const request = httpsRequest(
        url,
        {
          method: options.method ?? 'GET',
          agent,
          ...(agent === false ? { ca: this.#caPem, checkServerIdentity: this.#checkServer } : {}),
          headers: {
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            ...options.headers,
          },
          ...(options.signal ? { signal: options.signal } : {}),
        },
        resolve,
      );
      if (options.timeoutMs !== undefined) {
        request.setTimeout(options.timeoutMs, () => request.destroy(new Error(`no answer in ${options.timeoutMs} ms`)));
      }
      request.on('error', (error) =>
        reject(options.signal?.aborted || isServerIdentityMismatch(error) ? error : centOpsUnreachable(url, error)),
      );
      request.end(body);
    });
  }

  async #call(base: string, path: string, agent: CentOpsAgent | false, options: RequestOptions): Promise<HttpAnswer> {
    const url = `${base}${path}`;
    const response = await this.#send(url, agent, options);
    let body: Buffer;
    try {
      body = await readBody(response);
    } catch (error) {
      throw centOpsUnreachable(url, error);
    }
    return { status: response.statusCode ?? 0, headers: response.headers, body };
  }

  #requireAgent(): CentOpsAgent {
    if (this.#agent === undefined) {
      throw new DmrError('INTERNAL', 'the node has no certificate yet: enrol first');
    }
    return this.#agent;
  }

  /** A call on the mutual-TLS API as the node. */
  api(path: string, options: RequestOptions = {}): Promise<HttpAnswer> {
    return this.#call(this.apiUrl, path, this.#requireAgent(), { timeoutMs: 30_000, ...options });
  }

  /** Enrolment: the body carries the token and the CSR only; the private key never leaves the node. */
  async enrol(token: string, csrPem: string): Promise<IssuedCertificateResponse> {
    return requestEnrolment({
      enrolUrl: this.enrolUrl,
      token,
      csrPem,
      caPem: this.#caPem,
      trustDomain: this.trustDomain,
    });
  }

  /** Renewal as the node's current identity (the agent's keep-alive agent). */
  async renew(csrPem: string): Promise<IssuedCertificateResponse> {
    return requestRenewal({ apiUrl: this.apiUrl, csrPem, tls: { agent: this.#requireAgent() } });
  }

  async crl(): Promise<string> {
    const answer = await this.api('/v1/pki/crl');
    if (answer.status !== 200) throw errorFromAnswer(answer, 'CRL download');
    return answer.body.toString('utf8');
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
    const answer = await this.api(`/v1/nodes/${nodeId}/config?wait=${waitSeconds}`, {
      headers: known === undefined ? {} : { 'if-none-match': `"${known}"` },
      timeoutMs: (waitSeconds + 15) * 1000,
      ...(signal ? { signal } : {}),
    });
    if (answer.status === 304) return undefined;
    if (answer.status !== 200) throw errorFromAnswer(answer, 'configuration download');
    const etag = String(answer.headers.etag ?? '')
      .replace(/^W\//, '')
      .replace(/"/g, '');
    return { revision: Number(etag), jws: answer.body.toString('utf8') };
  }

  /** The policy bundle archive at `path` (the document's `policy.bundle`). */
  async bundle(path: string): Promise<Buffer> {
    const answer = await this.api(path.startsWith('/') ? path : `/${path}`);
    if (answer.status !== 200) throw errorFromAnswer(answer, 'policy bundle download');
    return answer.body;
  }

  async putStatus(nodeId: string, report: NodeStatusReport): Promise<void> {
    const answer = await this.api(`/v1/nodes/${nodeId}/status`, { method: 'PUT', body: report });
    if (answer.status !== 200) throw errorFromAnswer(answer, 'status report');
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
    const url = `${this.apiUrl}/v1/nodes/${nodeId}/config/stream`;
    const response = await this.#send(url, this.#requireAgent(), {
      headers: { accept: 'text/event-stream' },
      signal,
      // CentOps sends a heartbeat every 15 s: silence for three of them is a dead (half-open) connection.
      timeoutMs: STREAM_IDLE_MS,
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
