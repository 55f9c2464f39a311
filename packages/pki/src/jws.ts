/**
 * The one x5c JWS signer and verifier (RFC 7515 compact serialisation, with
 * or without a detached payload), over node:crypto. Every JWS DMR makes is
 * one of these: node configurations, policy bundle signatures (OPA's JWT
 * format) and the per-message hop signatures.
 *
 * Why not `jose`: its sign and verify go through WebCrypto, async and about
 * 7 ms for a 30 kB node configuration (100 per change), and the hop
 * signatures are checked synchronously on every message. The tests check
 * this code against jose, so it stays an independent, standard JWS.
 *
 * The signer's certificate chain travels in `x5c`; trust in it is
 * verifyX5cSigner's (signer.ts): the chain ends at the trust bundle, the
 * leaf names the expected signer, is not a CA, may sign and is not revoked.
 */
import { constants, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { verifyX5cSigner, type SignerExpectation, type SigningIdentity, type TrustedSigner } from './signer.js';

export const JWS_ALGORITHMS = ['ES256', 'ES384', 'PS256', 'RS256'] as const;
export type JwsAlgorithm = (typeof JWS_ALGORITHMS)[number];

/**
 * The algorithm a key signs with: ES256 for P-256, ES384 for P-384, and for
 * RSA `rsa` (PS256 unless a verifier lacks PSS; null: RSA is not allowed).
 * Undefined for any other key.
 */
export function jwsAlgorithmFor(key: KeyObject, rsa: 'PS256' | 'RS256' | null = 'PS256'): JwsAlgorithm | undefined {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    return undefined;
  }
  if (rsa === null) return undefined;
  if (type === 'rsa-pss') return 'PS256';
  if (type === 'rsa') return rsa;
  return undefined;
}

/** node:crypto's parameters for each algorithm (RFC 7518 §3): ECDSA as r‖s, PSS with a 32-byte salt. */
function cryptoParams(algorithm: JwsAlgorithm): {
  hash: string;
  dsaEncoding?: 'ieee-p1363';
  padding?: number;
  saltLength?: number;
} {
  if (algorithm === 'ES256') return { hash: 'sha256', dsaEncoding: 'ieee-p1363' };
  if (algorithm === 'ES384') return { hash: 'sha384', dsaEncoding: 'ieee-p1363' };
  if (algorithm === 'PS256') return { hash: 'sha256', padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
  return { hash: 'sha256', padding: constants.RSA_PKCS1_PADDING };
}

/** base64url of the UTF-8 JSON of `header`: the first part of a JWS. */
export function encodeJwsHeader(header: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(header), 'utf8').toString('base64url');
}

/** The base64url signature over `encodedHeader.encodedPayload`. */
export function jwsSignature(
  algorithm: JwsAlgorithm,
  key: KeyObject,
  encodedHeader: string,
  encodedPayload: string,
): string {
  const { hash, ...params } = cryptoParams(algorithm);
  return cryptoSign(hash, Buffer.from(`${encodedHeader}.${encodedPayload}`, 'ascii'), { key, ...params }).toString(
    'base64url',
  );
}

/** Whether `encodedSignature` is `algorithm`'s signature by `publicKey` over `encodedHeader.encodedPayload`. */
export function verifyJwsSignature(
  algorithm: JwsAlgorithm,
  publicKey: KeyObject,
  encodedHeader: string,
  encodedPayload: string,
  encodedSignature: string,
): boolean {
  const { hash, ...params } = cryptoParams(algorithm);
  try {
    return cryptoVerify(
      hash,
      Buffer.from(`${encodedHeader}.${encodedPayload}`, 'ascii'),
      { key: publicKey, ...params },
      Buffer.from(encodedSignature, 'base64url'),
    );
  } catch {
    return false;
  }
}

/** Signs with one identity (key and chain, signer.ts' loadSigningIdentity) and one algorithm. */
export class X5cJwsSigner {
  readonly algorithm: JwsAlgorithm;
  /** sha256 fingerprint of the signer certificate (lowercase hex): what `kid` says. */
  readonly keyId: string;
  /** The chain as `x5c`: standard base64 DER, leaf first, no root. */
  readonly x5c: readonly string[];
  readonly #key: KeyObject;

  constructor(identity: SigningIdentity, algorithm: JwsAlgorithm) {
    this.algorithm = algorithm;
    this.keyId = identity.keyId;
    this.x5c = identity.x5c;
    this.#key = identity.key;
  }

  /**
   * The encoded protected header `{alg, typ, kid?, x5c?}`; encode it once and
   * sign many payloads with it when every signature carries the same one.
   */
  header(typ: string, options: { kid?: boolean; x5c?: boolean } = {}): string {
    return encodeJwsHeader({
      alg: this.algorithm,
      typ,
      ...(options.kid === false ? {} : { kid: this.keyId }),
      ...(options.x5c === false ? {} : { x5c: this.x5c }),
    });
  }

  /** `header.payload.signature` (compact serialisation). */
  compact(encodedHeader: string, payload: string | Uint8Array): string {
    const encodedPayload = Buffer.from(payload).toString('base64url');
    return `${encodedHeader}.${encodedPayload}.${jwsSignature(this.algorithm, this.#key, encodedHeader, encodedPayload)}`;
  }

  /** `header..signature`: a detached payload (RFC 7515 appendix F), recomputed by the verifier. */
  detached(encodedHeader: string, payload: Uint8Array): string {
    const encodedPayload = Buffer.from(payload).toString('base64url');
    return `${encodedHeader}..${jwsSignature(this.algorithm, this.#key, encodedHeader, encodedPayload)}`;
  }
}

/** The parts of a compact JWS, each base64url; `encodedPayload` is '' when detached. */
export interface JwsParts {
  encodedHeader: string;
  encodedPayload: string;
  encodedSignature: string;
}

/** `value` split into its three parts, or undefined when it is no compact JWS (detached if `detached`). */
export function splitJws(value: unknown, detached = false): JwsParts | undefined {
  if (typeof value !== 'string') return undefined;
  const parts = (
    detached ? /^([A-Za-z0-9_-]+)\.()\.([A-Za-z0-9_-]+)$/ : /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/
  ).exec(value);
  if (parts === null) return undefined;
  return {
    encodedHeader: parts[1] as string,
    encodedPayload: parts[2] as string,
    encodedSignature: parts[3] as string,
  };
}

/** The protected header as a JSON object, or undefined when it is not base64url JSON of an object. */
export function decodeJwsHeader(encodedHeader: string): Record<string, unknown> | undefined {
  try {
    const decoded: unknown = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8'));
    if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) return undefined;
    return decoded as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * Why verifyX5cJws refused: `format` (not a compact JWS, header not JSON),
 * `header` (alg, typ, kid or crit), `x5c`, `chain`, `signer`, `revoked`
 * (signer.ts' checks), `kid` (not the x5c leaf's fingerprint), `signature`.
 */
export type JwsCheck = 'format' | 'header' | 'x5c' | 'chain' | 'signer' | 'revoked' | 'kid' | 'signature';

export interface X5cJwsExpectation extends SignerExpectation {
  /** The algorithms accepted. */
  algorithms: readonly JwsAlgorithm[];
  /** The `typ` the header must carry (explicit typing, RFC 8725 §3.11); undefined: not checked. */
  typ?: string;
  /** Whether `kid` must be present and name the x5c leaf (sha256 fingerprint); default true. */
  kid?: boolean;
}

export interface VerifiedJws {
  header: Record<string, unknown>;
  payload: Buffer;
  signer: TrustedSigner;
}

/**
 * Verifies a compact JWS whose signer is named by its `x5c` header. Order
 * matters: nothing in the payload is returned before the signer is trusted
 * and the signature verifies. Failures go through `fail` so that each caller
 * keeps its own catalogue code.
 */
export async function verifyX5cJws(
  jws: string,
  expectation: X5cJwsExpectation,
  fail: (check: JwsCheck, message: string, details?: Record<string, unknown>) => Error,
): Promise<VerifiedJws> {
  const parts = splitJws(typeof jws === 'string' ? jws.trim() : jws);
  if (parts === undefined) throw fail('format', 'not a compact JWS (three base64url parts)');
  const header = decodeJwsHeader(parts.encodedHeader);
  if (header === undefined) throw fail('format', 'the protected header is not base64url JSON');
  const { alg, typ, kid } = header;
  if (typeof alg !== 'string' || !(expectation.algorithms as readonly string[]).includes(alg)) {
    throw fail('header', `alg ${String(alg)} is not one of ${expectation.algorithms.join(', ')}`);
  }
  if (expectation.typ !== undefined && typ !== expectation.typ) throw fail('header', `typ must be ${expectation.typ}`);
  const checkKid = expectation.kid ?? true;
  if (checkKid && (typeof kid !== 'string' || kid === '')) throw fail('header', 'kid is missing');
  if (header.crit !== undefined) throw fail('header', 'crit parameters are not understood');
  const signer = await verifyX5cSigner(header.x5c, expectation, fail);
  if (checkKid && kid !== signer.fingerprintSha256) {
    throw fail('kid', 'kid is not the fingerprint of the x5c signer certificate');
  }
  const algorithm = alg as JwsAlgorithm;
  if (
    !verifyJwsSignature(
      algorithm,
      signer.leaf.publicKey,
      parts.encodedHeader,
      parts.encodedPayload,
      parts.encodedSignature,
    )
  ) {
    throw fail('signature', "the signature does not verify with the signer's key");
  }
  return { header, payload: Buffer.from(parts.encodedPayload, 'base64url'), signer };
}
