import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import { DmrError, REVOCATION_REASONS } from '@dmr/core';
import type { webcrypto } from 'node:crypto';
import type { SignatureAlgorithm } from './keys.js';
import { pemBodies, toPem } from './pem.js';
import {
  AuthorityKeyIdentifierExtension,
  Extension,
  X509Crl,
  X509CrlGenerator,
  X509CrlReason,
  type X509Certificate,
} from './x509.js';

// One list with the events catalogue's certificate.revoked reasons (@dmr/core events.ts).
export { REVOCATION_REASONS };
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

/** RFC 5280 5.3.1 CRLReason codes. */
export const REASON_CODES: Record<RevocationReason, X509CrlReason> = {
  unspecified: X509CrlReason.unspecified,
  keyCompromise: X509CrlReason.keyCompromise,
  caCompromise: X509CrlReason.cACompromise,
  affiliationChanged: X509CrlReason.affiliationChanged,
  superseded: X509CrlReason.superseded,
  cessationOfOperation: X509CrlReason.cessationOfOperation,
  certificateHold: X509CrlReason.certificateHold,
  privilegeWithdrawn: X509CrlReason.privilegeWithdrawn,
};

export function isRevocationReason(value: string): value is RevocationReason {
  return (REVOCATION_REASONS as readonly string[]).includes(value);
}

export function assertRevocationReason(value: string): asserts value is RevocationReason {
  if (!isRevocationReason(value)) {
    throw new DmrError(
      'INVALID_ARGUMENT',
      `revocation reason "${value}" is not one of ${REVOCATION_REASONS.join(', ')}`,
      {
        hint: 'use keyCompromise when the private key may be known to others, otherwise the closest other reason',
      },
    );
  }
}

/** The reason name for a CRL entry; an entry without a reasonCode extension means "unspecified" (RFC 5280 5.3.1). */
export function reasonFromCode(code: X509CrlReason | undefined): RevocationReason | `code-${number}` {
  if (code === undefined) return 'unspecified';
  const name = REVOCATION_REASONS.find((reason) => REASON_CODES[reason] === code);
  return name ?? `code-${code}`;
}

/**
 * OpenSSL and RabbitMQ/Erlang read CRLs under the "X509 CRL" PEM label;
 * @peculiar/x509 writes "CRL", so every CRL leaving this package is
 * re-labelled here.
 */
export const CRL_PEM_TYPE = 'X509 CRL';

export interface CrlEntry {
  serial: string;
  revokedAt: Date;
  reason: RevocationReason;
}

export interface CrlParams {
  issuer: X509Certificate;
  /** Hex key id of the issuer (its subjectKeyIdentifier), carried as authorityKeyIdentifier. */
  issuerKeyId: string;
  signingKey: webcrypto.CryptoKey;
  signingAlgorithm: SignatureAlgorithm;
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  entries: readonly CrlEntry[];
}

/** A CRL as PEM. It carries cRLNumber and authorityKeyIdentifier, which x509 v2 CRL consumers (OpenSSL, Erlang) look for. */
export async function buildCrl(params: CrlParams): Promise<string> {
  const crl = await X509CrlGenerator.create({
    issuer: params.issuer.subjectName,
    thisUpdate: params.thisUpdate,
    nextUpdate: params.nextUpdate,
    signingKey: params.signingKey,
    signingAlgorithm: params.signingAlgorithm,
    extensions: [
      // x509 has no class for cRLNumber; the ASN.1 type comes from @peculiar/asn1-x509.
      new Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(params.crlNumber))),
      new AuthorityKeyIdentifierExtension(params.issuerKeyId, false),
    ],
    entries: params.entries.map((entry) => ({
      serialNumber: entry.serial,
      revocationDate: entry.revokedAt,
      // RFC 5280 5.3.1: the unspecified reason SHOULD be expressed by leaving reasonCode out.
      ...(entry.reason === 'unspecified' ? {} : { reason: REASON_CODES[entry.reason] }),
    })),
  });
  return toPem(crl.rawData, CRL_PEM_TYPE);
}

/** Parses every CRL in `pem` (either PEM label). */
export function parseCrls(pem: string, what = 'the CRL'): X509Crl[] {
  const bodies = pemBodies(
    pem,
    [CRL_PEM_TYPE, 'CRL'],
    'CRL_INVALID',
    what,
    'pass the PEM file written by `dmr pki crl`',
  );
  return bodies.map((der) => {
    try {
      const crl = new X509Crl(der);
      void crl.thisUpdate; // fields are decoded lazily; force a read so a broken CRL fails here
      return crl;
    } catch (error) {
      throw new DmrError(
        'CRL_INVALID',
        `${what} cannot be parsed: ${error instanceof Error ? error.message : String(error)}`,
        {
          cause: error,
        },
      );
    }
  });
}

/** The cRLNumber of a parsed CRL, if it has one. */
export function crlNumberOf(crl: X509Crl): number | undefined {
  const extension = crl.getExtension(id_ce_cRLNumber);
  if (!extension) return undefined;
  return AsnConvert.parse(extension.value, CRLNumber).value;
}
