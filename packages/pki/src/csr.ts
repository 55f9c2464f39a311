import { DmrError, assertValidTrustDomain } from '@dmr/core';
import { loadSigningKey, weakKeyError, describePublicKey, type KeyDescription } from './keys.js';
import { checkHostNames, readSanExtension, type HostNames, type SanEntries } from './names.js';
import { pemBodies, toPem } from './pem.js';
import { certificateSubject, subjectUris, type CertificateKind, type OperatorRole } from './profiles.js';
import {
  Pkcs10CertificateRequest,
  Pkcs10CertificateRequestGenerator,
  SubjectAlternativeNameExtension,
} from './x509.js';

export const CSR_PEM_TYPES = ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'] as const;
const SAN_OID = '2.5.29.17';
const CSR_HINT = 'pass the PEM file written by `dmr pki csr` or `openssl req -new`';

export interface CsrOptions {
  id: string;
  kind: CertificateKind;
  /** Operators only: the role the certificate is asked for. */
  role?: OperatorRole;
  trustDomain: string;
  privateKeyPem: string;
  dns?: string[];
  ips?: string[];
}

/** The SAN list DMR puts in CSRs and certificates: the SPIFFE URI first (then an operator's role URN), then hosts. */
export function sanExtension(uri: string | readonly string[], hosts: HostNames): SubjectAlternativeNameExtension {
  const uris = typeof uri === 'string' ? [uri] : uri;
  return new SubjectAlternativeNameExtension([
    ...uris.map((value) => ({ type: 'url' as const, value })),
    ...hosts.dns.map((value) => ({ type: 'dns' as const, value })),
    ...hosts.ips.map((value) => ({ type: 'ip' as const, value })),
  ]);
}

/** A PKCS#10 request for `id`, signed by the key it carries; the CA re-checks everything it says. */
export async function createCsr(options: CsrOptions): Promise<string> {
  const subject = certificateSubject(options.kind, options.id, options.role);
  assertValidTrustDomain(options.trustDomain);
  const hosts = checkHostNames(subject, options.dns, options.ips);
  const key = await loadSigningKey(options.privateKeyPem);
  const csr = await Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [options.id] }],
    keys: { privateKey: key.privateKey, publicKey: key.publicKey },
    signingAlgorithm: key.signingAlgorithm,
    extensions: [sanExtension(subjectUris(options.trustDomain, subject), hosts)],
  });
  return toPem(csr.rawData, 'CERTIFICATE REQUEST');
}

export interface CsrExpectation {
  id: string;
  kind: CertificateKind;
  /** Operators only. */
  role?: OperatorRole;
  trustDomain: string;
  /** Canonical host names the certificate will carry (see checkHostNames). */
  hosts: HostNames;
}

export interface CheckedCsr {
  /** SubjectPublicKeyInfo DER of the key to certify. */
  publicKeySpki: Buffer;
  key: KeyDescription;
}

function malformed(message: string, cause?: unknown): DmrError {
  return new DmrError('CSR_MALFORMED', message, {
    hint: CSR_HINT,
    cause,
  });
}

function mismatch(message: string, details: Record<string, unknown>): DmrError {
  return new DmrError('CSR_MISMATCH', message, {
    details,
    hint: 'make a new CSR with `dmr pki csr` using the same --id, --kind, --dns and --ip as this request',
  });
}

/**
 * The checks a CA owes before it signs: the CSR parses, its key is one DMR
 * accepts, it is signed by that key (proof of possession), and nothing it
 * says contradicts the identity being issued. Order matters: an unusable key
 * is refused before its signature is verified, since WebCrypto cannot verify
 * with every curve a CSR may name.
 */
export async function checkCsr(csrPem: string, expected: CsrExpectation): Promise<CheckedCsr> {
  const bodies = pemBodies(csrPem, CSR_PEM_TYPES, 'CSR_MALFORMED', 'the CSR', CSR_HINT);
  if (bodies.length > 1) throw malformed(`the CSR file holds ${bodies.length} requests; give one`);
  let csr: Pkcs10CertificateRequest;
  let publicKeySpki: Buffer;
  let commonNames: string[];
  let san: SanEntries | undefined;
  try {
    csr = new Pkcs10CertificateRequest(bodies[0] ?? Buffer.alloc(0));
    publicKeySpki = Buffer.from(csr.publicKey.rawData);
    commonNames = csr.subjectName.getField('CN');
    const sanValue = csr.getExtension(SAN_OID)?.value;
    san = sanValue === undefined ? undefined : readSanExtension(sanValue);
  } catch (error) {
    throw malformed(`the CSR cannot be parsed: ${error instanceof Error ? error.message : String(error)}`, error);
  }

  let key: KeyDescription;
  try {
    key = describePublicKey(publicKeySpki);
  } catch (error) {
    throw malformed('the public key in the CSR cannot be read', error);
  }
  if (!key.strong) throw weakKeyError(key, 'the key in the CSR');

  // A signature x509 cannot even decode is as unproven as one that does not verify.
  const signatureValid = await csr.verify().catch(() => false);
  if (!signatureValid) {
    throw new DmrError('CSR_SIGNATURE_INVALID', 'the CSR is not signed by the key it carries', {
      hint: 'the file was altered or built wrongly; make a new CSR with `dmr pki csr`',
    });
  }

  if (commonNames.length !== 1 || commonNames[0] !== expected.id) {
    throw mismatch(`the CSR names subject CN ${JSON.stringify(commonNames)} but the request is for "${expected.id}"`, {
      csrCommonNames: commonNames,
      id: expected.id,
    });
  }
  if (san !== undefined) checkCsrSans(san, expected);
  return { publicKeySpki, key };
}

/** SANs in a CSR are a request, never an entitlement: each one must already be in what the CA was asked to issue. */
function checkCsrSans(san: SanEntries, expected: CsrExpectation): void {
  const uris = subjectUris(expected.trustDomain, certificateSubject(expected.kind, expected.id, expected.role));
  const strayUris = san.uris.filter((value) => !uris.includes(value));
  if (strayUris.length > 0) {
    throw mismatch(`the CSR asks for URI ${strayUris.join(', ')} but this certificate is ${uris.join(' ')}`, {
      csrUris: san.uris,
      expected: uris.length === 1 ? uris[0] : uris,
    });
  }
  if (san.other.length > 0) {
    throw mismatch(`the CSR asks for names DMR never issues: ${san.other.join(', ')}`, { csrOtherNames: san.other });
  }
  const strayDns = san.dns.filter((name) => !expected.hosts.dns.includes(name));
  const strayIps = san.ips.filter((ip) => !expected.hosts.ips.includes(ip));
  if (strayDns.length + strayIps.length > 0) {
    throw mismatch(`the CSR asks for host names that were not requested: ${[...strayDns, ...strayIps].join(', ')}`, {
      csrDns: san.dns,
      csrIps: san.ips,
      requestedDns: expected.hosts.dns,
      requestedIps: expected.hosts.ips,
    });
  }
}

/**
 * The subject CN a CSR claims, without checking anything else: lets a CA
 * find out which identity to check the CSR against (enrolment) before it
 * spends a one-time token. checkCsr still decides.
 */
export function csrCommonName(csrPem: string): string {
  const bodies = pemBodies(csrPem, CSR_PEM_TYPES, 'CSR_MALFORMED', 'the CSR', CSR_HINT);
  if (bodies.length !== 1) throw malformed(`the CSR text holds ${bodies.length} requests; give one`);
  let names: string[];
  try {
    names = new Pkcs10CertificateRequest(bodies[0] ?? Buffer.alloc(0)).subjectName.getField('CN');
  } catch (error) {
    throw malformed(`the CSR cannot be parsed: ${error instanceof Error ? error.message : String(error)}`, error);
  }
  if (names.length !== 1 || names[0] === undefined) throw malformed('the CSR must name exactly one subject CN');
  return names[0];
}
