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
import { DmrError } from '@dmr/core';
import { verifyX5cJws } from '@dmr/pki';
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

/**
 * Verifies a signed node configuration and returns the typed document.
 * Order matters: nothing in the payload is looked at before the signer is
 * trusted and the signature verifies.
 */
export async function verifyNodeConfig(jws: string, options: VerifyOptions): Promise<VerifiedNodeConfig> {
  const { payload, signer } = await verifyX5cJws(
    jws,
    {
      algorithms: SIGNING_ALGORITHMS,
      typ: NODE_CONFIG_JWS_TYPE,
      trustBundlePem: options.trustBundlePem,
      expectedSigner: options.expectedSigner,
      now: options.now ?? new Date(),
      ...(options.crlPems === undefined ? {} : { crlPems: options.crlPems }),
    },
    (check, message, details) => signatureInvalid(check === 'x5c' ? 'header' : check, message, details),
  );
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
