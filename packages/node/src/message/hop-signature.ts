/**
 * The origin signature (docs/contract.md "Message contract"): the origin node, after
 * its checks, records the authenticated sender (`dmr-sender`) and itself
 * (`dmr-origin`) and signs the canonical metadata plus a SHA-256 digest of
 * the body with its node key (`dmr-sig`). Every later hop verifies that
 * signature before it trusts any metadata, then appends itself to `dmr-hops`.
 *
 * ## Canonical metadata (version `dmr-hop-sig/1`)
 *
 * The signed bytes are the UTF-8 encoding of `JSON.stringify` of this array
 * of ten strings (or null), in this order:
 *
 * | # | value                                                                            |
 * |---|----------------------------------------------------------------------------------|
 * | 0 | the literal `"dmr-hop-sig/1"` (domain separation and format version)             |
 * | 1 | property `message_id`, exactly as carried                                        |
 * | 2 | header `dmr-sender` (= the client id in the `user_id` the origin broker checked) |
 * | 3 | header `dmr-origin` (the origin node id)                                         |
 * | 4 | header `dmr-recipient`                                                           |
 * | 5 | property `type`                                                                  |
 * | 6 | property `timestamp`: POSIX seconds as a decimal integer string                  |
 * | 7 | property `expiration`: decimal ms string, or `null` when absent                  |
 * | 8 | header `dmr-version` as a decimal string (`"1"`)                                 |
 * | 9 | `"sha256:"` + lowercase hex SHA-256 of the body bytes                            |
 *
 * A JSON array of strings has one serialisation (JSON.stringify escapes
 * deterministically; no keys to order, no whitespace), so both ends derive
 * identical bytes from the message itself. Not signed, because they change
 * per hop: `user_id` (a forwarding node publishes as itself), `dmr-hops`,
 * `traceparent`, `tracestate`, delivery properties.
 *
 * ## `dmr-sig`
 *
 * A compact JWS with a detached payload (RFC 7515 appendix F):
 * `base64url(header)..base64url(signature)`; the payload is the canonical
 * metadata above, recomputed by the verifier rather than carried, so the
 * verifier can never check one thing and use another. Header:
 * `{alg, typ: "dmr-hop-sig+jws", kid, x5c}` with `alg` ES256 (P-256 key),
 * ES384 (P-384) or PS256 (RSA), `kid` the sha256 fingerprint of the node
 * certificate and `x5c` its chain (leaf first, no root).
 */
import type { X509Certificate } from 'node:crypto';
import { isValidId, spiffeId } from '@dmr/core';
import {
  X5cJwsSigner,
  decodeJwsHeader as decodeJsonHeader,
  jwsAlgorithmFor,
  splitJws,
  loadSigningIdentity,
  sha256Hex,
  verifyJwsSignature,
  verifyX5cSigner,
  type SignerCheck,
} from '@dmr/pki';
import {
  HOPS_HEADER,
  ORIGIN_HEADER,
  RECIPIENT_HEADER,
  SENDER_HEADER,
  SIGNATURE_HEADER,
  VERSION_HEADER,
  reject,
  type CheckResult,
  type Rejection,
  type SignableMessage,
} from './contract.js';

export const HOP_SIGNATURE_VERSION = 'dmr-hop-sig/1';
export const HOP_SIGNATURE_JWS_TYPE = 'dmr-hop-sig+jws';
const ALGORITHMS = ['ES256', 'ES384', 'PS256'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** One entry of `dmr-hops`. */
export interface Hop {
  node: string;
  /** ISO 8601 UTC time the node handled the message. */
  at: string;
}

function digestOf(body: Uint8Array): string {
  return `sha256:${sha256Hex(body)}`;
}

function asDecimal(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  if (typeof value === 'string' && /^(0|[1-9][0-9]*)$/.test(value)) return value;
  return undefined;
}

/**
 * The canonical metadata of `message` as signed by `origin` for `sender`, or
 * the name of the first field that is missing or malformed.
 */
export function canonicalMetadata(
  message: SignableMessage,
  sender: string,
  origin: string,
): { ok: true; bytes: Buffer } | { ok: false; field: string } {
  const { properties } = message;
  const headers = properties.headers ?? {};
  const messageId = properties.messageId;
  if (typeof messageId !== 'string' || messageId === '') return { ok: false, field: 'message_id' };
  const recipient = headers[RECIPIENT_HEADER];
  if (typeof recipient !== 'string' || recipient === '') return { ok: false, field: RECIPIENT_HEADER };
  const type = properties.type;
  if (typeof type !== 'string' || type === '') return { ok: false, field: 'type' };
  const timestamp = asDecimal(properties.timestamp);
  if (timestamp === undefined) return { ok: false, field: 'timestamp' };
  let expiration: string | null = null;
  if (properties.expiration !== undefined && properties.expiration !== null) {
    const parsed = asDecimal(properties.expiration);
    if (parsed === undefined) return { ok: false, field: 'expiration' };
    expiration = parsed;
  }
  const version = asDecimal(headers[VERSION_HEADER]);
  if (version === undefined) return { ok: false, field: VERSION_HEADER };
  const fields = [
    HOP_SIGNATURE_VERSION,
    messageId,
    sender,
    origin,
    recipient,
    type,
    timestamp,
    expiration,
    version,
    digestOf(message.content),
  ];
  return { ok: true, bytes: Buffer.from(JSON.stringify(fields), 'utf8') };
}

/**
 * A node's key with its certificate chain, loaded once: it makes every
 * signature a node puts on a message (`dmr-sig`, and its `dmr-hops` entries
 * in hop-chain.ts), each a compact JWS with a detached payload and the header
 * `{alg, typ, kid, x5c}`. Not exported from the package: HopSigner and
 * HopChainSigner are the API.
 */
export class NodeSigningKey {
  readonly algorithm: Algorithm;
  readonly #signer: X5cJwsSigner;
  /** The encoded header per `typ` and x5c or not: the same for every message, so encoded once. */
  readonly #headers = new Map<string, string>();

  constructor(certificateChainPem: string, privateKeyPem: string) {
    const identity = loadSigningIdentity(certificateChainPem, privateKeyPem, 'the node');
    const algorithm = jwsAlgorithmFor(identity.key, 'PS256');
    if (algorithm !== 'ES256' && algorithm !== 'ES384' && algorithm !== 'PS256') {
      throw new RangeError('the node key must be ECDSA P-256 or P-384, or RSA');
    }
    this.algorithm = algorithm;
    this.#signer = new X5cJwsSigner(identity, algorithm);
  }

  /**
   * `base64url(header)..base64url(signature)` over `payload` (RFC 7515
   * appendix F). Without `x5c` when `withChain` is false: for a signature
   * whose verifier already holds this node's chain from the same message.
   */
  signDetached(typ: string, payload: Buffer, withChain = true): string {
    const cacheKey = `${typ}\n${withChain}`;
    let encodedHeader = this.#headers.get(cacheKey);
    if (encodedHeader === undefined) {
      encodedHeader = this.#signer.header(typ, { x5c: withChain });
      this.#headers.set(cacheKey, encodedHeader);
    }
    return this.#signer.detached(encodedHeader, payload);
  }
}

/** The `dmr-sig` value `key` makes for `message` as sent by `sender` through `origin`. */
export function originSignature(key: NodeSigningKey, message: SignableMessage, sender: string, origin: string): string {
  const canonical = canonicalMetadata(message, sender, origin);
  if (!canonical.ok) throw new RangeError(`cannot sign: ${canonical.field} is missing or malformed`);
  return key.signDetached(HOP_SIGNATURE_JWS_TYPE, canonical.bytes);
}

export interface HopSignerOptions {
  /** This node's id (`dmr-origin`). */
  nodeId: string;
  /** The node certificate followed by its intermediate(s). */
  certificateChainPem: string;
  privateKeyPem: string;
}

/** The origin side: holds the node key and stamps validated messages. */
export class HopSigner {
  readonly nodeId: string;
  readonly algorithm: Algorithm;
  readonly #key: NodeSigningKey;

  constructor(options: HopSignerOptions) {
    this.nodeId = options.nodeId;
    this.#key = new NodeSigningKey(options.certificateChainPem, options.privateKeyPem);
    this.algorithm = this.#key.algorithm;
  }

  /**
   * The DMR headers to add to `message` (which passed validateAtOrigin for
   * `sender`): `dmr-sender`, `dmr-origin`, `dmr-hops` (this node, `at`) and
   * `dmr-sig`. The message must then be forwarded with exactly the signed
   * properties and body.
   */
  sign(message: SignableMessage, sender: string, at: Date): Record<string, string> {
    const signature = originSignature(this.#key, message, sender, this.nodeId);
    const hops: Hop[] = [{ node: this.nodeId, at: at.toISOString() }];
    return {
      [SENDER_HEADER]: sender,
      [ORIGIN_HEADER]: this.nodeId,
      [HOPS_HEADER]: JSON.stringify(hops),
      [SIGNATURE_HEADER]: signature,
    };
  }
}

export interface NodeSignerCacheOptions {
  /** PEM roots of the CA trust bundle (old and new during a rollover). */
  trustBundlePem: string;
  trustDomain: string;
  /**
   * How long a verified certificate chain is reused (ms, default 60 s; 0 = never).
   * Chain verification costs far more than the signature; the trust bundle
   * and CRLs are fixed per verifier, and an entry never outlives its leaf.
   */
  chainCacheMs?: number;
  /**
   * CentOps CRLs (PEM) to check every signer against, when the node has
   * them: a revoked signer is refused (check `revoked`). Fixed per verifier,
   * like the trust bundle: a new CRL means a new verifier (and an empty cache).
   */
  crlPems?: readonly string[];
}

export interface HopVerifierOptions extends NodeSignerCacheOptions {
  /** Ids on the denylist (clients and nodes; ids are unique across the mesh). */
  denied: ReadonlySet<string>;
}

/** What a later hop may trust once the signature verified. */
export interface VerifiedOrigin {
  sender: string;
  origin: string;
  hops: Hop[];
  /** sha256 fingerprint of the origin node certificate. */
  signerFingerprint: string;
  /** The origin node certificate, verified: its key also signs the origin's `dmr-hops` entry. */
  certificate: X509Certificate;
}

/** A node certificate whose chain verified: whose key may verify that node's signatures until `until`. */
export interface NodeSigner {
  leaf: X509Certificate;
  /** sha256 fingerprint of the leaf (lowercase hex): what a JWS `kid` must say. */
  fingerprint: string;
  /** The leaf's notBefore (ms): before it the entry is not used. */
  from: number;
  /** Cache expiry (ms): the earlier of the verification plus chainCacheMs and the leaf's notAfter. */
  until: number;
}

/** Why a signer was refused: `header` (no usable x5c), `chain`, `signer` (wrong SPIFFE id or a CA) or `revoked`. */
export interface SignerFailure {
  ok: false;
  check: 'header' | 'chain' | 'signer' | 'revoked';
  message: string;
}

const CACHE_MAX = 1024;

/**
 * What a refusal says about a refused signer. The chain check's own words
 * quote names from certificates that may not be the CA's (a forger picks
 * them), and refusals reach logs and reports: only the revocation finding,
 * made on a verified certificate and CRL, is passed on.
 */
function signerProblem(check: SignerCheck, node: string, message: string): string {
  if (check === 'x5c') return 'x5c (the signer certificate chain) is missing or not DER certificates';
  if (check === 'chain') return 'the signer certificate does not chain to a trusted root, or is not valid now';
  if (check === 'signer') return `the signer certificate is not node ${node}'s`;
  return message;
}

/**
 * Verified node certificate chains, per (node, x5c): the one copy of the
 * signer check and its cache, shared by the origin signature and the hop
 * chain. Not exported from the package.
 */
export class NodeSignerCache {
  readonly #options: NodeSignerCacheOptions;
  readonly #crlPems: string[];
  readonly #cache = new Map<string, NodeSigner>();

  constructor(options: NodeSignerCacheOptions) {
    this.#options = options;
    this.#crlPems = (options.crlPems ?? []).filter((pem) => pem.trim() !== '');
  }

  /** The signer of a JWS whose `x5c` is `x5c`, checked to be `spiffe://<td>/node/<node>` at `now`. */
  async signer(node: string, x5c: unknown, now: Date): Promise<{ ok: true; signer: NodeSigner } | SignerFailure> {
    const cacheMs = this.#options.chainCacheMs ?? 60_000;
    // JSON, not a join: ["a\nb"] and ["a", "b"] must not share an entry.
    const key = Array.isArray(x5c) ? `${node}\n${JSON.stringify(x5c)}` : undefined;
    const at = now.getTime();
    const cached = key === undefined ? undefined : this.#cache.get(key);
    if (cached !== undefined && cached.from <= at && cached.until > at) return { ok: true, signer: cached };
    let failure: SignerFailure | undefined;
    try {
      const trusted = await verifyX5cSigner(
        x5c,
        {
          trustBundlePem: this.#options.trustBundlePem,
          expectedSigner: spiffeId(this.#options.trustDomain, 'node', node),
          now,
          ...(this.#crlPems.length === 0 ? {} : { crlPems: this.#crlPems }),
        },
        (check: SignerCheck, message: string) => {
          failure = {
            ok: false,
            check: check === 'x5c' ? 'header' : check,
            message: signerProblem(check, node, message),
          };
          return new Error(message);
        },
      );
      const signer: NodeSigner = {
        leaf: trusted.leaf,
        fingerprint: trusted.fingerprintSha256,
        from: Date.parse(trusted.leaf.validFrom),
        until: Math.min(at + cacheMs, Date.parse(trusted.leaf.validTo)),
      };
      if (key !== undefined && cacheMs > 0) {
        // Crude bound: a mesh has far fewer node certificates than this; clearing is always safe.
        if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
        this.#cache.set(key, signer);
      }
      return { ok: true, signer };
    } catch {
      return failure ?? { ok: false, check: 'chain', message: 'the signer certificate chain cannot be verified' };
    }
  }
}

/** The two parts of a compact JWS with a detached payload, each base64url. */
export interface DetachedJws {
  encodedHeader: string;
  encodedSignature: string;
}

/** `value` split as `header..signature`, or undefined when it is not a compact JWS with a detached payload. */
export function splitDetachedJws(value: unknown): DetachedJws | undefined {
  const parts = splitJws(value, true);
  return parts === undefined
    ? undefined
    : { encodedHeader: parts.encodedHeader, encodedSignature: parts.encodedSignature };
}

export interface JwsHeader {
  alg: Algorithm;
  kid: string;
  /** Unchecked: NodeSignerCache.signer checks it. */
  x5c: unknown;
}

/** The protected header of a node signature of type `typ`, or the check it fails (`format` or `header`). */
export function decodeJwsHeader(
  encodedHeader: string,
  typ: string,
): { ok: true; header: JwsHeader } | { ok: false; check: 'format' | 'header'; message: string } {
  const header = decodeJsonHeader(encodedHeader);
  if (header === undefined)
    return { ok: false, check: 'format', message: 'the protected header is not base64url JSON' };
  const { alg, kid, x5c } = header;
  if (typeof alg !== 'string' || !(ALGORITHMS as readonly string[]).includes(alg)) {
    return { ok: false, check: 'header', message: `alg is not one of ${ALGORITHMS.join(', ')}` };
  }
  if (header.typ !== typ) return { ok: false, check: 'header', message: `typ must be ${typ}` };
  if (typeof kid !== 'string' || kid === '') return { ok: false, check: 'header', message: 'kid is missing' };
  if (header.crit !== undefined) return { ok: false, check: 'header', message: 'crit parameters are not understood' };
  return { ok: true, header: { alg: alg as Algorithm, kid, x5c } };
}

/** Whether `jws` is a signature with `alg` over `payload` by the key of `certificate`. */
export function verifyDetached(
  jws: DetachedJws,
  alg: Algorithm,
  certificate: X509Certificate,
  payload: Buffer,
): boolean {
  return verifyJwsSignature(
    alg,
    certificate.publicKey,
    jws.encodedHeader,
    payload.toString('base64url'),
    jws.encodedSignature,
  );
}

function invalid(check: string, message: string): Rejection {
  return reject('HOP_SIGNATURE_INVALID', `${message} (${check})`);
}

/** Parses `dmr-hops`: a JSON list of {node, at} with valid ids and ISO times. */
export function parseHops(value: unknown): Hop[] | undefined {
  if (typeof value !== 'string') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const hops: Hop[] = [];
  for (const item of parsed as unknown[]) {
    if (typeof item !== 'object' || item === null) return undefined;
    const { node, at } = item as Record<string, unknown>;
    if (typeof node !== 'string' || !isValidId(node) || typeof at !== 'string' || Number.isNaN(Date.parse(at))) {
      return undefined;
    }
    hops.push({ node, at });
  }
  return hops;
}

/** The `dmr-hops` value with `node` appended at `at`: what a later hop forwards. */
export function appendHop(hops: readonly Hop[], node: string, at: Date): string {
  return JSON.stringify([...hops, { node, at: at.toISOString() }]);
}

/** The later-hop side: verifies origin signatures against the CA, the expected signer and the denylist. */
export class HopVerifier {
  readonly #options: HopVerifierOptions;
  readonly #signers: NodeSignerCache;

  /** `signers`: a cache to share with a HopChainVerifier (the origin signs entry 0 with the same certificate). */
  constructor(options: HopVerifierOptions, signers: NodeSignerCache = new NodeSignerCache(options)) {
    this.#options = options;
    this.#signers = signers;
  }

  /**
   * Verifies `message`'s origin signature at `now`. Order: the headers'
   * shape, the denylist (origin, then sender), the signer chain and identity
   * (`spiffe://<td>/node/<dmr-origin>`, not revoked on a CRL at hand), `kid`,
   * then the signature over the canonical metadata recomputed from the
   * message, then `dmr-hops`.
   */
  async verify(message: SignableMessage, now: Date): Promise<CheckResult<VerifiedOrigin>> {
    const headers = message.properties.headers ?? {};
    const origin = headers[ORIGIN_HEADER];
    const sender = headers[SENDER_HEADER];
    const sig = headers[SIGNATURE_HEADER];
    if (typeof sig !== 'string' || sig === '') return invalid('format', `${SIGNATURE_HEADER} is missing`);
    if (typeof origin !== 'string' || !isValidId(origin))
      return invalid('format', `${ORIGIN_HEADER} is not a valid id`);
    if (typeof sender !== 'string' || !isValidId(sender))
      return invalid('format', `${SENDER_HEADER} is not a valid id`);
    const jws = splitDetachedJws(sig);
    if (jws === undefined) return invalid('format', `${SIGNATURE_HEADER} is not a compact JWS with a detached payload`);

    if (this.#options.denied.has(origin)) return reject('ORIGIN_DENIED', `origin node ${origin} is on the denylist`);
    if (this.#options.denied.has(sender)) return reject('SENDER_DENIED', `sender ${sender} is on the denylist`);

    const decoded = decodeJwsHeader(jws.encodedHeader, HOP_SIGNATURE_JWS_TYPE);
    if (!decoded.ok) return invalid(decoded.check, decoded.message);
    const { alg, kid, x5c } = decoded.header;

    const trusted = await this.#signers.signer(origin, x5c, now);
    if (!trusted.ok) return invalid(trusted.check, trusted.message);
    const signer = trusted.signer;
    if (kid !== signer.fingerprint) return invalid('kid', 'kid is not the fingerprint of the x5c signer');

    const canonical = canonicalMetadata(message, sender, origin);
    if (!canonical.ok) return invalid('metadata', `${canonical.field} is missing or malformed`);
    if (!verifyDetached(jws, alg, signer.leaf, canonical.bytes)) {
      return invalid('signature', "the signature does not verify for this message's metadata and body");
    }

    const hops = parseHops(headers[HOPS_HEADER]);
    if (hops === undefined) return reject('HOPS_INVALID', `${HOPS_HEADER} is not a JSON list of {node, at} (format)`);
    return {
      ok: true,
      message: { sender, origin, hops, signerFingerprint: signer.fingerprint, certificate: signer.leaf },
    };
  }
}
