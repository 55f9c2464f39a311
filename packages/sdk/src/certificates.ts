/**
 * Certificate checks the SDK does itself with node:crypto (no x509 library
 * needed in applications): reading a PEM chain, its validity and identity,
 * and whether it chains to a trust bundle.
 */
import { X509Certificate } from 'node:crypto';
import { DmrError } from '@dmr/core';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM text, in order (leaf first for a chain). */
export function parseChain(pem: string, what = 'certificate'): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new DmrError('CERTIFICATE_INVALID', `the ${what} holds no PEM certificate`);
  try {
    return blocks.map((block) => new X509Certificate(block));
  } catch (error) {
    throw new DmrError('CERTIFICATE_INVALID', `the ${what} cannot be parsed`, { cause: error });
  }
}

/** The subject CN of a certificate: the DMR id (docs/contract.md "Identities and trust"). */
export function commonName(certificate: X509Certificate): string | undefined {
  for (const line of certificate.subject.split('\n')) {
    if (line.startsWith('CN=')) return line.slice(3);
  }
  return undefined;
}

/** The trust domain of a DMR certificate, from its `spiffe://<td>/<kind>/<id>` URI SAN. */
export function trustDomainOf(certificate: X509Certificate): string | undefined {
  const match = /URI:spiffe:\/\/([^/,\s]+)\//.exec(certificate.subjectAltName ?? '');
  return match?.[1];
}

/**
 * The certificate's SPIFFE id (its one `spiffe://` URI SAN), or undefined
 * when it has none or several. The broker logs the certificate in as this
 * user, so it is also the `user_id` a client must send.
 */
export function spiffeIdOf(certificate: X509Certificate): string | undefined {
  const found = [...(certificate.subjectAltName ?? '').matchAll(/(?:^|, )URI:(spiffe:\/\/[^,\s"]+)/g)];
  return found.length === 1 ? found[0]?.[1] : undefined;
}

export interface CertificateInfo {
  id: string | undefined;
  spiffeId: string | undefined;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  trustDomain: string | undefined;
}

export function describeCertificate(pem: string): CertificateInfo {
  const [leaf] = parseChain(pem);
  if (leaf === undefined) throw new DmrError('CERTIFICATE_INVALID', 'no certificate');
  return {
    id: commonName(leaf),
    spiffeId: spiffeIdOf(leaf),
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    trustDomain: trustDomainOf(leaf),
  };
}

/**
 * Checks that `chainPem` names `expectedId`, is valid at `now`, and — when a
 * trust bundle is given — chains to one of its roots. This is the SDK's
 * default check of a peer certificate used for end-to-end protection; it does
 * not know the CentOps denylist or CRL (see `CertificateCheck`).
 */
export function checkPeerCertificate(
  chainPem: string,
  expectedId: string,
  trustBundlePem: string | undefined,
  now: Date = new Date(),
): void {
  const chain = parseChain(chainPem, `certificate of ${expectedId}`);
  const leaf = chain[0] as X509Certificate;
  const id = commonName(leaf);
  if (id !== expectedId) {
    throw new DmrError('CERTIFICATE_INVALID', `the certificate is for ${id ?? '(no CN)'}, not ${expectedId}`);
  }
  for (const certificate of chain) {
    if (now < new Date(certificate.validFrom) || now > new Date(certificate.validTo)) {
      throw new DmrError('CERTIFICATE_INVALID', `the certificate chain of ${expectedId} is not valid now`, {
        details: { subject: certificate.subject, notBefore: certificate.validFrom, notAfter: certificate.validTo },
      });
    }
  }
  if (trustBundlePem === undefined) return;
  const roots = parseChain(trustBundlePem, 'trust bundle');
  for (let index = 0; index + 1 < chain.length; index += 1) {
    const child = chain[index] as X509Certificate;
    const parent = chain[index + 1] as X509Certificate;
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      throw new DmrError('CERTIFICATE_INVALID', `the certificate chain of ${expectedId} is broken at ${child.subject}`);
    }
  }
  const top = chain[chain.length - 1] as X509Certificate;
  const anchored = roots.some(
    (root) => root.fingerprint256 === top.fingerprint256 || (top.checkIssued(root) && top.verify(root.publicKey)),
  );
  if (!anchored) {
    throw new DmrError('CERTIFICATE_INVALID', `the certificate of ${expectedId} does not chain to the trust bundle`);
  }
}
