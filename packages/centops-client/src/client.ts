/**
 * The one HTTPS client for CentOps, used by the node agent, the local mesh,
 * `dmr ctl`, the SDK's certificate directory and enrolment.
 *
 * - Mutual TLS on the API (the caller's certificate), server-authenticated
 *   TLS only on the enrolment listener (the caller has no certificate yet).
 * - CentOps is verified against the caller's CA bundle only, never the
 *   system roots, and pinned to `spiffe://<trustDomain>/centops/api`
 *   (docs/decisions/0009-pinned-server-identities.md): another principal of
 *   the same CA cannot stand in for CentOps (SERVER_IDENTITY_MISMATCH).
 * - Every exchange has a deadline for the whole answer and a size cap; an
 *   outage, a refused handshake or a deadline is CENTOPS_UNREACHABLE with the
 *   socket's error as its cause.
 * - An error answer becomes the DmrError CentOps sent (the catalogue is
 *   shared); a 2xx answer that is not what the route promises is INTERNAL:
 *   answers are validated against the contract's schemas before use.
 *
 * The transport is @dmr/pki's `callCentOps`, which enrolment and renewal use
 * too; a keep-alive client (the node agent's) reuses connections through a
 * CentOpsAgent per identity. Streams (the configuration feed's SSE) come back
 * as the raw response: parsing them is the caller's.
 */
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { Static, TSchema } from '@sinclair/typebox';
import {
  MESH_STATUS_SCHEMA,
  AUDIT_WRITERS_SCHEMA,
  CHECKPOINT_LIST_SCHEMA,
  WITNESSED_CHECKPOINT_SCHEMA,
  WRITER_CHECKPOINT_SCHEMA,
  type AuditWritersBody,
  type CheckpointListBody,
  type CheckpointSubmissionBody,
  type WitnessedCheckpointBody,
  type WriterCheckpointBody,
  POLICY_VERSION_WITH_FILES_SCHEMA,
  type MeshStatus,
  type NodeStatusReport,
  type PolicyVersionWithFiles,
} from '@dmr/contract';
import { DmrError, type DmrEvent } from '@dmr/core';
import {
  CentOpsAgent,
  callCentOps,
  centOpsEndpoint,
  centOpsError,
  centOpsRequestTls,
  centOpsUnreachable,
  isServerIdentityMismatch,
  requestEnrolment,
  requestGraceRenewal,
  requestRenewal,
  type CentOpsAnswer,
  type CentOpsTls,
  type IssuedCertificateResponse,
} from '@dmr/pki';

export type { CentOpsAnswer, IssuedCertificateResponse } from '@dmr/pki';

/** A certificate chain (leaf first) and its private key, PEM. */
export interface CentOpsIdentity {
  certPem: string;
  keyPem: string;
}

export interface CentOpsClientOptions {
  /** The mutual-TLS API, e.g. `https://centops.example:8443` (a path prefix is kept). */
  apiUrl: string;
  /** The enrolment listener; needed only for `enrol`. */
  enrolUrl?: string;
  /** The roots CentOps' server certificate must chain to. */
  caPem: string;
  /** The mesh's trust domain: CentOps must present `spiffe://<trustDomain>/centops/api`. */
  trustDomain: string;
  /** The caller's certificate on the API; without one only `enrol` and unauthenticated routes work. */
  identity?: CentOpsIdentity;
  /** Reuse connections (a long-running caller); default false: one connection per request. */
  keepAlive?: boolean;
  /** Deadline of one whole answer (default 30 000 ms). */
  timeoutMs?: number;
  /** Largest answer accepted (default 16 MiB: registry listings and policy sets, not only certificates). */
  maxAnswerBytes?: number;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

export interface CentOpsRequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Call the enrolment listener instead of the API (no client certificate). */
  enrolment?: boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_ANSWER_BYTES = 16 * 1024 * 1024;

const checkers = new WeakMap<TSchema, TypeCheck<TSchema>>();

function checkerOf<S extends TSchema>(schema: S): TypeCheck<S> {
  let checker = checkers.get(schema);
  if (checker === undefined) {
    checker = TypeCompiler.Compile(schema);
    checkers.set(schema, checker);
  }
  return checker as TypeCheck<S>;
}

/** `value` if it matches `schema`; INTERNAL naming the first problem otherwise. */
export function validAnswer<S extends TSchema>(schema: S, value: unknown, what: string): Static<S> {
  const checker = checkerOf(schema);
  if (checker.Check(value)) return value;
  const first = checker.Errors(value).First();
  throw new DmrError('INTERNAL', `${what}: CentOps' answer is not what the API promises`, {
    details: { path: first?.path ?? '/', problem: first?.message ?? 'invalid' },
  });
}

function searchOf(query: CentOpsRequestOptions['query']): string {
  const entries = Object.entries(query ?? {}).filter(
    (entry): entry is [string, string | number | boolean] => entry[1] !== undefined,
  );
  if (entries.length === 0) return '';
  return `?${new URLSearchParams(entries.map(([name, value]): [string, string] => [name, String(value)])).toString()}`;
}

export class CentOpsClient {
  readonly apiUrl: string;
  readonly enrolUrl: string | undefined;
  readonly trustDomain: string;
  readonly #options: CentOpsClientOptions;
  #identity: CentOpsIdentity | undefined;
  #agent: CentOpsAgent | undefined;

  constructor(options: CentOpsClientOptions) {
    // Both checked now (https only), so a misconfigured URL fails at start rather than at the first call.
    centOpsEndpoint(options.apiUrl, '');
    if (options.enrolUrl !== undefined) centOpsEndpoint(options.enrolUrl, '');
    this.apiUrl = options.apiUrl.replace(/\/+$/, '');
    this.enrolUrl = options.enrolUrl?.replace(/\/+$/, '');
    this.trustDomain = options.trustDomain;
    this.#options = options;
    if (options.identity !== undefined) this.setIdentity(options.identity);
  }

  get hasIdentity(): boolean {
    return this.#identity !== undefined;
  }

  /** Uses `identity` for every later request (after a renewal); requests under way keep the old one. */
  setIdentity(identity: CentOpsIdentity): void {
    this.#identity = identity;
    if (this.#options.keepAlive !== true) return;
    const old = this.#agent;
    this.#agent = new CentOpsAgent({
      caPem: this.#options.caPem,
      certPem: identity.certPem,
      keyPem: identity.keyPem,
      trustDomain: this.trustDomain,
    });
    // Idle sockets of the old identity must not be reused; busy ones finish on their own.
    old?.destroy();
  }

  /** Closes idle kept-alive connections. */
  close(): void {
    this.#agent?.destroy();
    this.#agent = undefined;
  }

  #tls(enrolment: boolean): CentOpsTls {
    const { caPem } = this.#options;
    if (enrolment) return { caPem, trustDomain: this.trustDomain };
    if (this.#agent !== undefined) return { agent: this.#agent };
    const identity = this.#identity;
    return identity === undefined
      ? { caPem, trustDomain: this.trustDomain }
      : { caPem, certPem: identity.certPem, keyPem: identity.keyPem, trustDomain: this.trustDomain };
  }

  #url(path: string, options: CentOpsRequestOptions): string {
    const base = options.enrolment === true ? this.enrolUrl : this.apiUrl;
    if (base === undefined) {
      throw new DmrError('INVALID_ARGUMENT', 'no enrolment URL was given for this CentOps client');
    }
    return centOpsEndpoint(base, `${path.startsWith('/') ? path : `/${path}`}${searchOf(options.query)}`);
  }

  /** One request; the whole answer whatever its status. */
  request(method: HttpMethod, path: string, options: CentOpsRequestOptions = {}): Promise<CentOpsAnswer> {
    return callCentOps(this.#url(path, options), this.#tls(options.enrolment === true), {
      method,
      ...(options.body === undefined ? {} : { body: options.body }),
      headers: { accept: 'application/json', ...options.headers },
      timeoutMs: options.timeoutMs ?? this.#options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      maxAnswerBytes: this.#options.maxAnswerBytes ?? DEFAULT_MAX_ANSWER_BYTES,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  }

  /**
   * A JSON route: its 2xx body (validated against `schema` when given);
   * a non-2xx answer throws the DmrError CentOps sent.
   */
  async json<S extends TSchema = TSchema>(
    method: HttpMethod,
    path: string,
    options: CentOpsRequestOptions & { schema?: S; what?: string } = {},
  ): Promise<Static<S>> {
    const what = options.what ?? `${method} ${path}`;
    const answer = await this.request(method, path, options);
    if (answer.status < 200 || answer.status > 299) throw centOpsError(answer, what);
    const text = answer.body.toString('utf8');
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      throw new DmrError('INTERNAL', `${what}: CentOps answered ${answer.status} with a body that is not JSON`, {
        details: { status: answer.status },
      });
    }
    return options.schema === undefined ? (parsed as Static<S>) : validAnswer(options.schema, parsed, what);
  }

  /**
   * A streaming GET on the API (the configuration feed's SSE): the response
   * once its headers arrived, whatever its status. `idleTimeoutMs` ends a
   * stream that went silent (a half-open connection).
   */
  open(
    path: string,
    options: { headers?: Record<string, string>; signal?: AbortSignal; idleTimeoutMs?: number } = {},
  ): Promise<IncomingMessage> {
    const url = this.#url(path, {});
    const tls = this.#tls(false);
    return new Promise((resolve, reject) => {
      const request = httpsRequest(
        url,
        {
          method: 'GET',
          ...centOpsRequestTls(tls),
          headers: { ...options.headers },
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        },
        resolve,
      );
      if (options.idleTimeoutMs !== undefined) {
        const idle = options.idleTimeoutMs;
        request.setTimeout(idle, () =>
          request.destroy(Object.assign(new Error(`no answer in ${idle} ms`), { code: 'ETIMEDOUT' })),
        );
      }
      request.on('error', (error) =>
        // An impostor is not an outage, and an abort is the caller's own doing.
        reject(options.signal?.aborted || isServerIdentityMismatch(error) ? error : centOpsUnreachable(url, error)),
      );
      request.end();
    });
  }

  /** POST /v1/enroll: the body carries the token and the CSR only; the private key never leaves the caller. */
  enrol(token: string, csrPem: string): Promise<IssuedCertificateResponse> {
    if (this.enrolUrl === undefined) {
      throw new DmrError('INVALID_ARGUMENT', 'no enrolment URL was given for this CentOps client');
    }
    return requestEnrolment({
      enrolUrl: this.enrolUrl,
      token,
      csrPem,
      caPem: this.#options.caPem,
      // The token goes only to a server that proves to be CentOps of this trust domain.
      trustDomain: this.trustDomain,
      ...(this.#options.timeoutMs === undefined ? {} : { timeoutMs: this.#options.timeoutMs }),
    });
  }

  /** POST /v1/certificates/renew as the current identity (CentOps takes the id from the certificate). */
  renew(csrPem: string): Promise<IssuedCertificateResponse> {
    if (this.#identity === undefined) throw new DmrError('INTERNAL', 'no certificate yet: enrol first');
    return requestRenewal({
      apiUrl: this.apiUrl,
      csrPem,
      tls: this.#tls(false),
      ...(this.#options.timeoutMs === undefined ? {} : { timeoutMs: this.#options.timeoutMs }),
    });
  }

  /**
   * Grace renewal on the enrolment listener, for a certificate that expired
   * (TLS no longer accepts it): a nonce, then a proof signed with the current
   * identity's key (pki's requestGraceRenewal). Needs the identity and the
   * enrolment URL.
   */
  renewExpired(csrPem: string): Promise<IssuedCertificateResponse> {
    if (this.#identity === undefined) throw new DmrError('INTERNAL', 'no certificate yet: enrol first');
    if (this.enrolUrl === undefined) {
      throw new DmrError('INVALID_ARGUMENT', 'no enrolment URL was given for this CentOps client');
    }
    return requestGraceRenewal({
      enrolUrl: this.enrolUrl,
      caPem: this.#options.caPem,
      trustDomain: this.trustDomain,
      certificateChainPem: this.#identity.certPem,
      privateKeyPem: this.#identity.keyPem,
      csrPem,
      ...(this.#options.timeoutMs === undefined ? {} : { timeoutMs: this.#options.timeoutMs }),
    });
  }

  /** CentOps' current CRL (PEM). */
  async crl(): Promise<string> {
    const answer = await this.request('GET', '/v1/pki/crl', { headers: { accept: '*/*' } });
    if (answer.status !== 200) throw centOpsError(answer, 'CRL download');
    return answer.body.toString('utf8');
  }

  /**
   * One long poll of a node's signed configuration: the document if CentOps
   * has a revision other than `known`, undefined on 304 (nothing new within
   * `waitSeconds`).
   */
  async nodeConfig(
    nodeId: string,
    known: number | undefined,
    waitSeconds: number,
    signal?: AbortSignal,
  ): Promise<{ revision: number; jws: string } | undefined> {
    const answer = await this.request('GET', `/v1/nodes/${encodeURIComponent(nodeId)}/config`, {
      query: { wait: waitSeconds },
      headers: { accept: '*/*', ...(known === undefined ? {} : { 'if-none-match': `"${known}"` }) },
      timeoutMs: (waitSeconds + 15) * 1000,
      ...(signal === undefined ? {} : { signal }),
    });
    if (answer.status === 304) return undefined;
    if (answer.status !== 200) throw centOpsError(answer, 'configuration download');
    const etag = String(answer.headers.etag ?? '')
      .replace(/^W\//, '')
      .replace(/"/g, '');
    return { revision: Number(etag), jws: answer.body.toString('utf8') };
  }

  /** The policy bundle archive at `path` (a NodeConfig's `policy.bundle`). */
  async policyBundle(path: string): Promise<Buffer> {
    const answer = await this.request('GET', path, { headers: { accept: '*/*' } });
    if (answer.status !== 200) throw centOpsError(answer, 'policy bundle download');
    return answer.body;
  }

  /** PUT /v1/nodes/<id>/status: what the node runs, or why it refused a revision. */
  async putNodeStatus(nodeId: string, report: NodeStatusReport): Promise<void> {
    const answer = await this.request('PUT', `/v1/nodes/${encodeURIComponent(nodeId)}/status`, { body: report });
    if (answer.status !== 200) throw centOpsError(answer, 'status report');
  }

  /** POST /v1/nodes/<id>/events: one of the node's events, for CentOps' audit log (docs/events.md). */
  async postNodeEvent(nodeId: string, event: DmrEvent): Promise<void> {
    const answer = await this.request('POST', `/v1/nodes/${encodeURIComponent(nodeId)}/events`, { body: event });
    if (answer.status !== 204) throw centOpsError(answer, 'event report');
  }

  /** GET /v1/status: the registry revision and the revision each node runs. */
  status(): Promise<MeshStatus> {
    return this.json('GET', '/v1/status', { schema: MESH_STATUS_SCHEMA, what: 'status' });
  }

  /** GET /v1/policy: the current policy set (or `version`) with its files. */
  policy(version?: number): Promise<PolicyVersionWithFiles> {
    return this.json('GET', '/v1/policy', {
      query: { version },
      schema: POLICY_VERSION_WITH_FILES_SCHEMA,
      what: 'policy',
    });
  }

  /** POST /v1/audit/checkpoints: CentOps witnesses (countersigns) a writer's checkpoint, or refuses a fork. */
  submitAuditCheckpoint(body: CheckpointSubmissionBody): Promise<WitnessedCheckpointBody> {
    return this.json('POST', '/v1/audit/checkpoints', {
      body,
      schema: WITNESSED_CHECKPOINT_SCHEMA,
      what: 'audit checkpoint',
    });
  }

  /** GET /v1/audit/writers/<node>/<name>/checkpoint: the last checkpoint held for a writer; undefined for a new one. */
  async auditWriterCheckpoint(writer: string): Promise<WriterCheckpointBody | undefined> {
    const path = `/v1/audit/writers/${writer.split('/').map(encodeURIComponent).join('/')}/checkpoint`;
    const answer = await this.request('GET', path);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw centOpsError(answer, 'audit writer checkpoint');
    let body: unknown;
    try {
      body = JSON.parse(answer.body.toString('utf8'));
    } catch {
      throw new DmrError('INTERNAL', 'audit writer checkpoint: CentOps answered with a body that is not JSON');
    }
    return validAnswer(WRITER_CHECKPOINT_SCHEMA, body, 'audit writer checkpoint');
  }

  /** GET /v1/audit/writers */
  auditWriters(): Promise<AuditWritersBody> {
    return this.json('GET', '/v1/audit/writers', { schema: AUDIT_WRITERS_SCHEMA, what: 'audit writers' });
  }

  /** GET /v1/audit/checkpoints: one page of a log's checkpoints, smallest first. */
  auditCheckpoints(origin: string, afterSize = -1): Promise<CheckpointListBody> {
    return this.json('GET', '/v1/audit/checkpoints', {
      query: { origin, afterSize },
      schema: CHECKPOINT_LIST_SCHEMA,
      what: 'audit checkpoints',
    });
  }
}
