/**
 * Getting and renewing a client certificate from CentOps without the key
 * ever leaving the client: the key is generated here, only a CSR is sent.
 *
 * - `enrol`: POST /v1/enroll on CentOps' enrolment listener (server-auth TLS
 *   only: the client has no certificate yet) with a one-time bootstrap token.
 * - `renewCertificate`: POST /v1/certificates/renew on the mutual-TLS API,
 *   authenticated by the current certificate, with a CSR for a NEW key (a key
 *   that leaked before the renewal is useless after it); for a certificate
 *   that already expired, the grace renewal on the enrolment listener: a
 *   proof signed with its key (decision 0030).
 * - `renewalDelayMs`: when to renew (two thirds of the lifetime).
 *
 * A thin adapter: the exchange goes through the one CentOps client
 * (@dmr/centops-client), the key, CSR and the checks on the answer are
 * @dmr/pki's `obtainCertificate`, the node agent's too; here only the SDK's
 * shapes (`TlsPem`, `EnrolledIdentity`) and reading the trust domain from
 * the roots.
 */
import { CentOpsClient } from '@dmr/centops-client';
import { DmrError } from '@dmr/core';
import {
  obtainCertificate,
  renewalDelayMs as sharedRenewalDelayMs,
  type KeyAlgorithm,
  type ObtainedIdentity,
} from '@dmr/pki';
import { describeCertificate, parseChain } from './certificates.js';
import type { TlsPem } from './tls.js';

export interface EnrolOptions {
  /** CentOps' enrolment listener, e.g. `https://centops.example:8444`. */
  enrolUrl: string;
  /** The one-time bootstrap token an operator created (`dmr ctl token create --id <id>`). */
  token: string;
  /** The client id the token was made for. */
  id: string;
  /** CentOps' trust bundle (PEM): authenticates the enrolment listener (with its SPIFFE id, see trustDomain). */
  caPem: string;
  /**
   * The mesh trust domain (SPIFFE); default: read from the root's name (`DMR Root CA (<td>)`). The enrolment
   * listener must present `spiffe://<td>/centops/api`, and the certificate is requested for this domain.
   */
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

function toEnrolled(obtained: ObtainedIdentity): EnrolledIdentity {
  return {
    keyPem: obtained.privateKeyPem,
    chainPem: obtained.chainPem,
    trustBundlePem: obtained.trustBundlePem,
    serial: obtained.serial,
    notBefore: obtained.notBefore,
    notAfter: obtained.notAfter,
  };
}

function trustDomainFromRoots(caPem: string): string | undefined {
  for (const root of parseChain(caPem, 'trust bundle')) {
    const match = /CN=DMR Root CA \(([^)]+)\)/.exec(root.subject);
    if (match?.[1] !== undefined) return match[1];
  }
  return undefined;
}

/** First certificate: a new key, a CSR and the bootstrap token → the identity to connect with. */
export async function enrol(options: EnrolOptions): Promise<EnrolledIdentity> {
  const trustDomain = options.trustDomain ?? trustDomainFromRoots(options.caPem);
  if (trustDomain === undefined) {
    throw new DmrError('INVALID_ARGUMENT', 'the trust domain cannot be read from caPem', {
      hint: 'pass trustDomain (the mesh SPIFFE trust domain, e.g. dmr.example.ee)',
    });
  }
  const obtained = await obtainCertificate({
    id: options.id,
    kind: 'client',
    trustDomain,
    ...(options.keyAlgorithm === undefined ? {} : { keyAlgorithm: options.keyAlgorithm }),
    what: `enrolment of ${options.id}`,
    send: (csrPem) =>
      new CentOpsClient({
        apiUrl: options.enrolUrl,
        enrolUrl: options.enrolUrl,
        caPem: options.caPem,
        trustDomain,
        ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      }).enrol(options.token, csrPem),
  });
  return toEnrolled(obtained);
}

export interface RenewOptions {
  /** CentOps' mutual-TLS API, e.g. `https://centops.example:8443`. */
  apiUrl: string;
  /** The identity in use now: it authenticates the renewal. `ca` must also authenticate CentOps. */
  current: TlsPem;
  /**
   * CentOps' enrolment listener: where a certificate that already expired is renewed with a proof of its key
   * (within CentOps' grace period). Without it an expired certificate cannot be renewed here.
   */
  enrolUrl?: string;
  /** The clock that decides whether the certificate expired (default now). */
  now?: Date;
  keyAlgorithm?: KeyAlgorithm;
  timeoutMs?: number;
}

/** A new certificate for a new key, proven by the current certificate. */
export async function renewCertificate(options: RenewOptions): Promise<EnrolledIdentity> {
  const info = describeCertificate(options.current.cert);
  const { id, trustDomain } = info;
  if (id === undefined || trustDomain === undefined) {
    throw new DmrError('CERTIFICATE_INVALID', 'the current certificate has no DMR id (CN) or SPIFFE URI');
  }
  const expired = info.notAfter.getTime() <= (options.now ?? new Date()).getTime();
  if (expired && options.enrolUrl === undefined) {
    throw new DmrError('CERTIFICATE_INVALID', `the certificate of ${id} expired at ${info.notAfter.toISOString()}`, {
      hint: "pass renew.enrolUrl (CentOps' enrolment listener) to renew it within CentOps' grace period, or enrol again with a token",
    });
  }
  const client = new CentOpsClient({
    apiUrl: options.apiUrl,
    ...(options.enrolUrl === undefined ? {} : { enrolUrl: options.enrolUrl }),
    caPem: options.current.ca,
    trustDomain,
    identity: { certPem: options.current.cert, keyPem: options.current.key },
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
  const obtained = await obtainCertificate({
    id,
    kind: 'client',
    trustDomain,
    ...(options.keyAlgorithm === undefined ? {} : { keyAlgorithm: options.keyAlgorithm }),
    what: `${expired ? 'grace renewal' : 'renewal'} of ${id}`,
    send: (csrPem) => (expired ? client.renewExpired(csrPem) : client.renew(csrPem)),
  });
  return toEnrolled(obtained);
}

/**
 * When to renew a certificate valid from `notBefore` to `notAfter`: at two
 * thirds of its lifetime; past that point soon, with up to 1 s of jitter
 * (@dmr/pki's `renewalDelayMs`, the node agent's schedule too).
 */
export const renewalDelayMs: (notBefore: Date, notAfter: Date, now: Date, random?: () => number) => number =
  sharedRenewalDelayMs;
