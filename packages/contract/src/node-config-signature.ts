/**
 * Verifying a signed node configuration: a compact JWS over the canonical
 * JSON of the document, with the signer's certificate chain in `x5c` (leaf
 * first, up to but not including the root) and the leaf's sha256
 * fingerprint as `kid`. A node trusts the document because the chain ends at
 * a root of its trust bundle and the leaf names CentOps' config signer — the
 * same trust it already has for TLS, so no extra key distribution is needed.
 * CentOps' signer is packages/centops/src/feed/signing.ts.
 *
 * Verification fails closed and says which check failed (details.check):
 * `format`, `header`, `chain`, `signer`, `revoked`, `kid`, `signature` (all
 * CONFIG_SIGNATURE_INVALID) and `schema`, `node`, `domain`, `revision`
 * (CONFIG_INVALID).
 */
import { compactVerify, decodeProtectedHeader, errors as joseErrors, type CompactJWSHeaderParameters } from 'jose';
import { DmrError } from '@dmr/core';
import { verifyX5cSigner } from '@dmr/pki';
import { nodeConfigProblems, type NodeConfig } from './node-config.js';

/** Explicit typing (RFC 8725 §3.11): a JWS signed for something else is not a node configuration. */
export const NODE_CONFIG_JWS_TYPE = 'dmr-node-config+jws';
export const SIGNING_ALGORITHMS = ['ES256', 'ES384', 'PS256', 'RS256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** The identity CentOps' configuration signer has (URI SAN), for `expectedSigner`. */
export function configSignerSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/centops/config-signer`;
}

export interface VerifyOptions {
  /** PEM roots the signer chain must end at (during a rollover, old and new). */
  trustBundlePem: string;
  /** The URI SAN the signer certificate must carry, e.g. configSignerSpiffeId(trustDomain). */
  expectedSigner: string;
  /** The node the document must be for: the verifying node's own id. */
  expectedNodeId: string;
  /** Refuse documents older than this revision (the node's last applied one). Equal is accepted: a re-send. */
  minRevision?: number;
  /** When to judge certificate validity (default now). */
  now?: Date;
  /** The CRLs the node fetched: a revoked signer is refused (`revoked`). */
  crlPems?: readonly string[];
}

export interface VerifiedNodeConfig {
  config: NodeConfig;
  /** Subject of the certificate that signed it and its fingerprint. */
  signer: { uri: string; fingerprint: string };
}

type SignatureCheck = 'format' | 'header' | 'chain' | 'signer' | 'revoked' | 'kid' | 'signature';
type ContentCheck = 'schema' | 'node' | 'domain' | 'revision';

function signatureInvalid(check: SignatureCheck, message: string, details: Record<string, unknown> = {}): DmrError {
  return new DmrError('CONFIG_SIGNATURE_INVALID', `node configuration refused (${check}): ${message}`, {
    details: { check, ...details },
  });
}

function contentInvalid(check: ContentCheck, message: string, details: Record<string, unknown> = {}): DmrError {
  return new DmrError('CONFIG_INVALID', `node configuration refused (${check}): ${message}`, {
    details: { check, ...details },
  });
}

function readHeader(jws: string): CompactJWSHeaderParameters & { x5c: string[]; kid: string; alg: SigningAlgorithm } {
  if (typeof jws !== 'string' || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(jws.trim())) {
    throw signatureInvalid('format', 'not a compact JWS (three base64url parts)');
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(jws.trim());
  } catch {
    throw signatureInvalid('format', 'the protected header is not base64url JSON');
  }
  const { alg, typ, kid, x5c } = header;
  if (typeof alg !== 'string' || !(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) {
    throw signatureInvalid('header', `alg ${String(alg)} is not one of ${SIGNING_ALGORITHMS.join(', ')}`);
  }
  if (typ !== NODE_CONFIG_JWS_TYPE) throw signatureInvalid('header', `typ must be ${NODE_CONFIG_JWS_TYPE}`);
  if (typeof kid !== 'string' || kid === '') throw signatureInvalid('header', 'kid is missing');
  if (!Array.isArray(x5c) || x5c.length === 0 || !x5c.every((item) => typeof item === 'string')) {
    throw signatureInvalid('header', 'x5c (the signer certificate chain) is missing');
  }
  if (header.crit !== undefined) throw signatureInvalid('header', 'crit parameters are not understood');
  return { ...header, alg: alg as SigningAlgorithm, kid, x5c };
}

/**
 * Verifies a signed node configuration and returns the typed document.
 * Order matters: nothing in the payload is looked at before the signer is
 * trusted and the signature verifies.
 */
export async function verifyNodeConfig(jws: string, options: VerifyOptions): Promise<VerifiedNodeConfig> {
  const now = options.now ?? new Date();
  const header = readHeader(jws);
  const signer = await verifyX5cSigner(
    header.x5c,
    {
      trustBundlePem: options.trustBundlePem,
      expectedSigner: options.expectedSigner,
      now,
      ...(options.crlPems === undefined ? {} : { crlPems: options.crlPems }),
    },
    (check, message, details) => signatureInvalid(check === 'x5c' ? 'header' : check, message, details),
  );
  if (header.kid !== signer.fingerprintSha256) {
    throw signatureInvalid('kid', 'kid is not the fingerprint of the x5c signer certificate');
  }
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(jws.trim(), signer.leaf.publicKey, { algorithms: [header.alg] }));
  } catch (error) {
    const reason = error instanceof joseErrors.JOSEError ? error.code : 'verification failed';
    throw signatureInvalid('signature', `the signature does not verify with the signer's key (${reason})`);
  }
  let document: unknown;
  try {
    document = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw contentInvalid('schema', 'the payload is not UTF-8 JSON');
  }
  const problems = nodeConfigProblems(document);
  if (problems.length > 0) throw contentInvalid('schema', problems.join('; '), { problems });
  const config = document as NodeConfig;
  if (config.node.id !== options.expectedNodeId) {
    throw contentInvalid('node', `the document is for node ${config.node.id}, not ${options.expectedNodeId}`, {
      expected: options.expectedNodeId,
      actual: config.node.id,
    });
  }
  // The node names its broker users and checks user_id by this trust domain: it must be the one whose signer it trusts.
  const signerTrustDomain = /^spiffe:\/\/([^/]+)\//.exec(options.expectedSigner)?.[1];
  if (config.trustDomain !== signerTrustDomain) {
    throw contentInvalid(
      'domain',
      `the document is for trust domain ${config.trustDomain}, not ${signerTrustDomain ?? '(none)'} of its signer`,
      { expected: signerTrustDomain ?? null, actual: config.trustDomain },
    );
  }
  if (options.minRevision !== undefined && config.revision < options.minRevision) {
    throw contentInvalid(
      'revision',
      `revision ${config.revision} is older than ${options.minRevision}, the one already applied`,
      {
        revision: config.revision,
        minRevision: options.minRevision,
      },
    );
  }
  return { config, signer: { uri: options.expectedSigner, fingerprint: signer.fingerprintSha256 } };
}
