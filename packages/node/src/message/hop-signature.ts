/**
 * The origin signature: the origin node, after its checks, records the
 * authenticated sender (`dmr-sender`) and itself (`dmr-origin`) and signs the
 * canonical metadata plus a SHA-256 digest of the body with its node key
 * (`dmr-sig`), together with its own `dmr-hops` entry (when, and to which
 * node). Every later hop verifies that signature before it trusts any
 * metadata, then appends itself to `dmr-hops` (hop-chain.ts).
 *
 * The signed bytes (canonical metadata `dmr-hop-sig/2`), the JWS header and
 * the `dmr-hops` format are wire contract: @dmr/contract's hops.ts and
 * docs/contract.md "Hops". This file holds what needs the node's key and
 * certificates: signing, and verifying a signer against the CA.
 */
import type { X509Certificate } from 'node:crypto';
import { isValidId, spiffeId } from '@dmr/core';
import {
  HOP_SIGNATURE_ALGORITHMS,
  HOP_SIGNATURE_JWS_TYPE,
  canonicalMetadata,
  splitDetachedJws,
  type DetachedJws,
  type HopSignatureAlgorithm,
  type OriginEntry,
  ORIGIN_HEADER,
  SENDER_HEADER,
  SIGNATURE_HEADER,
  reject,
  type CheckResult,
  type Rejection,
  type SignableMessage,
} from '@dmr/contract';
import {
  X5cJwsSigner,
  decodeJwsHeader as decodeJsonHeader,
  jwsAlgorithmFor,
  loadSigningIdentity,
  verifyJwsSignature,
  verifyX5cSigner,
  type SignerCheck,
} from '@dmr/pki';

const ALGORITHMS = HOP_SIGNATURE_ALGORITHMS;
export type Algorithm = HopSignatureAlgorithm;

// The wire parts (header names, signed bytes, the local delivery's `dmr-hops` v1) are the contract's; re-exported for the node's API.
export {
  HOP_SIGNATURE_JWS_TYPE,
  HOP_SIGNATURE_VERSION,
  appendHop,
  canonicalMetadata,
  parseHops,
  splitDetachedJws,
  type DetachedJws,
  type Hop,
  type OriginEntry,
} from '@dmr/contract';

/**
 * A node's key with its certificate chain, loaded once: it makes every
 * signature a node puts on a message (`dmr-sig`, and its `dmr-hops` entries
 * in hop-chain.ts), each a compact JWS with a detached payload and the header
 * `{alg, typ, kid, x5c}`. Not exported from the package: HopChainSigner is
 * the API.
 */
export class NodeSigningKey {
  readonly algorithm: Algorithm;
  readonly #signer: X5cJwsSigner;
  /** The encoded header per `typ`: the same for every message, so encoded once. */
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

  /** `base64url(header)..base64url(signature)` over `payload` (RFC 7515 appendix F). */
  signDetached(typ: string, payload: Buffer): string {
    let encodedHeader = this.#headers.get(typ);
    if (encodedHeader === undefined) {
      encodedHeader = this.#signer.header(typ, { x5c: true });
      this.#headers.set(typ, encodedHeader);
    }
    return this.#signer.detached(encodedHeader, payload);
  }
}

/**
 * The `dmr-sig` value `key` makes for `message` as sent by `sender` through
 * `origin`, whose own `dmr-hops` entry is `entry` (hop protocol v3: one
 * signature covers the message and the origin's entry).
 */
export function originSignature(
  key: NodeSigningKey,
  message: SignableMessage,
  sender: string,
  origin: string,
  entry: OriginEntry,
): string {
  const canonical = canonicalMetadata(message, sender, origin, entry);
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

/** What a later hop may trust once the signature verified (with the origin's `dmr-hops` entry it covers). */
export interface VerifiedOrigin {
  sender: string;
  origin: string;
  /** sha256 fingerprint of the origin node certificate. */
  signerFingerprint: string;
  /** The origin node certificate, verified. */
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
 * The cache key of a memoized header's x5c array, for the one node its chain names. Only the first node asked
 * about is kept per array: a hostile peer naming a new node with the same chain on every message would
 * otherwise grow this without bound (its keys are computed afresh instead, as before the memo).
 */
const cacheKeys = new WeakMap<readonly unknown[], { node: string; key: string }>();

/** The signer cache's key of (`node`, `x5c`), made once per x5c array instead of once per signature. */
function cacheKeyOf(node: string, x5c: readonly unknown[]): string {
  const known = cacheKeys.get(x5c);
  if (known !== undefined && known.node === node) return known.key;
  // JSON, not a join: ["a\nb"] and ["a", "b"] must not share an entry. A mutable array would go stale here,
  // but the arrays that come back are the memo's, frozen; any other one is keyed afresh on each use.
  const key = `${node}\n${JSON.stringify(x5c)}`;
  if (known === undefined && Object.isFrozen(x5c)) cacheKeys.set(x5c, { node, key });
  return key;
}

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
  /**
   * Verifications under way, per cache key. A router has up to its prefetch
   * of messages in flight, all signed by the same few nodes: without this,
   * every one of them that arrives while an entry is missing or expired (at
   * start, after a new verifier, every chainCacheMs) verifies the same chain
   * again, and the whole window waits behind hundreds of identical chain
   * checks (measured: the first verification at a relay took seconds under
   * load, docs/decisions/0027-mesh-path-speed.md). One check, shared.
   */
  readonly #verifying = new Map<string, Promise<{ ok: true; signer: NodeSigner } | SignerFailure>>();

  constructor(options: NodeSignerCacheOptions) {
    this.#options = options;
    this.#crlPems = (options.crlPems ?? []).filter((pem) => pem.trim() !== '');
  }

  /** The signer of a JWS whose `x5c` is `x5c`, checked to be `spiffe://<td>/node/<node>` at `now`. */
  signer(node: string, x5c: unknown, now: Date): Promise<{ ok: true; signer: NodeSigner } | SignerFailure> {
    const key = Array.isArray(x5c) ? cacheKeyOf(node, x5c) : undefined;
    if (key === undefined) return this.#verify(node, x5c, now, undefined);
    const at = now.getTime();
    const cached = this.#cache.get(key);
    if (cached !== undefined && cached.from <= at && cached.until > at)
      return Promise.resolve({ ok: true, signer: cached });
    const running = this.#verifying.get(key);
    if (running !== undefined) return running;
    const verifying = this.#verify(node, x5c, now, key).finally(() => this.#verifying.delete(key));
    this.#verifying.set(key, verifying);
    return verifying;
  }

  async #verify(
    node: string,
    x5c: unknown,
    now: Date,
    key: string | undefined,
  ): Promise<{ ok: true; signer: NodeSigner } | SignerFailure> {
    const cacheMs = this.#options.chainCacheMs ?? 60_000;
    const at = now.getTime();
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

export interface JwsHeader {
  alg: Algorithm;
  kid: string;
  /** Unchecked: NodeSignerCache.signer checks it. */
  x5c: unknown;
}

type DecodedJwsHeader = { ok: true; header: JwsHeader } | { ok: false; check: 'format' | 'header'; message: string };

const HEADER_MEMO_MAX = 256;
/**
 * Headers decoded, by `typ` and encoded header. A node puts the same header
 * (alg, typ, kid and its x5c chain, ≈ 2 kB) on every signature it makes, so
 * a hop sees the same few encoded headers on every message: decoding one is
 * base64 plus JSON.parse of its chain, and keying the signer cache by the
 * chain was a JSON.stringify of it, per signature (docs/decisions/0037-mesh-speed.md).
 * A memo of a pure function of the string: nothing about trust is cached
 * here (NodeSignerCache checks the chain). Bounded; cleared when full, which
 * is always safe. Only well-formed headers are kept: a forger's garbage
 * costs it the decode every time, and never evicts by volume what a
 * legitimate peer sends more than 256 distinct headers' worth.
 */
const decodedHeaders = new Map<string, Map<string, { ok: true; header: JwsHeader }>>();

/** The protected header of a node signature of type `typ`, or the check it fails (`format` or `header`). */
export function decodeJwsHeader(encodedHeader: string, typ: string): DecodedJwsHeader {
  let byHeader = decodedHeaders.get(typ);
  if (byHeader === undefined) {
    byHeader = new Map();
    decodedHeaders.set(typ, byHeader);
  }
  const memo = byHeader.get(encodedHeader);
  if (memo !== undefined) return memo;
  const decoded = decodeUncached(encodedHeader, typ);
  if (decoded.ok) {
    if (byHeader.size >= HEADER_MEMO_MAX) byHeader.clear();
    byHeader.set(encodedHeader, decoded);
  }
  return decoded;
}

function decodeUncached(encodedHeader: string, typ: string): DecodedJwsHeader {
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
  // Shared by every message with this header from now on: nobody may change it.
  if (Array.isArray(x5c)) Object.freeze(x5c);
  return Object.freeze({ ok: true, header: Object.freeze({ alg: alg as Algorithm, kid, x5c }) });
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

/**
 * The later-hop side: verifies origin signatures against the CA, the expected signer and the denylist.
 * HopChainVerifier runs it with the origin's `dmr-hops` entry it parsed; not exported from the package.
 */
export class HopVerifier {
  readonly #options: HopVerifierOptions;
  readonly #signers: NodeSignerCache;

  /** `signers`: a cache to share with a HopChainVerifier (hop entries are signed by node certificates too). */
  constructor(options: HopVerifierOptions, signers: NodeSignerCache = new NodeSignerCache(options)) {
    this.#options = options;
    this.#signers = signers;
  }

  /**
   * Verifies `message`'s origin signature at `now`, over its metadata and
   * the origin's `dmr-hops` entry `entry` (as the message carries it). Order:
   * the headers' shape, the denylist (origin, then sender), the signer chain
   * and identity (`spiffe://<td>/node/<dmr-origin>`, not revoked on a CRL at
   * hand), `kid`, then the signature over the canonical metadata recomputed
   * from the message.
   */
  async verify(message: SignableMessage, entry: OriginEntry, now: Date): Promise<CheckResult<VerifiedOrigin>> {
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

    const canonical = canonicalMetadata(message, sender, origin, entry);
    if (!canonical.ok) return invalid('metadata', `${canonical.field} is missing or malformed`);
    if (!verifyDetached(jws, alg, signer.leaf, canonical.bytes)) {
      return invalid(
        'signature',
        "the signature does not verify for this message's metadata, body and the origin's hop entry",
      );
    }
    return { ok: true, message: { sender, origin, signerFingerprint: signer.fingerprint, certificate: signer.leaf } };
  }
}
