/**
 * The audit export file (`dmr audit export`, docs/audit.md): JSON Lines.
 * The first line says what it is; every other line is one record or one
 * checkpoint of one log (`origin`), in the order the source holds them:
 *
 *   {"format":"dmr-audit-export","version":1,"source":"stream","trustDomain":"…","exportedAt":"…"}
 *   {"origin":"<td>/audit/node-1/router-0","record":"<the record's stored bytes, canonical JSON>"}
 *   {"origin":"<td>/audit/node-1/router-0","checkpoint":"<signed note>","signers":{"<key name>":["<x5c>",…]},"at":"…"}
 *
 * A record is kept as the exact text that was stored, so the verifier
 * hashes what the writer hashed. Reading validates every line and refuses
 * the file at the first malformed one (INVALID_ARGUMENT naming the line).
 */
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { DmrError } from '@dmr/core';

export const EXPORT_FORMAT = 'dmr-audit-export' as const;
/** Largest line read: a record is a few hundred bytes, a checkpoint with two chains a few kB. */
export const MAX_EXPORT_LINE = 256 * 1024;

const Header = Type.Object({
  format: Type.Literal(EXPORT_FORMAT),
  version: Type.Literal(1),
  source: Type.Union([Type.Literal('stream'), Type.Literal('centops'), Type.Literal('merged')]),
  trustDomain: Type.String({ minLength: 1, maxLength: 253 }),
  exportedAt: Type.String(),
});
const Origin = Type.String({ minLength: 1, maxLength: 255 });
const RecordLine = Type.Object(
  { origin: Origin, record: Type.String({ minLength: 2, maxLength: 64 * 1024 }) },
  { additionalProperties: false },
);
const CheckpointLine = Type.Object(
  {
    origin: Origin,
    checkpoint: Type.String({ minLength: 1, maxLength: 8192 }),
    signers: Type.Record(
      Type.String({ maxLength: 255 }),
      Type.Array(Type.String({ maxLength: 16 * 1024 }), { maxItems: 8 }),
    ),
    at: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
);

export type ExportHeader = Static<typeof Header>;
export type RecordEntry = Static<typeof RecordLine> & { line: number };
export type CheckpointEntry = Static<typeof CheckpointLine> & { line: number };
export type ExportEntry = RecordEntry | CheckpointEntry;

export interface AuditExport {
  header: ExportHeader;
  entries: ExportEntry[];
}

const checkHeader = TypeCompiler.Compile(Header);
const checkRecord = TypeCompiler.Compile(RecordLine);
const checkCheckpoint = TypeCompiler.Compile(CheckpointLine);

export function isRecordEntry(entry: ExportEntry): entry is RecordEntry {
  return 'record' in entry;
}

export function formatExport(
  header: ExportHeader,
  entries: ReadonlyArray<Omit<RecordEntry, 'line'> | Omit<CheckpointEntry, 'line'>>,
): string {
  const lines = [JSON.stringify(header)];
  for (const entry of entries) {
    lines.push(
      'record' in entry
        ? JSON.stringify({ origin: entry.origin, record: entry.record })
        : JSON.stringify({ origin: entry.origin, checkpoint: entry.checkpoint, signers: entry.signers, at: entry.at }),
    );
  }
  return `${lines.join('\n')}\n`;
}

function badLine(line: number, problem: string): DmrError {
  return new DmrError('INVALID_ARGUMENT', `line ${line} of the audit export is not valid: ${problem}`, {
    details: { line },
    hint: 'an export is what `dmr audit export` writes: one JSON object per line, a header first',
  });
}

export function parseExport(text: string): AuditExport {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const parse = (raw: string, line: number): unknown => {
    if (raw.length > MAX_EXPORT_LINE) throw badLine(line, `longer than ${MAX_EXPORT_LINE} characters`);
    try {
      return JSON.parse(raw);
    } catch {
      throw badLine(line, 'not JSON');
    }
  };
  const header = parse(lines[0] ?? '', 1);
  if (!checkHeader.Check(header)) throw badLine(1, `not a ${EXPORT_FORMAT} version 1 header`);
  const entries: ExportEntry[] = [];
  for (const [index, raw] of lines.slice(1).entries()) {
    const line = index + 2;
    const value = parse(raw, line);
    if (checkRecord.Check(value)) entries.push({ ...value, line });
    else if (checkCheckpoint.Check(value)) entries.push({ ...value, line });
    else throw badLine(line, 'neither a record nor a checkpoint line');
  }
  return { header, entries };
}
