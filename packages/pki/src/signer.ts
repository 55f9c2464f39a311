/**
 * Documents CentOps signs (node configurations, policy bundles) carry the
 * signer's certificate chain in a JWS `x5c` header. A verifier trusts the
 * signature because that chain ends at a root of its trust bundle and the
 * leaf names the expected signer (a URI SAN such as
 * `spiffe://<td>/centops/config-signer`): the trust it already has for TLS,
 * so no extra key distribution is needed.
 *
 * Both sides live here once; each caller maps failures to its own catalogue
 * code (CONFIG_SIGNATURE_INVALID, POLICY_BUNDLE_INVALID) through `fail`.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { DmrError } from '@dmr/core';
import { inspectCertificate } from './inspect.js';

export interface SigningIdentity {
  key: KeyObject;
  /** The signer's own certificate (first in the chain). */
  leaf: X509Certificate;
  /** sha256 fingerprint of the leaf (lowercase hex): the JWS `kid`. */
  keyId: string;
  /** The chain as JWS `x5c`: standard base64 of DER (RFC 7515 §4.1.6), not base64url. */
  x5c: string[];
}

function certificatesOf(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new DmrError('CERTIFICATE_INVALID', `${what} holds no PEM certificate`);
  try {
    return blocks.map((block) => new X509Certificate(block));
  } catch (error) {
    throw new DmrError('CERTIFICATE_INVALID', `${what} cannot be parsed`, { cause: error });
  }
}

/**
 * Loads a signing key with its certificate chain (leaf first, intermediates
 * after, no root) and checks that they belong together. `what` names the
 * signer in errors, e.g. "the config signer".
 */
export function loadSigningIdentity(certificateChainPem: string, privateKeyPem: string, what: string): SigningIdentity {
  const chain = certificatesOf(certificateChainPem, `${what} chain`);
  const leaf = chain[0] as X509Certificate;
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (error) {
    throw new DmrError('KEY_INVALID', `${what}'s key cannot be parsed`, { cause: error });
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new DmrError('KEY_INVALID', `${what}'s key does not belong to its certificate`);
  }
  return {
    key,
    leaf,
    keyId: leaf.fingerprint256.replace(/:/g, '').toLowerCase(),
    x5c: chain.map((certificate) => certificate.raw.toString('base64')),
  };
}

/**
 * `x5c`: the header's chain is missing or unparsable; `chain`: it does not
 * reach a trusted root; `signer`: the leaf is not the expected signer;
 * `revoked`: a CRL of the leaf's issuer lists the leaf.
 */
export type SignerCheck = 'x5c' | 'chain' | 'signer' | 'revoked';

export interface SignerExpectation {
  /** PEM roots the chain must end at (during a rollover, old and new). */
  trustBundlePem: string;
  /** The URI SAN the signer certificate must carry. */
  expectedSigner: string;
  now?: Date;
  /**
   * CRLs (PEM) to check the signer against: a listed signer is refused
   * (`revoked`). A CRL whose signature does not verify with the signer's
   * issuer is ignored, and so is a missing one: revocation can only refuse.
   */
  crlPems?: readonly string[];
}

export interface TrustedSigner {
  leaf: X509Certificate;
  fingerprintSha256: string;
}

/**
 * Verifies the signer named by a JWS `x5c` header: a chain of DER
 * certificates to a trusted root, a leaf that is not a CA, names the
 * expected signer and may sign. Returns the leaf whose key must then verify
 * the signature (the caller's job: the signed bytes differ per format).
 */
export async function verifyX5cSigner(
  x5c: unknown,
  expectation: SignerExpectation,
  fail: (check: SignerCheck, message: string, details?: Record<string, unknown>) => Error,
): Promise<TrustedSigner> {
  if (!Array.isArray(x5c) || x5c.length === 0 || !x5c.every((item) => typeof item === 'string')) {
    throw fail('x5c', 'x5c (the signer certificate chain) is missing');
  }
  let chain: X509Certificate[];
  try {
    chain = x5c.map((der: string) => new X509Certificate(Buffer.from(der, 'base64')));
  } catch {
    throw fail('x5c', 'an x5c entry is not a DER certificate');
  }
  const crlPems = (expectation.crlPems ?? []).filter((pem) => pem.trim() !== '');
  const report = await inspectCertificate(chain.map((certificate) => certificate.toString()).join(''), {
    trustBundlePem: expectation.trustBundlePem,
    now: expectation.now ?? new Date(),
    ...(crlPems.length === 0 ? {} : { crlPems: [...crlPems] }),
  });
  if (!report.chain.verified) {
    throw fail(
      'chain',
      `the signer certificate does not chain to a trusted root: ${report.chain.problem ?? 'unknown'}`,
      {
        path: report.chain.path,
      },
    );
  }
  if (report.isCa) throw fail('signer', 'the signer certificate is a CA certificate');
  if (!report.san.uri.includes(expectation.expectedSigner)) {
    throw fail(
      'signer',
      `the signer is ${report.san.uri.join(', ') || report.subject}, not ${expectation.expectedSigner}`,
      {
        expected: expectation.expectedSigner,
        actual: report.san.uri,
      },
    );
  }
  if (report.keyUsage.length > 0 && !report.keyUsage.includes('digitalSignature')) {
    throw fail('signer', 'the signer certificate may not make digital signatures (keyUsage)');
  }
  if (report.revocation === 'revoked') {
    throw fail(
      'revoked',
      `the signer certificate ${report.serial} is revoked (${report.revocationReason ?? 'unspecified'}, CRL ${report.crlNumber ?? '?'})`,
      { serial: report.serial, reason: report.revocationReason, crlNumber: report.crlNumber },
    );
  }
  return { leaf: chain[0] as X509Certificate, fingerprintSha256: report.fingerprintSha256 };
}
