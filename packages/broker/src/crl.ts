/**
 * CRLs for RabbitMQ's `{crl_cache, {ssl_crl_hash_dir, ...}}`: Erlang looks a
 * peer's issuer up as `<short name hash>.r<N>` in a directory, re-reading the
 * file when it changes, so revocation takes effect without a broker restart.
 * The hash is OpenSSL's `X509_NAME_hash` (what `openssl crl -hash` prints),
 * computed here so the harness needs no `openssl` binary.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DmrError } from '@dmr/core';
import { content, DerError, encodeElement, encoding, readChildren, readElement, readTime, TAG } from './der.js';

export interface CrlInfo {
  /** OpenSSL-compatible issuer name hash, 8 lowercase hex digits. */
  issuerHash: string;
  /** The name Erlang looks for: `<issuerHash>.r0`. */
  fileName: string;
  thisUpdate: Date;
  /** A CRL without nextUpdate never expires; the harness still refreshes it. */
  nextUpdate: Date | undefined;
  revokedCount: number;
}

export interface InstalledCrl extends CrlInfo {
  path: string;
}

const PEM_BLOCK = /-----BEGIN X509 CRL-----([A-Za-z0-9+/=\s]+)-----END X509 CRL-----/;

export function crlPemToDer(pem: string): Uint8Array {
  const match = PEM_BLOCK.exec(pem);
  if (!match) {
    throw new DmrError('CRL_INVALID', 'no "-----BEGIN X509 CRL-----" block found', {
      hint: 'pass the PEM text returned by CertificateAuthority.createCrl() or `dmr pki crl`',
    });
  }
  return new Uint8Array(Buffer.from((match[1] as string).replace(/\s+/g, ''), 'base64'));
}

export function parseCrl(pem: string): CrlInfo {
  const der = crlPemToDer(pem);
  try {
    const certificateList = readElement(der, 0);
    const tbs = readChildren(der, certificateList)[0];
    if (certificateList.tag !== TAG.SEQUENCE || tbs?.tag !== TAG.SEQUENCE) throw new DerError('not a CertificateList');
    const fields = readChildren(der, tbs);
    // TBSCertList: version is optional (absent in v1 CRLs), then signature, issuer, thisUpdate, nextUpdate?, revoked?
    let index = fields[0]?.tag === TAG.INTEGER ? 1 : 0;
    index++; // signature AlgorithmIdentifier
    const issuer = fields[index++];
    const thisUpdate = fields[index++];
    if (issuer?.tag !== TAG.SEQUENCE || thisUpdate === undefined) throw new DerError('issuer or thisUpdate missing');
    let nextUpdate: Date | undefined;
    const maybeNext = fields[index];
    if (maybeNext && (maybeNext.tag === TAG.UTC_TIME || maybeNext.tag === TAG.GENERALIZED_TIME)) {
      nextUpdate = readTime(der, maybeNext);
      index++;
    }
    const maybeRevoked = fields[index];
    const revokedCount = maybeRevoked?.tag === TAG.SEQUENCE ? readChildren(der, maybeRevoked).length : 0;
    const issuerHash = nameHash(encoding(der, issuer));
    return {
      issuerHash,
      fileName: crlFileName(issuerHash),
      thisUpdate: readTime(der, thisUpdate),
      nextUpdate,
      revokedCount,
    };
  } catch (error) {
    if (error instanceof DerError) {
      throw new DmrError('CRL_INVALID', `the CRL cannot be parsed: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

export function crlFileName(issuerHash: string, index = 0): string {
  if (!/^[0-9a-f]{8}$/.test(issuerHash)) throw new DmrError('INVALID_ARGUMENT', `"${issuerHash}" is not a name hash`);
  return `${issuerHash}.r${index}`;
}

/**
 * OpenSSL's X509_NAME_hash of a DER-encoded Name: SHA-1 over the canonical
 * encoding (string values as trimmed, space-collapsed, ASCII-lowercased
 * UTF8String; the RDN SETs concatenated without the outer SEQUENCE), first
 * four bytes read little-endian. Erlang's public_key:short_name_hash matches.
 */
export function nameHash(nameDer: Uint8Array): string {
  const digest = createHash('sha1').update(canonicalName(nameDer)).digest();
  return digest.readUInt32LE(0).toString(16).padStart(8, '0');
}

export function canonicalName(nameDer: Uint8Array): Uint8Array {
  const name = readElement(nameDer, 0);
  if (name.tag !== TAG.SEQUENCE) throw new DerError('a Name must be a SEQUENCE');
  const parts: Uint8Array[] = [];
  for (const rdn of readChildren(nameDer, name)) {
    if (rdn.tag !== TAG.SET) throw new DerError('a RelativeDistinguishedName must be a SET');
    const attributes = readChildren(nameDer, rdn).map((atv) => {
      const [type, value] = readChildren(nameDer, atv);
      if (atv.tag !== TAG.SEQUENCE || type?.tag !== TAG.OID || value === undefined) {
        throw new DerError('malformed AttributeTypeAndValue');
      }
      const canonicalValue = canonicalValueEncoding(content(nameDer, value), value.tag) ?? encoding(nameDer, value);
      return encodeElement(TAG.SEQUENCE, Buffer.concat([encoding(nameDer, type), canonicalValue]));
    });
    // DER orders SET OF members by their encodings.
    attributes.sort((a, b) => Buffer.compare(a, b));
    parts.push(encodeElement(TAG.SET, Buffer.concat(attributes)));
  }
  return Buffer.concat(parts);
}

/** The string types OpenSSL canonicalises (ASN1_MASK_CANON); others are hashed as they are. */
function decodeDirectoryString(value: Uint8Array, tag: number): string | undefined {
  const buffer = Buffer.from(value);
  switch (tag) {
    case TAG.UTF8_STRING:
      return buffer.toString('utf8');
    case TAG.PRINTABLE_STRING:
    case TAG.T61_STRING:
    case TAG.IA5_STRING:
    case TAG.VISIBLE_STRING:
      return buffer.toString('latin1');
    case TAG.BMP_STRING:
      return buffer.swap16().toString('utf16le');
    case TAG.UNIVERSAL_STRING: {
      let text = '';
      for (let i = 0; i + 3 < buffer.length; i += 4) text += String.fromCodePoint(buffer.readUInt32BE(i));
      return text;
    }
    default:
      return undefined;
  }
}

function canonicalValueEncoding(value: Uint8Array, tag: number): Uint8Array | undefined {
  const text = decodeDirectoryString(value, tag);
  if (text === undefined) return undefined;
  // OpenSSL's isspace set; only ASCII is lowercased, other characters are kept.
  const canonical = text
    .replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '')
    .replace(/[ \t\n\v\f\r]+/g, ' ')
    .replace(/[A-Z]/g, (letter) => letter.toLowerCase());
  return encodeElement(TAG.UTF8_STRING, Buffer.from(canonical, 'utf8'));
}

/**
 * Writes the CRL where Erlang looks for it. The rename makes the swap atomic:
 * a handshake never reads a half-written file (which would refuse everyone).
 * An expired CRL is refused because with `{crl_check, peer}` it would lock
 * out every certificate of the CA.
 */
export async function installCrlFile(crlDir: string, pem: string, now: Date = new Date()): Promise<InstalledCrl> {
  const info = parseCrl(pem);
  if (info.nextUpdate !== undefined && info.nextUpdate.getTime() <= now.getTime()) {
    throw new DmrError('CRL_INVALID', `the CRL expired at ${info.nextUpdate.toISOString()} (nextUpdate has passed)`, {
      hint: 'issue a fresh CRL (`dmr broker crl --dir DIR --pki PKIDIR`); an expired CRL would refuse every client',
      details: { nextUpdate: info.nextUpdate.toISOString() },
    });
  }
  await mkdir(crlDir, { recursive: true, mode: 0o700 });
  const path = join(crlDir, info.fileName);
  const temporary = join(crlDir, `.${info.fileName}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const text = pem.trim() + '\n';
  try {
    await writeFile(temporary, text, { mode: 0o644 });
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  return { ...info, path };
}

export const DEFAULT_CRL_REFRESH_FRACTION = 0.5;
const MIN_REFRESH_MS = 1000;
/** setTimeout's ceiling (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A CRL without nextUpdate is still re-issued now and then so revocations made elsewhere arrive. */
const NO_NEXT_UPDATE_REFRESH_MS = 60 * 60 * 1000;

/**
 * When to re-issue: after a fraction of the remaining validity, so a renewal
 * that fails once still has time to be retried before nextUpdate.
 */
export function crlRefreshDelayMs(
  info: Pick<CrlInfo, 'nextUpdate'>,
  now: Date = new Date(),
  fraction: number = DEFAULT_CRL_REFRESH_FRACTION,
): number {
  if (info.nextUpdate === undefined) return NO_NEXT_UPDATE_REFRESH_MS;
  const remaining = info.nextUpdate.getTime() - now.getTime();
  return Math.min(MAX_TIMER_MS, Math.max(MIN_REFRESH_MS, Math.floor(remaining * fraction)));
}
