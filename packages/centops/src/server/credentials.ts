/**
 * An operator's credentials on disk, and the store record of what the CA
 * issued. Shared by `dmr centops init` (the first admin) and `dmr centops
 * operator add` (later operators, offline), so both write the same files
 * the same way and both leave an audited record.
 */
import { userInfo } from 'node:os';
import { dirname, relative } from 'node:path';
import type { IssuedCertificate, PendingFile, CertificateSubject } from '@dmr/pki';
import type { CertificateRecord, RecordCertificateOptions, Store } from '../store/index.js';
import { renderClientConfig } from './config.js';

export interface OperatorCredentialFiles {
  /** Absolute paths; the YAML refers to the others relative to its own directory. */
  configPath: string;
  certificatePath: string;
  keyPath: string;
  caBundlePath: string;
  /** Written to caBundlePath when given (operator add); init's bundle is already in the CA directory. */
  caBundlePem?: string;
  chainPem: string;
  privateKeyPem: string;
  endpoint: string;
  enrolEndpoint: string;
}

/** Relative paths keep a directory of credentials movable as a whole (loadClientConfig resolves them). */
function near(configPath: string, path: string): string {
  return relative(dirname(configPath), path) || path;
}

/** The key (0600), the chain, optionally the trust bundle, and the operator CLI config (admin.yaml's format). */
export function operatorCredentialFiles(options: OperatorCredentialFiles): PendingFile[] {
  return [
    { path: options.certificatePath, data: options.chainPem, mode: 0o644 },
    { path: options.keyPath, data: options.privateKeyPem, mode: 0o600 },
    ...(options.caBundlePem === undefined
      ? []
      : [{ path: options.caBundlePath, data: options.caBundlePem, mode: 0o644 }]),
    {
      path: options.configPath,
      data: renderClientConfig({
        endpoint: options.endpoint,
        enrolEndpoint: options.enrolEndpoint,
        caBundle: near(options.configPath, options.caBundlePath),
        clientCertificate: near(options.configPath, options.certificatePath),
        clientKey: near(options.configPath, options.keyPath),
      }),
      // It names the key file, not the key; 0600 all the same, it is a credential locator.
      mode: 0o600,
    },
  ];
}

/**
 * The audit "who" of a command run on the CentOps host itself, where nobody
 * presents a certificate: the local user and the command. Distinct from any
 * SPIFFE id, so it cannot be mistaken for an API caller.
 */
export function localActor(command: string): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (some containers): the command alone still says how it happened.
  }
  return `local:${user}:dmr centops ${command}`;
}

/**
 * Records a certificate the CA just issued, so listing, expiry tracking and the audit see it. A client's or
 * node's chain, when the caller has it, is kept too: the certificate directory serves it to peers.
 */
export function recordIssued(
  store: Store,
  subject: CertificateSubject,
  issued: Pick<IssuedCertificate, 'serial' | 'fingerprintSha256' | 'notBefore' | 'notAfter'> & {
    chainPem?: string;
    issuedAt?: Date;
  },
  actor: string,
  options: RecordCertificateOptions = {},
): Promise<CertificateRecord> {
  const mesh = subject.kind === 'client' || subject.kind === 'node';
  return store.recordCertificate(
    {
      serial: issued.serial,
      kind: subject.kind,
      id: subject.id,
      role: subject.kind === 'operator' ? subject.role : null,
      fingerprint: issued.fingerprintSha256,
      notBefore: issued.notBefore.toISOString(),
      notAfter: issued.notAfter.toISOString(),
      ...(mesh && issued.chainPem !== undefined ? { chainPem: issued.chainPem } : {}),
      ...(issued.issuedAt === undefined ? {} : { issuedAt: issued.issuedAt.toISOString() }),
    },
    actor,
    options,
  );
}
