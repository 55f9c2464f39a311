/**
 * Installing a new server certificate or trust bundle into a RUNNING broker,
 * as measured on RabbitMQ 3.10.8 / OTP 25 (tls-rotation.integration.test.ts):
 *
 * - Server certificate + key: the nodes run with
 *   `{ssl, [{bypass_pem_cache, true}]}`, so every handshake reads certfile
 *   and keyfile again. Writing the files is all it takes; the very next
 *   handshake presents the new certificate. No CLI call, no restart.
 * - Trust bundle (cacertfile): bypass_pem_cache does NOT cover it. OTP keeps
 *   the decoded CA file in its certificate database, keyed by path and
 *   shared by every live connection; while any TLS connection is open, new
 *   handshakes keep using the old bundle (still so after 40 s). Hence
 *   `reload`: `ssl:clear_pem_cache()` on the node (clearPemCache), effective
 *   for the next handshake.
 *
 * Existing connections keep what they negotiated in both cases.
 */
import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DmrError } from '@dmr/core';

/**
 * The files a broker's TLS listener uses. Replacing them is how a running
 * broker gets a new server certificate (re-read on every handshake thanks to
 * `bypass_pem_cache`), trust bundle (re-read after `ssl:clear_pem_cache()`)
 * or CRL (re-read when the file changes): see installBrokerTls.
 */
export interface BrokerTlsFiles {
  /** Server certificate chain, leaf first (`certfile`). */
  certFile: string;
  /** Its private key (`keyfile`), mode 0600. */
  keyFile: string;
  /** Trust anchors for client certificates (`cacertfile`); on a harness, shared by every node. */
  caFile: string;
  /** `<issuer hash>.r0` CRL files (`ssl_crl_hash_dir`); on a harness, shared by every node. */
  crlDir: string;
}

/** What trustBundleFor reads from a certificate authority (`@dmr/pki`'s CertificateAuthority has it). */
export interface TrustAnchorSource {
  trustBundlePem(): string;
  intermediateCertificatePem: string;
}

/** The trust anchors a broker verifies clients against: the bundle plus the intermediate, each certificate once. */
export function trustBundleFor(ca: TrustAnchorSource): string {
  const blocks = `${ca.trustBundlePem()}\n${ca.intermediateCertificatePem}`.match(
    /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
  );
  return `${[...new Set(blocks ?? [])].join('\n')}\n`;
}

export interface InstallBrokerTlsOptions {
  /** Where the broker reads its TLS files (`BrokerNode.tls`, or the broker's own configuration). */
  tls: Pick<BrokerTlsFiles, 'certFile' | 'keyFile' | 'caFile'>;
  /** New server certificate chain, leaf first; requires privateKeyPem. */
  chainPem?: string;
  /** Private key of the leaf in chainPem; written with mode 0600. */
  privateKeyPem?: string;
  /**
   * New trust anchors for client certificates, replacing the old file whole.
   * During a CA rollover it holds the old and the new roots. With
   * `{crl_check, peer}` a client of a new CA is only accepted once that CA's
   * CRL is in the CRL directory too (installCrlFile).
   */
  trustBundlePem?: string;
  /**
   * Makes the broker re-read cacertfile; required with trustBundlePem (see
   * above), called after the files are written. For harness nodes:
   * `() => clearPemCacheInDir(dir)`; for another broker, the equivalent
   * `rabbitmqctl eval 'ssl:clear_pem_cache().'` with that broker's CLI environment.
   */
  reload?: () => Promise<void>;
  /** Validity checks are made at this time (default now). */
  now?: Date;
}

export interface ServerCertificateInfo {
  /** Lowercase hex, as @dmr/pki writes serials. */
  serial: string;
  subject: string;
  notAfter: string;
  fingerprintSha256: string;
}

export interface InstalledBrokerTls {
  certificate?: ServerCertificateInfo;
  trustBundle?: { certificates: number };
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function parseBlocks(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(CERTIFICATE_BLOCK) ?? [];
  if (blocks.length === 0) {
    throw new DmrError('CERTIFICATE_INVALID', `${what} holds no "-----BEGIN CERTIFICATE-----" block`);
  }
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new DmrError('CERTIFICATE_INVALID', `certificate ${index + 1} of ${what} cannot be parsed`, {
        cause: error,
      });
    }
  });
}

function loadKey(pem: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (error) {
    throw new DmrError('KEY_INVALID', 'the private key cannot be parsed', { cause: error });
  }
}

export function describeCertificate(certificate: X509Certificate): ServerCertificateInfo {
  return {
    serial: certificate.serialNumber.toLowerCase(),
    subject: certificate.subject,
    notAfter: new Date(certificate.validTo).toISOString(),
    fingerprintSha256: certificate.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
}

/**
 * Refuses what would make every later handshake fail: a broker serving a
 * chain whose leaf does not match the key, or an expired leaf, loses all new
 * clients, and nothing tells the operator but the clients' errors.
 */
export function checkServerCertificate(
  chainPem: string,
  privateKeyPem: string,
  now = new Date(),
): ServerCertificateInfo {
  const [leaf] = parseBlocks(chainPem, 'the server certificate chain');
  if (!leaf) throw new DmrError('CERTIFICATE_INVALID', 'the server certificate chain is empty');
  if (!leaf.checkPrivateKey(loadKey(privateKeyPem))) {
    throw new DmrError('CERTIFICATE_INVALID', 'the private key does not belong to the server certificate', {
      hint: 'pass the key the certificate was issued for (chainPem starts with the leaf)',
      details: { subject: leaf.subject },
    });
  }
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now.getTime() || notBefore.getTime() > now.getTime()) {
    throw new DmrError(
      'CERTIFICATE_INVALID',
      `the server certificate is not valid now (${leaf.validFrom} – ${leaf.validTo})`,
      {
        details: { notBefore: notBefore.toISOString(), notAfter: notAfter.toISOString() },
      },
    );
  }
  return describeCertificate(leaf);
}

/** Every block must be a CA certificate: a leaf in cacertfile would make the broker trust whoever holds its key. */
export function checkTrustBundle(pem: string): number {
  const certificates = parseBlocks(pem, 'the trust bundle');
  const leaf = certificates.find((certificate) => !certificate.ca);
  if (leaf) {
    throw new DmrError(
      'CERTIFICATE_INVALID',
      `the trust bundle holds a certificate that is not a CA: ${leaf.subject}`,
      {
        details: { subject: leaf.subject },
      },
    );
  }
  return certificates.length;
}

/**
 * Temp file in the same directory, fsync, rename: a handshake reads either
 * the old file or the new one, never a half-written one.
 */
export async function writeFileAtomic(path: string, text: string, mode: number): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const handle = await open(temporary, 'wx', mode);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

function pemText(pem: string): string {
  return `${pem.trim()}\n`;
}

/**
 * Writes a new server certificate and/or trust bundle where a running broker
 * reads them; the next handshake uses them. Validates everything before it
 * writes anything.
 *
 * Key and certificate are two files: a handshake that starts in the
 * microseconds between the two renames can read a mismatched pair and fail
 * (the client reconnects); every later one gets the new pair.
 */
export async function installBrokerTls(options: InstallBrokerTlsOptions): Promise<InstalledBrokerTls> {
  const { chainPem, privateKeyPem, trustBundlePem } = options;
  if ((chainPem === undefined) !== (privateKeyPem === undefined)) {
    throw new DmrError('INVALID_ARGUMENT', 'chainPem and privateKeyPem go together', {
      hint: 'a certificate without its key (or the reverse) would break every new handshake',
    });
  }
  if (chainPem === undefined && trustBundlePem === undefined) {
    throw new DmrError('INVALID_ARGUMENT', 'nothing to install: give chainPem + privateKeyPem and/or trustBundlePem');
  }
  if (trustBundlePem !== undefined && options.reload === undefined) {
    throw new DmrError(
      'INVALID_ARGUMENT',
      'a trust bundle needs reload: the broker keeps the old one while any connection is open',
      {
        hint: "pass reload: () => clearPemCacheInDir(dir), or run `rabbitmqctl eval 'ssl:clear_pem_cache().'` against the broker",
      },
    );
  }
  const result: InstalledBrokerTls = {};
  if (chainPem !== undefined && privateKeyPem !== undefined) {
    result.certificate = checkServerCertificate(chainPem, privateKeyPem, options.now);
  }
  if (trustBundlePem !== undefined) result.trustBundle = { certificates: checkTrustBundle(trustBundlePem) };

  if (trustBundlePem !== undefined) await writeFileAtomic(options.tls.caFile, pemText(trustBundlePem), 0o644);
  if (chainPem !== undefined && privateKeyPem !== undefined) {
    await writeFileAtomic(options.tls.keyFile, pemText(privateKeyPem), 0o600);
    await writeFileAtomic(options.tls.certFile, pemText(chainPem), 0o644);
  }
  if (trustBundlePem !== undefined) await options.reload?.();
  return result;
}
