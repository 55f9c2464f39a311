/**
 * The proof behind a grace-period renewal (docs/decisions/0030): a holder
 * whose certificate expired while it was down cannot present it in TLS any
 * more, but it still holds the key. It proves that with a compact JWS
 * signed by that key, `x5c` = the expired chain, over a fresh single-use
 * CentOps nonce and the CSR of its new key:
 *
 *   header  {alg, typ: "dmr-renewal+jws", kid: sha256 of the leaf, x5c}
 *   payload {nonce, csr}
 *
 * The CSR inside the signed payload binds the proof to the new key, so a
 * proof seen by someone else cannot fetch a certificate for their own key;
 * the nonce makes it single-use. The signer here is the one client; the
 * verifier is CentOps' (certificates.ts), which adds what only its records
 * know (issued by this CentOps, not revoked, not denylisted, within the
 * grace period).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { DmrError } from '@dmr/core';
import {
  JWS_ALGORITHMS,
  X5cJwsSigner,
  decodeJwsHeader,
  jwsAlgorithmFor,
  splitJws,
  verifyX5cJws,
  type JwsCheck,
} from './jws.js';
import { loadSigningIdentity } from './signer.js';

export const RENEWAL_PROOF_TYPE = 'dmr-renewal+jws';
/** A nonce is 32 random bytes, base64url. */
export const RENEWAL_NONCE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export interface RenewalProofPayload {
  nonce: string;
  csr: string;
}

/** Signs a renewal proof with the (expired) certificate's key; `x5c` carries its chain. */
export function signRenewalProof(options: {
  certificateChainPem: string;
  privateKeyPem: string;
  nonce: string;
  csrPem: string;
}): string {
  const identity = loadSigningIdentity(options.certificateChainPem, options.privateKeyPem, 'the expired certificate');
  const algorithm = jwsAlgorithmFor(createPrivateKey(options.privateKeyPem));
  if (algorithm === undefined) {
    throw new DmrError('KEY_INVALID', 'the certificate key cannot sign a renewal proof (P-256, P-384 or RSA only)');
  }
  const signer = new X5cJwsSigner(identity, algorithm);
  const payload: RenewalProofPayload = { nonce: options.nonce, csr: options.csrPem };
  return signer.compact(signer.header(RENEWAL_PROOF_TYPE), JSON.stringify(payload));
}

export interface VerifiedRenewalProof {
  /** The certificate that signed: its SPIFFE ids, serial (lowercase hex) and validity. */
  leaf: X509Certificate;
  uris: string[];
  serial: string;
  fingerprintSha256: string;
  notAfter: Date;
  payload: RenewalProofPayload;
}

function refused(message: string, details: Record<string, unknown> = {}): DmrError {
  return new DmrError('UNAUTHENTICATED', `renewal proof refused: ${message}`, {
    details,
    hint: 'sign a fresh nonce with the key of your last certificate, or re-enrol with a one-time token',
  });
}

function urisOf(certificate: X509Certificate): string[] {
  return (certificate.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice('URI:'.length));
}

/**
 * Verifies the JWS, its signer chain (to `trustBundlePem`, judged at the
 * last moment the leaf was valid — the leaf is expected to have expired)
 * and its payload's shape. Nothing about the grace period, revocation or
 * the nonce: those are the caller's records.
 */
export async function verifyRenewalProof(
  proof: unknown,
  options: { trustBundlePem: string; now: Date },
): Promise<VerifiedRenewalProof> {
  const parts = splitJws(typeof proof === 'string' ? proof.trim() : proof);
  const header = parts === undefined ? undefined : decodeJwsHeader(parts.encodedHeader);
  const first = Array.isArray(header?.x5c) ? (header.x5c as unknown[])[0] : undefined;
  if (typeof first !== 'string') throw refused('not a compact JWS with an x5c chain');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(Buffer.from(first, 'base64'));
  } catch {
    throw refused('the x5c leaf is not a DER certificate');
  }
  const uris = urisOf(leaf);
  const spiffe = uris.find((uri) => uri.startsWith('spiffe://'));
  if (spiffe === undefined) throw refused('the x5c leaf names no SPIFFE id');
  const notAfter = new Date(leaf.validTo);
  // The chain as it was while the leaf was valid: expiry is the grace period's business, not the chain's.
  const judgedAt = new Date(Math.min(options.now.getTime(), notAfter.getTime() - 1000));
  const verified = await verifyX5cJws(
    proof as string,
    {
      trustBundlePem: options.trustBundlePem,
      expectedSigner: spiffe,
      now: judgedAt,
      algorithms: JWS_ALGORITHMS,
      typ: RENEWAL_PROOF_TYPE,
    },
    (check: JwsCheck, message: string, details?: Record<string, unknown>) => refused(message, { check, ...details }),
  );
  let payload: unknown;
  try {
    payload = JSON.parse(verified.payload.toString('utf8'));
  } catch {
    payload = undefined;
  }
  const record = typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>) : {};
  const keys = Object.keys(record).sort().join(',');
  if (
    keys !== 'csr,nonce' ||
    typeof record.nonce !== 'string' ||
    !RENEWAL_NONCE_PATTERN.test(record.nonce) ||
    typeof record.csr !== 'string' ||
    record.csr.length > 65_536
  ) {
    throw refused('the payload is not {nonce, csr}');
  }
  return {
    leaf,
    uris,
    serial: leaf.serialNumber.toLowerCase(),
    fingerprintSha256: verified.signer.fingerprintSha256,
    notAfter,
    payload: { nonce: record.nonce, csr: record.csr },
  };
}
