/** Text renderings of `dmr pki` results; JSON output prints the same objects as they are. */
import type { CertificateReport, IssuedRecord } from '@dmr/pki';
import { renderFields } from '../output.js';

const iso = (date: Date) => date.toISOString();
const list = (items: readonly string[]) => (items.length === 0 ? undefined : items.join(', '));

export function renderReport(report: CertificateReport): string {
  const validity = report.expired ? ' (EXPIRED)' : report.notYetValid ? ' (NOT YET VALID)' : '';
  const chain = report.chain.verified
    ? `verified (${report.chain.path.join(' <- ')})`
    : `NOT verified: ${report.chain.problem ?? 'unknown problem'}`;
  const revocation =
    report.revocation === 'revoked'
      ? `REVOKED (${report.revocationReason ?? 'unspecified'}${report.revokedAt ? ` at ${iso(report.revokedAt)}` : ''})`
      : report.revocation === 'good'
        ? 'good'
        : `unknown: ${report.revocationProblem ?? 'no revocation information'}`;
  const source =
    report.revocationSource === 'crl'
      ? ` [CRL${report.crlNumber === undefined ? '' : ` #${report.crlNumber}`}]`
      : report.revocationSource === 'ca-records'
        ? ' [CA records]'
        : '';
  return renderFields([
    ['subject', report.subject],
    ['issuer', report.issuer],
    ['serial', report.serial],
    ['spiffe id', report.spiffe?.uri],
    ['kind', report.spiffe?.kind],
    ['dns names', list(report.san.dns)],
    ['ip addresses', list(report.san.ip)],
    ['other uris', list(report.san.uri.filter((uri) => uri !== report.spiffe?.uri))],
    ['other names', list(report.san.other)],
    ['not before', iso(report.notBefore)],
    ['not after', `${iso(report.notAfter)}${validity}`],
    ['key', report.keyAlgorithm],
    ['sha256', report.fingerprintSha256],
    ['ca', report.isCa ? 'yes' : 'no'],
    ['key usage', list(report.keyUsage)],
    ['ext key usage', list(report.extendedKeyUsage)],
    ['chain', chain],
    ['revocation', `${revocation}${source}`],
  ]);
}

export function recordStatus(record: IssuedRecord, now = new Date()): string {
  if (record.revoked) return `revoked (${record.revoked.reason})`;
  if (now > record.notAfter) return 'expired';
  if (now < record.notBefore) return 'not yet valid';
  return 'valid';
}

export function renderRecords(records: readonly IssuedRecord[]): string {
  if (records.length === 0) return 'no certificates issued yet';
  const rows = [
    ['SERIAL', 'KIND', 'ID', 'NOT AFTER', 'STATUS'],
    ...records.map((record) => [record.serial, record.kind, record.id, iso(record.notAfter), recordStatus(record)]),
  ];
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
