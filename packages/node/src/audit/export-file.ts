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
import { createReadStream } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { DmrError } from '@dmr/core';

export const EXPORT_FORMAT = 'dmr-audit-export' as const;
/** Largest line read: a record is a few hundred bytes, a checkpoint with two chains a few kB. */
export const MAX_EXPORT_LINE = 256 * 1024;
/** Largest record: a router's record is a few hundred bytes (no payload); one this large is not a router's. */
export const MAX_RECORD_BYTES = 64 * 1024;

const Header = Type.Object({
  format: Type.Literal(EXPORT_FORMAT),
  version: Type.Literal(1),
  source: Type.Union([Type.Literal('stream'), Type.Literal('centops'), Type.Literal('merged')]),
  trustDomain: Type.String({ minLength: 1, maxLength: 253 }),
  exportedAt: Type.String(),
});
const Origin = Type.String({ minLength: 1, maxLength: 255 });
const RecordLine = Type.Object(
  { origin: Origin, record: Type.String({ minLength: 2 }) },
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

/** Reads an export line by line (header first), validating each line as it comes. */
class ExportReader {
  header: ExportHeader | undefined;
  readonly entries: ExportEntry[] = [];
  #line = 0;

  get nextLine(): number {
    return this.#line + 1;
  }

  add(raw: string): void {
    this.#line += 1;
    const line = this.#line;
    if (raw.length > MAX_EXPORT_LINE) throw badLine(line, `longer than ${MAX_EXPORT_LINE} characters`);
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw badLine(line, 'not JSON');
    }
    if (this.header === undefined) {
      if (!checkHeader.Check(value)) throw badLine(1, `not a ${EXPORT_FORMAT} version 1 header`);
      this.header = value;
      return;
    }
    if (checkRecord.Check(value)) {
      if (Buffer.byteLength(value.record, 'utf8') > MAX_RECORD_BYTES) {
        throw badLine(line, `a record larger than ${MAX_RECORD_BYTES} bytes: no router writes one`);
      }
      this.entries.push({ ...value, line });
    } else if (checkCheckpoint.Check(value)) this.entries.push({ ...value, line });
    else throw badLine(line, 'neither a record nor a checkpoint line');
  }

  done(): AuditExport {
    if (this.header === undefined) throw badLine(1, `empty: not a ${EXPORT_FORMAT} version 1 header`);
    return { header: this.header, entries: this.entries };
  }
}

export function parseExport(text: string): AuditExport {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const reader = new ExportReader();
  for (const raw of lines) reader.add(raw);
  return reader.done();
}

/**
 * Reads an export file streamed, never as one string: a line is refused as
 * soon as it passes MAX_EXPORT_LINE bytes (a file without newlines costs no
 * more than that), and each line is checked as it arrives.
 */
export async function readExportFile(file: string): Promise<AuditExport> {
  const reader = new ExportReader();
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const stream = createReadStream(file, { highWaterMark: 1024 * 1024 });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let start = 0;
      for (let newline = chunk.indexOf(10); newline >= 0; newline = chunk.indexOf(10, start)) {
        const piece = chunk.subarray(start, newline);
        reader.add(Buffer.concat([...pending, piece]).toString('utf8'));
        pending = [];
        pendingBytes = 0;
        start = newline + 1;
      }
      if (start < chunk.length) {
        pending.push(chunk.subarray(start));
        pendingBytes += chunk.length - start;
        // Bytes, not characters: a character is at most 4 bytes of UTF-8.
        if (pendingBytes > MAX_EXPORT_LINE * 4) {
          throw badLine(reader.nextLine, `longer than ${MAX_EXPORT_LINE} characters`);
        }
      }
    }
  } catch (error) {
    if (error instanceof DmrError) throw error;
    throw new DmrError('NOT_FOUND', `the export ${file} cannot be read`, { cause: error, hint: 'check the path' });
  } finally {
    stream.destroy();
  }
  if (pendingBytes > 0) reader.add(Buffer.concat(pending).toString('utf8'));
  return reader.done();
}
