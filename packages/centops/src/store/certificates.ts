/**
 * The record of every certificate CentOps' CA issued, for listing, expiry
 * tracking and revocation. The CA signs; this is the database side of it.
 * Recording and revoking are audited; they do not change the config feed's
 * revision (the denylist does, see denylist.ts).
 */
import type { Kysely, Selectable } from 'kysely';
import { DmrError, assertPrincipalKind, assertValidId } from '@dmr/core';
import { assertRevocationReason, normaliseSerial, type RevocationReason } from '@dmr/pki';
import { writeAudit } from './audit.js';
import { decodeCursor, pageLimit, toPage } from './cursor.js';
import { principalKindOf } from './principals.js';
import type { CertificatesTable, Database, Db } from './schema.js';
import { writeTransaction } from './tx.js';
import type { CertificateQuery, CertificateRecord, NewCertificate, Page } from './types.js';

function isoTime(value: string, what: string): string {
  const time = new Date(value);
  if (typeof value !== 'string' || Number.isNaN(time.getTime())) {
    throw new DmrError('INVALID_ARGUMENT', `${what} "${String(value)}" is not an ISO 8601 time`);
  }
  return time.toISOString();
}

function normaliseFingerprint(value: string): string {
  const hex = String(value).replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new DmrError('INVALID_ARGUMENT', 'the fingerprint must be the sha256 of the certificate (64 hex digits)');
  }
  return hex;
}

function toRecord(row: Selectable<CertificatesTable>): CertificateRecord {
  return {
    serial: row.serial,
    kind: principalKindOf(row.principal_kind),
    id: row.principal_id,
    fingerprint: row.fingerprint,
    notBefore: row.not_before,
    notAfter: row.not_after,
    recordedAt: row.recorded_at,
    revokedAt: row.revoked_at,
    revocationReason: row.revocation_reason as RevocationReason | null,
  };
}

async function findCertificate(db: Db, serial: string): Promise<CertificateRecord | undefined> {
  const row = await db.selectFrom('certificates').selectAll().where('serial', '=', serial).executeTakeFirst();
  return row === undefined ? undefined : toRecord(row);
}

function unknownSerial(serial: string): DmrError {
  return new DmrError('UNKNOWN_SERIAL', `no certificate with serial ${serial} was recorded`, {
    details: { serial },
    hint: 'list certificates to find the serial',
  });
}

export async function recordCertificate(
  db: Kysely<Database>,
  certificate: NewCertificate,
  actor: string,
  now: Date,
): Promise<CertificateRecord> {
  assertPrincipalKind(certificate.kind);
  assertValidId(certificate.id);
  const serial = normaliseSerial(certificate.serial);
  const fingerprint = normaliseFingerprint(certificate.fingerprint);
  const notBefore = isoTime(certificate.notBefore, 'notBefore');
  const notAfter = isoTime(certificate.notAfter, 'notAfter');
  if (notAfter <= notBefore) throw new DmrError('INVALID_ARGUMENT', 'notAfter must be later than notBefore');
  const at = now.toISOString();
  return writeTransaction(db, async (trx) => {
    const clash = await trx
      .selectFrom('certificates')
      .select(['serial', 'fingerprint'])
      .where((eb) => eb.or([eb('serial', '=', serial), eb('fingerprint', '=', fingerprint)]))
      .executeTakeFirst();
    if (clash !== undefined) {
      const what = clash.serial === serial ? `serial ${serial}` : `fingerprint ${fingerprint}`;
      throw new DmrError('CONFLICT', `a certificate with ${what} is already recorded`, { details: { serial } });
    }
    const row = {
      serial,
      principal_kind: certificate.kind,
      principal_id: certificate.id,
      fingerprint,
      not_before: notBefore,
      not_after: notAfter,
      recorded_at: at,
      revoked_at: null,
      revocation_reason: null,
    };
    await trx.insertInto('certificates').values(row).execute();
    await writeAudit(trx, [
      {
        at,
        actor,
        action: 'certificate.record',
        kind: 'Certificate',
        id: certificate.id,
        detail: { serial, principalKind: certificate.kind, fingerprint, notAfter },
      },
    ]);
    return toRecord(row);
  });
}

export async function getCertificate(db: Kysely<Database>, serial: string): Promise<CertificateRecord> {
  const wanted = normaliseSerial(serial);
  const record = await findCertificate(db, wanted);
  if (record === undefined) throw unknownSerial(wanted);
  return record;
}

export async function listCertificates(
  db: Kysely<Database>,
  query: CertificateQuery,
): Promise<Page<CertificateRecord>> {
  const limit = pageLimit(query);
  const scope = 'certificates';
  let select = db.selectFrom('certificates').selectAll();
  if (query.cursor !== undefined) select = select.where('serial', '>', decodeCursor(scope, query.cursor, 'string'));
  if (query.id !== undefined) select = select.where('principal_id', '=', query.id);
  if (query.kind !== undefined) select = select.where('principal_kind', '=', query.kind);
  if (query.revoked === true) select = select.where('revoked_at', 'is not', null);
  if (query.revoked === false) select = select.where('revoked_at', 'is', null);
  const rows = await select
    .orderBy('serial')
    .limit(limit + 1)
    .execute();
  return toPage(rows, limit, scope, toRecord, (row) => row.serial);
}

export async function revokeCertificate(
  db: Kysely<Database>,
  serial: string,
  reason: RevocationReason,
  actor: string,
  now: Date,
): Promise<CertificateRecord> {
  const wanted = normaliseSerial(serial);
  assertRevocationReason(reason);
  const at = now.toISOString();
  return writeTransaction(db, async (trx) => {
    const record = await findCertificate(trx, wanted);
    if (record === undefined) throw unknownSerial(wanted);
    if (record.revokedAt !== null) {
      throw new DmrError('ALREADY_REVOKED', `certificate ${wanted} was already revoked at ${record.revokedAt}`, {
        details: { serial: wanted, reason: record.revocationReason },
      });
    }
    await trx
      .updateTable('certificates')
      .set({ revoked_at: at, revocation_reason: reason })
      .where('serial', '=', wanted)
      .execute();
    await writeAudit(trx, [
      {
        at,
        actor,
        action: 'certificate.revoke',
        kind: 'Certificate',
        id: record.id,
        detail: { serial: wanted, principalKind: record.kind, reason },
      },
    ]);
    return { ...record, revokedAt: at, revocationReason: reason };
  });
}
