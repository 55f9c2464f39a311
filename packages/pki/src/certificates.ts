/** Small helpers over parsed certificates shared by the CA and the inspector. */
import { createHash, randomBytes } from 'node:crypto';
import { DmrError } from '@dmr/core';
import { pemBodies, toPem } from './pem.js';
import { SubjectKeyIdentifierExtension, X509Certificate } from './x509.js';

export const CERTIFICATE_PEM_TYPE = 'CERTIFICATE';

/**
 * A random positive serial of 16 octets, always written as 32 hex digits.
 * The top bit is clear so the DER INTEGER needs no sign padding, and the
 * first hex digit is non-zero so the hex text survives the round trip
 * through every tool that strips leading zeros (≈126.8 bits of randomness,
 * well above the 64 bits CA/B Forum rules ask for).
 */
export function randomSerial(): string {
  for (;;) {
    const bytes = randomBytes(16);
    bytes[0] = (bytes[0] ?? 0) & 0x7f;
    if ((bytes[0] ?? 0) >= 0x10) return bytes.toString('hex');
  }
}

/** Serial as DMR writes it: lowercase hex without separators or leading zeros. Accepts `0A:1b:…` as OpenSSL prints it. */
export function normaliseSerial(text: string): string {
  const hex = text.trim().replace(/[:\s]/g, '').replace(/^0x/i, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex) || hex.length > 40) {
    throw new DmrError('INVALID_ARGUMENT', `serial "${text}" is not a hexadecimal certificate serial`, {
      hint: 'copy the serial printed by `dmr pki issue` or `dmr pki list`',
    });
  }
  return hex.replace(/^0+(?=.)/, '');
}

export function sha256Hex(der: ArrayBuffer | Uint8Array): string {
  return createHash('sha256')
    .update(der instanceof Uint8Array ? der : new Uint8Array(der))
    .digest('hex');
}

export function certificatePem(certificate: X509Certificate): string {
  return toPem(certificate.rawData, CERTIFICATE_PEM_TYPE);
}

/** Every certificate in a PEM text (a bundle or a chain), in order. */
export function parseCertificates(pem: string, what = 'the certificate file'): X509Certificate[] {
  const bodies = pemBodies(
    pem,
    [CERTIFICATE_PEM_TYPE, 'X509 CERTIFICATE', 'TRUSTED CERTIFICATE'],
    'CERTIFICATE_INVALID',
    what,
    'pass a PEM certificate, e.g. the chain written by `dmr pki issue`',
  );
  return bodies.map((der, index) => {
    try {
      const certificate = new X509Certificate(der);
      // x509 decodes fields lazily; touch the ones we rely on so a damaged certificate fails here.
      void certificate.subject;
      void certificate.publicKey;
      void certificate.notAfter;
      return certificate;
    } catch (error) {
      throw new DmrError(
        'CERTIFICATE_INVALID',
        `certificate ${index + 1} in ${what} cannot be parsed: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  });
}

/** The subjectKeyIdentifier of a certificate, computed the RFC 5280 way when the extension is missing. */
export async function keyIdentifier(certificate: X509Certificate): Promise<string> {
  const extension = certificate.getExtension(SubjectKeyIdentifierExtension);
  if (extension) return extension.keyId;
  return (await SubjectKeyIdentifierExtension.create(certificate.publicKey)).keyId;
}

/** Byte equality of DER names: what OpenSSL's chain building relies on for the names we write. */
export function sameName(a: X509Certificate['subjectName'], b: X509Certificate['subjectName']): boolean {
  return Buffer.from(a.toArrayBuffer()).equals(Buffer.from(b.toArrayBuffer()));
}

/** X.509 stores whole seconds; rounding here keeps what we return equal to what the certificate says. */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}
