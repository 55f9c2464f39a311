/**
 * The record of every certificate CentOps' CA issued, for listing, expiry
 * tracking and revocation. The CA signs; this is the database side of it.
 * Mesh certificates (client, node), operators' (with their role) and
 * CentOps' own (since migration 0002) are all recorded here.
 * Recording and revoking are audited, with digests of the record before and
 * after. A client's or node's certificate is in every node's document (the
 * directory's fingerprints, links' peer certificates), so recording or
 * revoking one bumps the revision in the same transaction: nodes learn of an
 * enrolment, a renewal or a revocation at once. Operators' and CentOps' own
 * certificates are in no node document and leave the revision alone.
 */
import { X509Certificate } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import { DmrError, canonicalDigest } from '@dmr/core';
import {
  assertRevocationReason,
  certificateSubject,
  isCertificateKind,
  isOperatorRole,
  normaliseSerial,
  type CertificateKind,
  type RevocationReason,
} from '@dmr/pki';
import { writeAudit } from './audit.js';
import { denyInTransaction } from './denylist.js';
import { decodeCursor, pageLimit, toPage } from './cursor.js';
import type { CertificatesTable, Database, Db } from './schema.js';
import { bumpRevision, writeTransaction } from './tx.js';
import type {
  CertificateQuery,
  CertificateRecord,
  CertificateWithChain,
  NewCertificate,
  Page,
  RecordCertificateOptions,
  RevokeCertificateOptions,
  RevokedCertificate,
} from './types.js';

/** Client and node certificates are in node documents; their changes are revisions. */
function inNodeDocuments(kind: CertificateKind): kind is 'client' | 'node' {
  return kind === 'client' || kind === 'node';
}

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

const CHAIN_MAX = 65_536;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * A chain to keep: PEM certificates only (nothing else, so no key can slip
 * in), at most 64 KiB, whose leaf is the certificate being recorded.
 */
function checkedChain(value: unknown, fingerprint: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > CHAIN_MAX) {
    throw new DmrError('INVALID_ARGUMENT', `the certificate chain must be PEM text of at most ${CHAIN_MAX} characters`);
  }
  const blocks = value.match(PEM_CERTIFICATE) ?? [];
  const rest = value.replace(PEM_CERTIFICATE, '').trim();
  if (blocks.length === 0 || rest !== '') {
    throw new DmrError('INVALID_ARGUMENT', 'the certificate chain must hold PEM certificates and nothing else');
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0] as string);
    for (const block of blocks.slice(1)) new X509Certificate(block);
  } catch (error) {
    throw new DmrError('INVALID_ARGUMENT', 'the certificate chain cannot be parsed', { cause: error });
  }
  if (leaf.fingerprint256.replace(/:/g, '').toLowerCase() !== fingerprint) {
    throw new DmrError('INVALID_ARGUMENT', 'the chain’s leaf is not the certificate with this fingerprint');
  }
  return value;
}

function certificateKindOf(value: string): CertificateKind {
  // The table's CHECK allows nothing else; a stray value is corruption, not a kind to guess.
  if (!isCertificateKind(value)) throw new DmrError('INTERNAL', `certificate kind "${value}" in the store is unknown`);
  return value;
}

export function toRecord(row: Selectable<CertificatesTable>): CertificateRecord {
  return {
    serial: row.serial,
    kind: certificateKindOf(row.principal_kind),
    id: row.principal_id,
    role: row.role !== null && isOperatorRole(row.role) ? row.role : null,
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
  options: RecordCertificateOptions = {},
): Promise<CertificateRecord> {
  // Kind, id and role together: an operator needs a role, nobody else may have one, centops ids are fixed.
  const subject = certificateSubject(certificate.kind, certificate.id, certificate.role ?? undefined);
  const role = subject.kind === 'operator' ? subject.role : null;
  const serial = normaliseSerial(certificate.serial);
  const fingerprint = normaliseFingerprint(certificate.fingerprint);
  const notBefore = isoTime(certificate.notBefore, 'notBefore');
  const notAfter = isoTime(certificate.notAfter, 'notAfter');
  if (notAfter <= notBefore) throw new DmrError('INVALID_ARGUMENT', 'notAfter must be later than notBefore');
  const chainPem =
    certificate.chainPem === undefined || certificate.chainPem === null
      ? null
      : checkedChain(certificate.chainPem, fingerprint);
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
    // Signed before its identity was revoked (a renewal racing the revocation): it is born revoked, so the CRL lists it.
    const identity = await trx
      .selectFrom('identity_revocations')
      .select(['not_before', 'reason'])
      .where('principal_kind', '=', certificate.kind)
      .where('principal_id', '=', certificate.id)
      .executeTakeFirst();
    const signedAt = certificate.issuedAt === undefined ? undefined : isoTime(certificate.issuedAt, 'issuedAt');
    const lateForRevocation =
      identity !== undefined && signedAt !== undefined && Date.parse(signedAt) < Date.parse(identity.not_before);
    const row = {
      serial,
      principal_kind: certificate.kind,
      principal_id: certificate.id,
      fingerprint,
      not_before: notBefore,
      not_after: notAfter,
      recorded_at: at,
      revoked_at: lateForRevocation ? at : null,
      revocation_reason: lateForRevocation ? identity.reason : null,
      role,
      chain_pem: chainPem,
      supersede_at: null,
    };
    await trx.insertInto('certificates').values(row).execute();
    const after = options.supersedePreviousAfterMs;
    if (after !== undefined && certificate.kind !== 'centops' && !lateForRevocation) {
      // The id's other valid certificates now have a successor: they live on for the overlap only.
      await trx
        .updateTable('certificates')
        .set({ supersede_at: new Date(now.getTime() + after).toISOString() })
        .where('principal_kind', '=', certificate.kind)
        .where('principal_id', '=', certificate.id)
        .where('serial', '!=', serial)
        .where('revoked_at', 'is', null)
        .where('supersede_at', 'is', null)
        .where('not_after', '>', at)
        .execute();
    }
    const record = toRecord(row);
    const revision = inNodeDocuments(record.kind) ? await bumpRevision(trx) : null;
    await writeAudit(trx, [
      {
        at,
        actor,
        action: 'certificate.record',
        kind: 'Certificate',
        id: certificate.id,
        revision,
        afterDigest: canonicalDigest(record),
        detail: {
          serial,
          principalKind: certificate.kind,
          fingerprint,
          notAfter,
          ...(role === null ? {} : { role }),
          ...(chainPem === null ? {} : { chainKept: true }),
        },
      },
    ]);
    return record;
  });
}

export async function getCertificate(db: Kysely<Database>, serial: string): Promise<CertificateRecord> {
  const wanted = normaliseSerial(serial);
  const record = await findCertificate(db, wanted);
  if (record === undefined) throw unknownSerial(wanted);
  return record;
}

const CURRENT_MAX = 100;

export async function certificatesOf(
  db: Kysely<Database>,
  kind: 'client' | 'node',
  id: string,
  now: Date,
): Promise<CertificateWithChain[]> {
  if (kind !== 'client' && kind !== 'node') {
    throw new DmrError('INVALID_ARGUMENT', `kind "${String(kind)}" has no directory entry`);
  }
  const rows = await db
    .selectFrom('certificates')
    .selectAll()
    .where('principal_kind', '=', kind)
    .where('principal_id', '=', id)
    .where('not_after', '>', now.toISOString())
    .orderBy('not_before', 'desc')
    // Certificates issued within one second share not_before (X.509 has whole seconds): the later record is newer.
    .orderBy('recorded_at', 'desc')
    .orderBy('serial')
    .limit(CURRENT_MAX)
    .execute();
  return rows.map((row) => ({ ...toRecord(row), chainPem: row.chain_pem }));
}

/** How many certificates were recorded for one identity at or after `since` (renewal rate limit). */
export async function countCertificatesSince(
  db: Kysely<Database>,
  kind: CertificateKind,
  id: string,
  since: Date,
): Promise<number> {
  const row = await db
    .selectFrom('certificates')
    .select((eb) => eb.fn.countAll<number | string>().as('count'))
    .where('principal_kind', '=', kind)
    .where('principal_id', '=', id)
    .where('recorded_at', '>=', since.toISOString())
    .executeTakeFirstOrThrow();
  return Number(row.count);
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
  options: RevokeCertificateOptions = {},
): Promise<RevokedCertificate> {
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
    const revoked: CertificateRecord = { ...record, revokedAt: at, revocationReason: reason };
    const mesh = inNodeDocuments(record.kind);
    const revision = mesh ? await bumpRevision(trx) : null;
    await writeAudit(trx, [
      {
        at,
        actor,
        action: 'certificate.revoke',
        kind: 'Certificate',
        id: record.id,
        revision,
        beforeDigest: canonicalDigest(record),
        afterDigest: canonicalDigest(revoked),
        detail: { serial: wanted, principalKind: record.kind, reason },
      },
    ]);
    let denylisted = false;
    if (mesh && revision !== null && options.denylistReason !== undefined) {
      const entry = { id: record.id, kind: record.kind as 'client' | 'node', reason: options.denylistReason };
      denylisted = (await denyInTransaction(trx, entry, actor, at, revision)) !== undefined;
    }
    return { ...revoked, revision, denylisted };
  });
}
