/**
 * Getting and renewing a client certificate from CentOps without the key
 * ever leaving the client: the key is generated here, only a CSR is sent.
 *
 * - `enrol`: POST /v1/enroll on CentOps' enrolment listener (server-auth TLS
 *   only: the client has no certificate yet) with a one-time bootstrap token.
 * - `renewCertificate`: POST /v1/certificates/renew on the mutual-TLS API,
 *   authenticated by the current certificate, with a CSR for a NEW key (a key
 *   that leaked before the renewal is useless after it).
 * - `renewalDelayMs`: when to renew (two thirds of the lifetime).
 *
 * The node agent has similar code (packages/node/src/agent/identity.ts);
 * this file is self-contained so the SDK does not depend on the node.
 */
import { request as httpsRequest } from 'node:https';
import { DmrError, isErrorCode } from '@dmr/core';
import { createCsr, generatePrivateKey, type KeyAlgorithm } from '@dmr/pki';
import { describeCertificate, parseChain } from './certificates.js';
import type { TlsPem } from './tls.js';

export interface EnrolOptions {
  /** CentOps' enrolment listener, e.g. `https://centops.example:8444`. */
  enrolUrl: string;
  /** The one-time bootstrap token an operator created (`dmr ctl token create --id <id>`). */
  token: string;
  /** The client id the token was made for. */
  id: string;
  /** CentOps' trust bundle (PEM): authenticates the enrolment listener. */
  caPem: string;
  /** The mesh trust domain (SPIFFE); default: read from the root's name (`DMR Root CA (<td>)`). */
  trustDomain?: string;
  /** Default `ecdsa-p256` (what end-to-end protection's ES256 needs). */
  keyAlgorithm?: KeyAlgorithm;
  timeoutMs?: number;
}

export interface EnrolledIdentity {
  /** The new private key (PEM). Store it with mode 0600; it is never sent anywhere. */
  keyPem: string;
  /** Leaf then intermediate: pass as `tls.cert`. */
  chainPem: string;
  /** The roots to trust: pass as `tls.ca`. */
  trustBundlePem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

/** What CentOps answers (packages/centops/src/routes/pki.ts `Issued`). */
interface IssuedAnswer {
  id: string;
  chain: string;
  trustBundle: string;
}

function isIssued(value: unknown): value is IssuedAnswer {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return typeof record.id === 'string' && typeof record.chain === 'string' && typeof record.trustBundle === 'string';
}

interface Answer {
  status: number;
  body: string;
}

function post(
  url: string,
  body: unknown,
  tls: { ca: string; cert?: string; key?: string },
  timeoutMs: number,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const request = httpsRequest(
      url,
      {
        method: 'POST',
        agent: false,
        ca: tls.ca,
        ...(tls.cert === undefined ? {} : { cert: tls.cert, key: tls.key }),
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        response.on('error', reject);
      },
    );
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    request.on('error', (error) =>
      reject(
        new DmrError('CENTOPS_UNREACHABLE', `CentOps at ${new URL(url).origin} cannot be reached: ${error.message}`, {
          details: { url: new URL(url).origin },
          cause: error,
        }),
      ),
    );
    request.end(text);
  });
}

/** The catalogue error a CentOps error answer stands for (the catalogue is shared with CentOps). */
function refusal(answer: Answer, what: string, fallback: 'ENROLMENT_FAILED'): DmrError {
  let code: string | undefined;
  let message = answer.body.slice(0, 300);
  try {
    const parsed = JSON.parse(answer.body) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code === 'string') code = parsed.error.code;
    if (typeof parsed.error?.message === 'string') message = parsed.error.message;
  } catch {
    // Not JSON (a proxy's page): keep the text.
  }
  return new DmrError(
    code !== undefined && isErrorCode(code) ? code : fallback,
    `${what}: CentOps answered ${answer.status}: ${message}`,
    {
      details: { status: answer.status },
      ...(code === 'TOKEN_INVALID' ? { hint: 'ask an operator for a new token (`dmr ctl token create`)' } : {}),
    },
  );
}

function trustDomainFromRoots(caPem: string): string | undefined {
  for (const root of parseChain(caPem, 'trust bundle')) {
    const match = /CN=DMR Root CA \(([^)]+)\)/.exec(root.subject);
    if (match?.[1] !== undefined) return match[1];
  }
  return undefined;
}

async function issue(
  url: string,
  body: (csr: string) => unknown,
  id: string,
  trustDomain: string,
  keyAlgorithm: KeyAlgorithm | undefined,
  tls: { ca: string; cert?: string; key?: string },
  what: string,
  timeoutMs: number,
): Promise<EnrolledIdentity> {
  const keyPem = await generatePrivateKey(keyAlgorithm);
  const csr = await createCsr({ id, kind: 'client', trustDomain, privateKeyPem: keyPem });
  const answer = await post(url, body(csr), tls, timeoutMs);
  if (answer.status !== 201) throw refusal(answer, what, 'ENROLMENT_FAILED');
  let issued: unknown;
  try {
    issued = JSON.parse(answer.body);
  } catch {
    issued = undefined;
  }
  if (!isIssued(issued)) throw new DmrError('ENROLMENT_FAILED', `${what}: CentOps answered 201 without a certificate`);
  if (issued.id !== id)
    throw new DmrError('ENROLMENT_FAILED', `${what}: CentOps issued a certificate for ${issued.id}, not ${id}`);
  const info = describeCertificate(issued.chain);
  return {
    keyPem,
    chainPem: issued.chain,
    trustBundlePem: issued.trustBundle,
    serial: info.serial,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
  };
}

/** First certificate: a new key, a CSR and the bootstrap token → the identity to connect with. */
export async function enrol(options: EnrolOptions): Promise<EnrolledIdentity> {
  const trustDomain = options.trustDomain ?? trustDomainFromRoots(options.caPem);
  if (trustDomain === undefined) {
    throw new DmrError('INVALID_ARGUMENT', 'the trust domain cannot be read from caPem', {
      hint: 'pass trustDomain (the mesh SPIFFE trust domain, e.g. dmr.example.ee)',
    });
  }
  return issue(
    new URL('/v1/enroll', options.enrolUrl).toString(),
    (csr) => ({ token: options.token, csr }),
    options.id,
    trustDomain,
    options.keyAlgorithm,
    { ca: options.caPem },
    `enrolment of ${options.id}`,
    options.timeoutMs ?? 30_000,
  );
}

export interface RenewOptions {
  /** CentOps' mutual-TLS API, e.g. `https://centops.example:8443`. */
  apiUrl: string;
  /** The identity in use now: it authenticates the renewal. `ca` must also authenticate CentOps. */
  current: TlsPem;
  keyAlgorithm?: KeyAlgorithm;
  timeoutMs?: number;
}

/** A new certificate for a new key, proven by the current certificate. */
export async function renewCertificate(options: RenewOptions): Promise<EnrolledIdentity> {
  const info = describeCertificate(options.current.cert);
  if (info.id === undefined || info.trustDomain === undefined) {
    throw new DmrError('CERTIFICATE_INVALID', 'the current certificate has no DMR id (CN) or SPIFFE URI');
  }
  return issue(
    new URL('/v1/certificates/renew', options.apiUrl).toString(),
    (csr) => ({ csr }),
    info.id,
    info.trustDomain,
    options.keyAlgorithm,
    { ca: options.current.ca, cert: options.current.cert, key: options.current.key },
    `renewal of ${info.id}`,
    options.timeoutMs ?? 30_000,
  );
}

/**
 * When to renew a certificate valid from `notBefore` to `notAfter`: at two
 * thirds of its lifetime, which leaves a third for retries while CentOps is
 * down. Past that point: soon, with jitter of up to 1 s (or 1 % of the
 * lifetime) so clients restarted together do not renew together.
 */
export function renewalDelayMs(notBefore: Date, notAfter: Date, now: Date, random: () => number = Math.random): number {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  const delay = notBefore.getTime() + (lifetime * 2) / 3 - now.getTime();
  if (delay > 0) return Math.round(delay);
  return Math.round(random() * Math.min(1000, Math.max(0, lifetime / 100)));
}
