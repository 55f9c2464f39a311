/**
 * The one client for CentOps' certificate routes, used by the SDK
 * (packages/sdk/src/enrolment.ts) and the node agent
 * (packages/node/src/agent/identity.ts and centops-client.ts):
 *
 * - `requestEnrolment`: POST /v1/enroll on the enrolment listener
 *   (server-authenticated TLS only: the caller has no certificate yet) with
 *   a one-time bootstrap token and a CSR;
 * - `requestRenewal`: POST /v1/certificates/renew on the mutual-TLS API,
 *   authenticated by the current certificate, with a CSR for a NEW key (a
 *   key that leaked before the renewal is useless after it);
 * - `requestGraceRenewal`: the same for a certificate that expired (TLS
 *   refuses it): a nonce from the enrolment listener, then a proof signed
 *   with the old key over that nonce and the CSR (renewal-proof.ts), accepted
 *   by CentOps within its grace period after expiry;
 * - `obtainCertificate`: the key and CSR around either request, and the
 *   checks on what comes back (the id asked for, a certificate for OUR key);
 * - `renewalDelayMs`: when to renew.
 *
 * Why here, in @dmr/pki: enrolment and renewal are security-critical and
 * used to exist twice (SDK and node agent) and drift. Both callers already
 * depend on @dmr/pki, the SDK must not depend on @dmr/node, and CentOps
 * depends on pki (not the reverse), so this file imports nothing of
 * CentOps: the answer shape is CentOps' routes/pki.ts `Issued`, checked
 * here field by field. Each caller keeps a thin adapter (where the identity
 * is stored, which hints its users need).
 *
 * Every connection pins CentOps' identity (server-identity.ts): besides the
 * chain and the host name, the server must present
 * `spiffe://<trustDomain>/centops/api`, so a node's key (same CA, maybe the
 * same host names) cannot pose as the enrolment listener and collect tokens.
 *
 * Errors (catalogue codes): a server that is not CentOps →
 * SERVER_IDENTITY_MISMATCH; CentOps down, a refused TLS handshake or no
 * answer within the timeout → CENTOPS_UNREACHABLE; an error answer → the
 * code CentOps sent (the catalogue is shared, so a refused token stays
 * TOKEN_INVALID), else the caller's fallback; a 201 that is not a usable
 * certificate for the id and key asked for → ENROLMENT_FAILED.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { DmrError, isErrorCode, type ErrorCode, type PrincipalKind } from '@dmr/core';
import { createCsr } from './csr.js';
import { generatePrivateKey, type KeyAlgorithm } from './keys.js';
import { signRenewalProof } from './renewal-proof.js';
import { centOpsApiSpiffeId, centOpsServerCheck, isServerIdentityMismatch } from './server-identity.js';

/** What POST /v1/enroll and /v1/certificates/renew answer with 201 (CentOps routes/pki.ts `Issued`). */
export interface IssuedCertificateResponse {
  id: string;
  kind: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprint: string;
  /** The leaf alone. */
  certificate: string;
  /** Leaf then CentOps' intermediate: what the holder presents in TLS. */
  chain: string;
  /** The roots to trust (several during a rollover). */
  trustBundle: string;
}

/**
 * A keep-alive https.Agent for CentOps that pins its identity on every
 * connection it opens (the node agent's: it holds the CA and the node's
 * client certificate). A plain https.Agent is not accepted where a
 * CentOpsAgent is asked for, so no caller can forget the pin.
 */
export class CentOpsAgent extends Agent {
  /** `spiffe://<td>/centops/api`. */
  readonly expectedIdentity: string;

  constructor(options: { caPem: string; certPem?: string; keyPem?: string; trustDomain: string; keepAlive?: boolean }) {
    super({
      keepAlive: options.keepAlive ?? true,
      ca: options.caPem,
      ...(options.certPem === undefined ? {} : { cert: options.certPem, key: options.keyPem }),
      checkServerIdentity: centOpsServerCheck(options.trustDomain),
    });
    this.expectedIdentity = centOpsApiSpiffeId(options.trustDomain);
  }
}

/**
 * How to reach CentOps: a ready CentOpsAgent, or PEM material for one fresh
 * connection. Either way CentOps of `trustDomain` is pinned.
 */
export type CentOpsTls =
  { agent: CentOpsAgent } | { caPem: string; certPem?: string; keyPem?: string; trustDomain: string };

/**
 * The `https.request` options for `tls`: the pooled agent, or a fresh
 * connection (agent: false) so that the identity presented is exactly this
 * one, with CentOps pinned either way.
 */
export function centOpsRequestTls(tls: CentOpsTls): RequestOptions {
  if ('agent' in tls) return { agent: tls.agent };
  return {
    agent: false,
    ca: tls.caPem,
    checkServerIdentity: centOpsServerCheck(tls.trustDomain),
    ...(tls.certPem === undefined ? {} : { cert: tls.certPem, key: tls.keyPem }),
  };
}

export interface CentOpsCallOptions {
  /** Gives up with CENTOPS_UNREACHABLE when no whole answer arrived by then (default 30 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Request headers besides content-type (e.g. accept, if-match, if-none-match). */
  headers?: Record<string, string>;
  /** Refuse an answer larger than this (default 1 MiB). */
  maxAnswerBytes?: number;
}

export interface CentOpsAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export const DEFAULT_CENTOPS_TIMEOUT_MS = 30_000;
/** An issued chain and trust bundle are a few KiB; anything near this is not CentOps talking. */
const MAX_ANSWER_BYTES = 1024 * 1024;

/** CENTOPS_UNREACHABLE for `url`, naming only its origin (no path, no query). */
export function centOpsUnreachable(url: string, error: unknown): DmrError {
  const message = error instanceof Error ? error.message : String(error);
  const origin = new URL(url).origin;
  return new DmrError('CENTOPS_UNREACHABLE', `CentOps at ${origin} cannot be reached: ${message}`, {
    details: { url: origin },
    cause: error,
  });
}

/**
 * The DmrError a CentOps error answer stands for: CentOps' own code when it
 * is one of the catalogue's (with its details), else `fallback`.
 */
export function centOpsError(
  answer: { status: number; body: Buffer | string },
  what: string,
  fallback: ErrorCode = 'INTERNAL',
): DmrError {
  const text = typeof answer.body === 'string' ? answer.body : answer.body.toString('utf8');
  let code: string | undefined;
  let message = text.slice(0, 300);
  let details: Record<string, unknown> = {};
  let hint: string | undefined;
  try {
    const parsed = JSON.parse(text) as {
      error?: { code?: unknown; message?: unknown; details?: unknown; hint?: unknown };
    };
    // CentOps' own next step (e.g. re-enrol with a token after the grace period); pinned, so shown as is.
    if (typeof parsed.error?.hint === 'string') hint = parsed.error.hint.slice(0, 300);
    if (typeof parsed.error?.code === 'string') code = parsed.error.code;
    if (typeof parsed.error?.message === 'string') message = parsed.error.message.slice(0, 300);
    if (typeof parsed.error?.details === 'object' && parsed.error.details !== null) {
      details = parsed.error.details as Record<string, unknown>;
    }
  } catch {
    // Not JSON (a proxy's page): keep the text.
  }
  const known = code !== undefined && isErrorCode(code) ? code : fallback;
  return new DmrError(known, `${what}: CentOps answered ${answer.status}: ${message}`, {
    details: { ...details, status: answer.status },
    ...(known === 'TOKEN_INVALID'
      ? { hint: 'the token is unknown, expired or used; ask an operator for a new one (`dmr ctl token create`)' }
      : hint === undefined
        ? {}
        : { hint }),
  });
}

/** `base` (an https URL, maybe with a path prefix) + `path`. */
export function centOpsEndpoint(base: string, path: string): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new DmrError('INVALID_ARGUMENT', `the CentOps URL ${JSON.stringify(base)} is not a URL`);
  }
  if (url.protocol !== 'https:') {
    throw new DmrError('INVALID_ARGUMENT', `the CentOps URL must be https://, not ${url.protocol}//`, {
      hint: 'CentOps only speaks TLS',
    });
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}${path}`;
}

/** One HTTPS request to CentOps; resolves with the whole answer, whatever its status. */
export function callCentOps(
  url: string,
  tls: CentOpsTls,
  options: CentOpsCallOptions & { method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH'; body?: unknown } = {},
): Promise<CentOpsAnswer> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CENTOPS_TIMEOUT_MS;
  const maxBytes = options.maxAnswerBytes ?? MAX_ANSWER_BYTES;
  const text = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    let settled = false;
    // The whole exchange, not only socket idleness: a trickling peer must not hold a renewal forever.
    const timer = setTimeout(
      () => request.destroy(Object.assign(new Error(`no answer in ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      timeoutMs,
    );
    const fail = (error: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // An impostor is not an outage: the caller must see which identity it met, not "retry later".
      reject(options.signal?.aborted || isServerIdentityMismatch(error) ? error : centOpsUnreachable(url, error));
    };
    const request = httpsRequest(
      url,
      {
        method: options.method ?? 'GET',
        ...centOpsRequestTls(tls),
        headers: {
          ...options.headers,
          ...(text === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }),
        },
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            request.destroy(new Error(`the answer is larger than ${maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) });
        });
        response.on('error', fail);
        response.on('close', () => {
          if (!response.complete) fail(new Error('the connection closed before the answer was complete'));
        });
      },
    );
    request.on('error', fail);
    request.end(text);
  });
}

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

/** The 201 body of an issuing route, checked field by field (ENROLMENT_FAILED if it is not one). */
export function parseIssuedResponse(body: Buffer | string, what: string): IssuedCertificateResponse {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const record = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  const fields = [
    'id',
    'kind',
    'serial',
    'notBefore',
    'notAfter',
    'fingerprint',
    'certificate',
    'chain',
    'trustBundle',
  ];
  const missing = fields.filter((field) => !isString(record[field]));
  if (missing.length > 0) {
    throw new DmrError('ENROLMENT_FAILED', `${what}: CentOps answered 201 without a certificate`, {
      details: { missing },
    });
  }
  return Object.fromEntries(fields.map((field) => [field, record[field]])) as unknown as IssuedCertificateResponse;
}

async function issuing(
  url: string,
  tls: CentOpsTls,
  body: Record<string, string>,
  what: string,
  options: CentOpsCallOptions,
): Promise<IssuedCertificateResponse> {
  const answer = await callCentOps(url, tls, { ...options, method: 'POST', body });
  if (answer.status !== 201) throw centOpsError(answer, what, 'ENROLMENT_FAILED');
  return parseIssuedResponse(answer.body, what);
}

/**
 * POST /v1/enroll: the body carries the token and the CSR only; the private
 * key never leaves the caller. The token is written only after the server
 * proved to be CentOps of `trustDomain`.
 */
export async function requestEnrolment(
  options: { enrolUrl: string; token: string; csrPem: string; caPem: string; trustDomain: string } & CentOpsCallOptions,
): Promise<IssuedCertificateResponse> {
  if (options.token.trim() === '') throw new DmrError('INVALID_ARGUMENT', 'the bootstrap token is empty');
  return issuing(
    centOpsEndpoint(options.enrolUrl, '/v1/enroll'),
    { caPem: options.caPem, trustDomain: options.trustDomain },
    { token: options.token, csr: options.csrPem },
    'enrolment',
    options,
  );
}

/** POST /v1/certificates/renew as the identity in `tls` (CentOps takes the id from that certificate). */
export async function requestRenewal(
  options: { apiUrl: string; csrPem: string; tls: CentOpsTls } & CentOpsCallOptions,
): Promise<IssuedCertificateResponse> {
  if ('caPem' in options.tls && (options.tls.certPem === undefined || options.tls.keyPem === undefined)) {
    throw new DmrError('INVALID_ARGUMENT', 'a renewal needs the current certificate and key');
  }
  return issuing(
    centOpsEndpoint(options.apiUrl, '/v1/certificates/renew'),
    options.tls,
    { csr: options.csrPem },
    'certificate renewal',
    options,
  );
}

/**
 * A grace renewal on the enrolment listener (no client certificate: the
 * current one expired): POST /v1/renewal/nonce, then POST /v1/renewal with
 * a proof signed by the expired certificate's key over that nonce and the
 * CSR. CentOps refuses past its grace period (RENEWAL_GRACE_EXPIRED: enrol
 * again with a token), a revoked certificate (CERTIFICATE_REVOKED) and a
 * denylisted identity (FORBIDDEN).
 */
export async function requestGraceRenewal(
  options: {
    enrolUrl: string;
    caPem: string;
    trustDomain: string;
    /** The expired certificate's chain and key. */
    certificateChainPem: string;
    privateKeyPem: string;
    csrPem: string;
  } & CentOpsCallOptions,
): Promise<IssuedCertificateResponse> {
  const tls = { caPem: options.caPem, trustDomain: options.trustDomain };
  const nonceUrl = centOpsEndpoint(options.enrolUrl, '/v1/renewal/nonce');
  const answer = await callCentOps(nonceUrl, tls, { ...options, method: 'POST' });
  if (answer.status !== 201) throw centOpsError(answer, 'grace renewal nonce', 'ENROLMENT_FAILED');
  let nonce: unknown;
  try {
    nonce = (JSON.parse(answer.body.toString('utf8')) as { nonce?: unknown }).nonce;
  } catch {
    nonce = undefined;
  }
  if (typeof nonce !== 'string') {
    throw new DmrError('ENROLMENT_FAILED', 'grace renewal: CentOps answered 201 without a nonce');
  }
  const proof = signRenewalProof({
    certificateChainPem: options.certificateChainPem,
    privateKeyPem: options.privateKeyPem,
    nonce,
    csrPem: options.csrPem,
  });
  return issuing(centOpsEndpoint(options.enrolUrl, '/v1/renewal'), tls, { proof }, 'grace renewal', options);
}

/** An identity CentOps issued: the new key (made here, never sent) with its certificate. */
export interface ObtainedIdentity {
  /** PKCS#8 PEM. Store it with mode 0600. */
  privateKeyPem: string;
  /** Leaf then intermediate. */
  chainPem: string;
  /** The roots to trust. */
  trustBundlePem: string;
  /** Lowercase hex, from the certificate itself. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** CentOps' answer as it came. */
  response: IssuedCertificateResponse;
}

export interface ObtainOptions {
  id: string;
  kind: PrincipalKind;
  trustDomain: string;
  /** Default ecdsa-p256; must be what the id's CentOps certificate profile asks for. */
  keyAlgorithm?: KeyAlgorithm;
  /** Names the exchange in errors, e.g. `enrolment of ria-bot`. */
  what: string;
  /** Sends the CSR (requestEnrolment / requestRenewal, or a caller's wrapper around them). */
  send(csrPem: string): Promise<IssuedCertificateResponse>;
}

/** The subject CN of a node:crypto certificate. */
function commonNameOf(certificate: X509Certificate): string | undefined {
  for (const line of certificate.subject.split('\n')) {
    if (line.startsWith('CN=')) return line.slice(3);
  }
  return undefined;
}

/**
 * A new key and CSR for `id`, sent with `send`; the answer is accepted only
 * if its certificate names `id` and certifies the key made here (a CentOps
 * that answered with someone else's certificate, or a proxy that swapped
 * it, would otherwise leave the caller with a key and a certificate that do
 * not belong together).
 */
export async function obtainCertificate(options: ObtainOptions): Promise<ObtainedIdentity> {
  const privateKeyPem = await generatePrivateKey(options.keyAlgorithm);
  const csrPem = await createCsr({
    id: options.id,
    kind: options.kind,
    trustDomain: options.trustDomain,
    privateKeyPem,
  });
  const response = await options.send(csrPem);
  const refuse = (reason: string): DmrError =>
    new DmrError('ENROLMENT_FAILED', `${options.what}: ${reason}`, { details: { id: options.id } });
  if (response.id !== options.id) throw refuse(`CentOps issued a certificate for ${response.id}, not ${options.id}`);
  let leaf: X509Certificate;
  try {
    const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(response.chain)?.[0];
    if (first === undefined) throw new Error('no PEM certificate in the chain');
    leaf = new X509Certificate(first);
    if (!/-----BEGIN CERTIFICATE-----/.test(response.trustBundle)) throw new Error('no PEM certificate in the bundle');
  } catch (error) {
    throw refuse(`CentOps answered with a certificate that cannot be read: ${(error as Error).message}`);
  }
  if (commonNameOf(leaf) !== options.id) throw refuse(`the certificate names ${commonNameOf(leaf) ?? 'no CN'}`);
  if (!leaf.checkPrivateKey(createPrivateKey(privateKeyPem))) {
    throw refuse('the certificate is not for the key sent in the CSR');
  }
  return {
    privateKeyPem,
    chainPem: response.chain,
    trustBundlePem: response.trustBundle,
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    response,
  };
}

/**
 * When to renew a certificate valid from `notBefore` to `notAfter`: at two
 * thirds of its lifetime, which leaves a third for retries while CentOps is
 * down. Past that point: soon, with jitter of up to 1 s (or 1 % of the
 * lifetime) so clients and nodes restarted together do not renew together.
 */
export function renewalDelayMs(notBefore: Date, notAfter: Date, now: Date, random: () => number = Math.random): number {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  const delay = notBefore.getTime() + (lifetime * 2) / 3 - now.getTime();
  if (delay > 0) return Math.round(delay);
  return Math.round(random() * Math.min(1000, Math.max(0, lifetime / 100)));
}
