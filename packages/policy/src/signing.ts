/**
 * Signing and verifying bundles in OPA's own format (`.signatures.json`
 * holding one JWT whose payload lists every file's digest), so that one
 * artifact serves both nodes and a stock OPA configured with the signer's
 * public key. DMR adds the signer's certificate chain in the JWT header
 * (`x5c`): a node trusts the bundle because the chain ends at a root of its
 * trust bundle and the leaf names the policy signer — the trust it already
 * has for TLS, so no extra key distribution is needed. (A stock OPA ignores
 * x5c and checks the pinned public key instead.)
 *
 * Verification fails closed and says which check failed (details.check).
 */
import { createPublicKey } from 'node:crypto';
import { DmrError } from '@dmr/core';
import { X5cJwsSigner, jwsAlgorithmFor, loadSigningIdentity, verifyX5cJws } from '@dmr/pki';
import { bundleFileDigest } from './bundle-hash.js';
import { SIGNATURES_FILE, bundleInvalid, type PolicyBundle } from './bundle.js';

/** OPA verifies ES256 and ES384 bundle signatures; DMR's policy signer is ECDSA. */
const ALGORITHMS = ['ES256', 'ES384'] as const;
type Algorithm = (typeof ALGORITHMS)[number];

/** The identity (URI SAN) of CentOps' policy-signing certificate. */
export function policySignerSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/centops/policy-signer`;
}

interface SignedFile {
  name: string;
  hash: string;
  algorithm: 'SHA-256';
}

export interface BundleSignerOptions {
  /** The signer's certificate followed by its intermediate(s); not the root. */
  certificateChainPem: string;
  privateKeyPem: string;
}

/** Holds CentOps' policy-signing key; signs bundle files. */
export class BundleSigner {
  readonly algorithm: Algorithm;
  /** sha256 fingerprint of the signer certificate (hex): the JWT `kid`. */
  readonly keyId: string;
  /** The public key a stock OPA is configured with (`--verification-key`). */
  readonly publicKeyPem: string;
  readonly #signer: X5cJwsSigner;

  constructor(options: BundleSignerOptions) {
    const identity = loadSigningIdentity(options.certificateChainPem, options.privateKeyPem, 'the policy signer');
    const algorithm = jwsAlgorithmFor(identity.key, null);
    if (algorithm !== 'ES256' && algorithm !== 'ES384') {
      throw new DmrError('KEY_INVALID', 'the policy signing key must be ECDSA P-256 (ES256) or P-384 (ES384)');
    }
    this.algorithm = algorithm;
    this.keyId = identity.keyId;
    this.publicKeyPem = createPublicKey(identity.key).export({ type: 'spki', format: 'pem' }).toString();
    this.#signer = new X5cJwsSigner(identity, algorithm);
  }

  /** `.signatures.json` for these files (every file but an existing signature). */
  signatures(files: ReadonlyMap<string, Buffer>): Buffer {
    const signed: SignedFile[] = [];
    for (const [name, data] of files) {
      if (name === SIGNATURES_FILE) continue;
      const hash = bundleFileDigest(name, data);
      if (hash === undefined) throw bundleInvalid('format', `${name} is not JSON`);
      signed.push({ name: name.slice(1), hash, algorithm: 'SHA-256' });
    }
    // No `kid` in the header: a stock OPA would look that id up in its key
    // configuration, and the operator names keys there, not us.
    const header = this.#signer.header('JWT', { kid: false });
    const payload = { files: signed, iat: Math.floor(Date.now() / 1000), iss: 'dmr-centops', keyid: this.keyId };
    const jwt = this.#signer.compact(header, JSON.stringify(payload));
    return Buffer.from(JSON.stringify({ signatures: [jwt] }), 'utf8');
  }

  /** The same files plus `.signatures.json`. */
  sign(files: ReadonlyMap<string, Buffer>): Map<string, Buffer> {
    const out = new Map([...files].filter(([name]) => name !== SIGNATURES_FILE));
    out.set(SIGNATURES_FILE, this.signatures(out));
    return out;
  }
}

export interface BundleVerification {
  /** PEM roots the signer chain must end at (during a rollover, old and new). */
  trustBundlePem: string;
  /** The URI SAN the signer certificate must carry, e.g. policySignerSpiffeId(trustDomain). */
  expectedSigner: string;
  /** When to judge certificate validity (default now). */
  now?: Date;
  /** The current CRLs (a node's, refreshed over time): a revoked signer is refused (`revoked`). */
  crlPems?: () => readonly string[];
}

export interface VerifiedSigner {
  uri: string;
  fingerprint: string;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw bundleInvalid('signature', `${what} is not JSON`);
  }
}

function readJwt(bundle: PolicyBundle): {
  payload: Record<string, unknown>;
  jwt: string;
} {
  const raw = bundle.files.get(SIGNATURES_FILE);
  if (raw === undefined) throw bundleInvalid('signature', 'the bundle is not signed (no .signatures.json)');
  const document = parseJson(raw.toString('utf8'), '.signatures.json') as { signatures?: unknown };
  const signatures = document.signatures;
  if (!Array.isArray(signatures) || signatures.length !== 1 || typeof signatures[0] !== 'string') {
    throw bundleInvalid('signature', '.signatures.json must hold exactly one JWT');
  }
  const jwt = signatures[0];
  const parts = jwt.split('.');
  if (parts.length !== 3 || !parts.every((part) => /^[A-Za-z0-9_-]+$/.test(part))) {
    throw bundleInvalid('signature', 'the signature is not a compact JWT');
  }
  const decode = (part: string, what: string) => {
    const value = parseJson(Buffer.from(part, 'base64url').toString('utf8'), what);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw bundleInvalid('signature', `the JWT ${what} is not an object`);
    }
    return value as Record<string, unknown>;
  };
  decode(parts[0] as string, 'header');
  return { payload: decode(parts[1] as string, 'payload'), jwt };
}

/**
 * Verifies a bundle's signature, signer and every file digest. Order
 * matters: no file is trusted before the signer is and the signature holds;
 * then the signed list must match the archive exactly (no file missing,
 * added or changed).
 */
export async function verifyBundle(bundle: PolicyBundle, options: BundleVerification): Promise<VerifiedSigner> {
  const { payload, jwt } = readJwt(bundle);
  const { signer } = await verifyX5cJws(
    jwt,
    {
      algorithms: ALGORITHMS,
      // OPA's format: the key is named by the verifier's configuration, not by the JWT.
      kid: false,
      trustBundlePem: options.trustBundlePem,
      expectedSigner: options.expectedSigner,
      now: options.now ?? new Date(),
      ...(options.crlPems === undefined ? {} : { crlPems: options.crlPems() }),
    },
    (check, message, details) => {
      if (check === 'chain' || check === 'signer' || check === 'revoked') return bundleInvalid(check, message, details);
      return bundleInvalid(check === 'x5c' ? 'chain' : 'signature', message, details);
    },
  );
  verifyDigests(bundle, payload.files);
  return { uri: options.expectedSigner, fingerprint: signer.fingerprintSha256 };
}

function verifyDigests(bundle: PolicyBundle, listed: unknown): void {
  if (!Array.isArray(listed)) throw bundleInvalid('digest', 'the signature lists no files');
  const expected = new Map<string, string>();
  for (const entry of listed as unknown[]) {
    const { name, hash, algorithm } = (entry ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || typeof hash !== 'string' || algorithm !== 'SHA-256') {
      throw bundleInvalid('digest', 'a signed file entry is not {name, hash, algorithm: SHA-256}');
    }
    expected.set(`/${name.replace(/^\/+/, '')}`, hash);
  }
  for (const [name, data] of bundle.files) {
    if (name === SIGNATURES_FILE) continue;
    const want = expected.get(name);
    if (want === undefined) throw bundleInvalid('digest', `${name} is not covered by the signature`, { file: name });
    if (bundleFileDigest(name, data) !== want) {
      throw bundleInvalid('digest', `${name} does not match its signed digest (tampered)`, { file: name });
    }
    expected.delete(name);
  }
  if (expected.size > 0) {
    throw bundleInvalid('digest', `signed files are missing: ${[...expected.keys()].join(', ')}`, {
      missing: [...expected.keys()],
    });
  }
}
