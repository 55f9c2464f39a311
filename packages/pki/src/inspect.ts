import { parseSpiffeId, type ParsedSpiffeId } from '@dmr/core';
import { normaliseSerial, parseCertificates, sameName, sha256Hex } from './certificates.js';
import { crlNumberOf, parseCrls, reasonFromCode, type RevocationReason } from './crl.js';
import { describePublicKey } from './keys.js';
import { readSanExtension, type SanEntries } from './names.js';
import {
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  type X509Certificate,
  type X509Crl,
} from './x509.js';

export interface InspectOptions {
  /** PEM roots to verify against; without it the chain is reported unverified. */
  trustBundlePem?: string;
  /** Extra intermediate certificates (certificates after the first in the inspected PEM are used too). */
  intermediatePems?: string[];
  /** CRLs to check revocation against; each one's signature is verified before it is believed. */
  crlPems?: string[];
  /** The moment to judge validity at (default: now). */
  now?: Date;
}

export type RevocationStatus = 'good' | 'revoked' | 'unknown';

export interface ChainReport {
  verified: boolean;
  /** Why the chain does not verify, in one sentence. */
  problem?: string;
  /** Subjects from the certificate up to the trusted root, as far as the chain could be built. */
  path: string[];
}

export interface CertificateReport {
  subject: string;
  commonName?: string;
  issuer: string;
  serial: string;
  san: { dns: string[]; ip: string[]; uri: string[]; other: string[] };
  /** The principal named by a spiffe:// URI SAN, when there is one. */
  spiffe?: ParsedSpiffeId & { uri: string };
  notBefore: Date;
  notAfter: Date;
  expired: boolean;
  notYetValid: boolean;
  /** `ecdsa-p256`, `rsa-2048`, … */
  keyAlgorithm: string;
  fingerprintSha256: string;
  isCa: boolean;
  keyUsage: string[];
  extendedKeyUsage: string[];
  chain: ChainReport;
  revocation: RevocationStatus;
  revocationReason?: RevocationReason | `code-${number}`;
  revokedAt?: Date;
  /** Why revocation is `unknown`. */
  revocationProblem?: string;
  /** Where the revocation status came from: a verified CRL, or (in the CLI) the CA's own records. */
  revocationSource?: 'crl' | 'ca-records';
  /** The cRLNumber of the CRL that decided `revocation`. */
  crlNumber?: number;
}

const MAX_CHAIN_DEPTH = 6;

const KEY_USAGE_NAMES: Array<[KeyUsageFlags, string]> = [
  [KeyUsageFlags.digitalSignature, 'digitalSignature'],
  [KeyUsageFlags.nonRepudiation, 'nonRepudiation'],
  [KeyUsageFlags.keyEncipherment, 'keyEncipherment'],
  [KeyUsageFlags.dataEncipherment, 'dataEncipherment'],
  [KeyUsageFlags.keyAgreement, 'keyAgreement'],
  [KeyUsageFlags.keyCertSign, 'keyCertSign'],
  [KeyUsageFlags.cRLSign, 'cRLSign'],
  [KeyUsageFlags.encipherOnly, 'encipherOnly'],
  [KeyUsageFlags.decipherOnly, 'decipherOnly'],
];

const EKU_NAMES = new Map<string, string>(Object.entries(ExtendedKeyUsage).map(([name, oid]) => [oid, name]));

function label(certificate: X509Certificate): string {
  return certificate.subject || `(serial ${certificate.serialNumber})`;
}

async function signedBy(certificate: X509Certificate, issuer: X509Certificate): Promise<boolean> {
  if (!sameName(certificate.issuerName, issuer.subjectName)) return false;
  try {
    return await certificate.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

function validityProblem(certificate: X509Certificate, now: Date): string | undefined {
  if (now < certificate.notBefore)
    return `"${label(certificate)}" is not valid before ${certificate.notBefore.toISOString()}`;
  if (now > certificate.notAfter) return `"${label(certificate)}" expired at ${certificate.notAfter.toISOString()}`;
  return undefined;
}

/** Whether `issuer` may sign certificates with `below` CA certificates under it (basicConstraints, keyUsage, pathLen). */
function issuerProblem(issuer: X509Certificate, below: number): string | undefined {
  const constraints = issuer.getExtension(BasicConstraintsExtension);
  if (!constraints?.ca) return `"${label(issuer)}" is not a CA certificate`;
  const usage = issuer.getExtension(KeyUsagesExtension);
  if (usage && (usage.usages & KeyUsageFlags.keyCertSign) === 0) return `"${label(issuer)}" may not sign certificates`;
  if (constraints.pathLength !== undefined && below > constraints.pathLength) {
    return `"${label(issuer)}" allows ${constraints.pathLength} CA certificate(s) below it, the chain has ${below}`;
  }
  return undefined;
}

/**
 * Builds the path from `leaf` to one of `roots` through `intermediates` and
 * checks it the way a TLS peer would: signatures, validity at `now`, CA flags
 * and path lengths. Hand-written because X509ChainBuilder only orders
 * certificates and checks neither dates nor constraints.
 */
async function verifyChain(
  leaf: X509Certificate,
  roots: X509Certificate[],
  intermediates: X509Certificate[],
  now: Date,
): Promise<{ report: ChainReport; path: X509Certificate[] }> {
  const path = [leaf];
  const result = (problem?: string) => ({
    report: { verified: problem === undefined, ...(problem === undefined ? {} : { problem }), path: path.map(label) },
    path,
  });
  const rootPrints = new Set(roots.map((root) => sha256Hex(root.rawData)));
  let anchored = rootPrints.has(sha256Hex(leaf.rawData));
  while (!anchored) {
    const current = path[path.length - 1] as X509Certificate;
    if (path.length > MAX_CHAIN_DEPTH) return result('the chain is longer than any DMR chain can be');
    let next: X509Certificate | undefined;
    for (const root of roots) if (!next && (await signedBy(current, root))) next = root;
    anchored = next !== undefined;
    for (const candidate of intermediates) {
      if (!next && !path.includes(candidate) && (await signedBy(current, candidate))) next = candidate;
    }
    if (!next) {
      const namesake = [...roots, ...intermediates].some((candidate) =>
        sameName(current.issuerName, candidate.subjectName),
      );
      return result(
        namesake
          ? `the signature on "${label(current)}" does not verify with the key of its issuer "${current.issuer}"`
          : `no trusted or given certificate for the issuer "${current.issuer}" of "${label(current)}"`,
      );
    }
    path.push(next);
  }
  for (const certificate of path) {
    const problem = validityProblem(certificate, now);
    if (problem) return result(problem);
  }
  for (let index = 1; index < path.length; index++) {
    const problem = issuerProblem(path[index] as X509Certificate, index - 1);
    if (problem) return result(problem);
  }
  return result();
}

interface RevocationFinding {
  revocation: RevocationStatus;
  revocationReason?: RevocationReason | `code-${number}`;
  revokedAt?: Date;
  revocationProblem?: string;
  revocationSource?: 'crl';
  crlNumber?: number;
}

async function checkRevocation(
  certificate: X509Certificate,
  crls: X509Crl[],
  issuers: X509Certificate[],
  now: Date,
): Promise<RevocationFinding> {
  const unknown = (problem: string): RevocationFinding => ({ revocation: 'unknown', revocationProblem: problem });
  if (crls.length === 0) return unknown('no CRL given');
  const fromIssuer = crls.filter((crl) => sameName(crl.issuerName, certificate.issuerName));
  if (fromIssuer.length === 0) return unknown(`no CRL from "${certificate.issuer}" among those given`);
  const keys = issuers.filter((issuer) => sameName(issuer.subjectName, certificate.issuerName));
  if (keys.length === 0) return unknown(`the certificate of "${certificate.issuer}" is needed to verify its CRL`);

  const trusted: X509Crl[] = [];
  for (const crl of fromIssuer) {
    for (const issuer of keys) {
      if (trusted.includes(crl)) break;
      if (await crl.verify({ publicKey: issuer.publicKey }).catch(() => false)) trusted.push(crl);
    }
  }
  if (trusted.length === 0)
    return unknown(`the CRL is not signed by "${certificate.issuer}" (signature does not verify)`);

  // Several CRLs from one issuer: the newest one speaks.
  const newest = trusted.sort(
    (a, b) => (crlNumberOf(b) ?? 0) - (crlNumberOf(a) ?? 0) || +b.thisUpdate - +a.thisUpdate,
  )[0] as X509Crl;
  const crlNumber = crlNumberOf(newest);
  const source = { revocationSource: 'crl' as const, ...(crlNumber === undefined ? {} : { crlNumber }) };
  const serial = normaliseSerial(certificate.serialNumber);
  const entry = newest.entries.find((candidate) => normaliseSerial(candidate.serialNumber) === serial);
  if (entry) {
    // A listed certificate stays revoked even if the CRL is stale: revocation is never undone by time.
    return {
      revocation: 'revoked',
      revocationReason: reasonFromCode(entry.reason),
      revokedAt: entry.revocationDate,
      ...source,
    };
  }
  // RFC 5280 requires nextUpdate; @peculiar/x509 also misreads the entry list of CRLs without it, so such a CRL proves nothing.
  if (newest.nextUpdate === undefined) return { ...unknown('the CRL has no nextUpdate'), ...source };
  if (now < newest.thisUpdate)
    return { ...unknown(`the CRL is not valid before ${newest.thisUpdate.toISOString()}`), ...source };
  if (now > newest.nextUpdate)
    return { ...unknown(`the CRL expired at ${newest.nextUpdate.toISOString()}`), ...source };
  return { revocation: 'good', ...source };
}

function readSans(certificate: X509Certificate): SanEntries {
  const extension = certificate.getExtension('2.5.29.17');
  return extension ? readSanExtension(extension.value) : { dns: [], ips: [], uris: [], other: [] };
}

/**
 * Everything an operator asks about a certificate: who it names, until when,
 * whether it chains to the given roots, and whether a given CRL revokes it.
 * The first certificate in `pem` is inspected; any after it (a chain file)
 * are used as intermediates.
 */
export async function inspectCertificate(pem: string, options: InspectOptions = {}): Promise<CertificateReport> {
  const [certificate, ...chainRest] = parseCertificates(pem, 'the certificate');
  if (!certificate) throw new Error('unreachable: parseCertificates returns at least one certificate');
  const now = options.now ?? new Date();
  const roots =
    options.trustBundlePem === undefined ? [] : parseCertificates(options.trustBundlePem, 'the trust bundle');
  const intermediates = [
    ...chainRest,
    ...(options.intermediatePems ?? []).flatMap((text, index) => parseCertificates(text, `intermediate ${index + 1}`)),
  ];
  const crls = (options.crlPems ?? []).flatMap((text, index) => parseCrls(text, `CRL ${index + 1}`));

  const san = readSans(certificate);
  const spiffe = san.uris
    .map((uri) => ({ uri, parsed: parseSpiffeId(uri) }))
    .find((candidate) => candidate.parsed !== undefined);
  const keyUsage = certificate.getExtension(KeyUsagesExtension);
  const extendedKeyUsage = certificate.getExtension(ExtendedKeyUsageExtension);
  const chain =
    roots.length === 0
      ? {
          report: { verified: false, problem: 'no trust bundle given', path: [label(certificate)] },
          path: [certificate],
        }
      : await verifyChain(certificate, roots, intermediates, now);
  const revocation = await checkRevocation(
    certificate,
    crls,
    [...chain.path.slice(1), ...intermediates, ...roots],
    now,
  );
  const commonName = certificate.subjectName.getField('CN')[0];

  return {
    subject: certificate.subject,
    ...(commonName === undefined ? {} : { commonName }),
    issuer: certificate.issuer,
    serial: normaliseSerial(certificate.serialNumber),
    san: { dns: san.dns, ip: san.ips, uri: san.uris, other: san.other },
    ...(spiffe?.parsed ? { spiffe: { ...spiffe.parsed, uri: spiffe.uri } } : {}),
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
    expired: now > certificate.notAfter,
    notYetValid: now < certificate.notBefore,
    keyAlgorithm: describePublicKey(certificate.publicKey.rawData).algorithm,
    fingerprintSha256: sha256Hex(certificate.rawData),
    isCa: certificate.getExtension(BasicConstraintsExtension)?.ca ?? false,
    keyUsage: keyUsage
      ? KEY_USAGE_NAMES.filter(([flag]) => (keyUsage.usages & flag) !== 0).map(([, name]) => name)
      : [],
    // Array.from: x509's usage list is an Array subclass that would survive .map() and print oddly.
    extendedKeyUsage: Array.from(
      extendedKeyUsage?.usages ?? [],
      (usage) => EKU_NAMES.get(String(usage)) ?? String(usage),
    ),
    chain: chain.report,
    ...revocation,
  };
}
