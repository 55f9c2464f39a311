/**
 * `dmr audit prove <message-id>`: the record of a message and its RFC 6962
 * inclusion proof to the smallest countersigned checkpoint that covers it,
 * from a verified export. A third party who trusts the bundle checks the
 * checkpoint's signatures and the proof (`verifyInclusion`) without seeing
 * any other record.
 */
import { DmrError } from '@dmr/core';
import { inclusionProof, leafHash, parseCheckpoint, parseNote, rangeHasher, verifyInclusion } from '@dmr/contract';
import { isRecordEntry, type AuditExport, type CheckpointEntry } from './export-file.js';
import { brokenLogError, verifyExport, type VerifyOptions } from './verify.js';

export interface InclusionStatement {
  origin: string;
  /** The record as stored (canonical JSON). */
  record: string;
  /** Its leaf index (seq − 1). */
  index: number;
  /** The countersigned checkpoint (signed note) and its signers' chains. */
  checkpoint: string;
  signers: Record<string, string[]>;
  treeSize: number;
  /** base64 hashes, leaf to root. */
  proof: string[];
}

export async function proveMessage(
  file: AuditExport,
  messageId: string,
  options: VerifyOptions,
): Promise<InclusionStatement[]> {
  const report = await verifyExport(file, options);
  const byOrigin = new Map<string, string[]>();
  const checkpoints = new Map<string, CheckpointEntry[]>();
  for (const entry of file.entries) {
    if (isRecordEntry(entry)) {
      const list = byOrigin.get(entry.origin) ?? [];
      list.push(entry.record);
      byOrigin.set(entry.origin, list);
    } else {
      const list = checkpoints.get(entry.origin) ?? [];
      list.push(entry);
      checkpoints.set(entry.origin, list);
    }
  }
  const statements: InclusionStatement[] = [];
  for (const [origin, records] of byOrigin) {
    const log = report.logs.find((item) => item.origin === origin);
    for (const [index, record] of records.entries()) {
      if ((JSON.parse(record) as { messageId?: unknown }).messageId !== messageId) continue;
      if (log?.problem !== undefined) throw brokenLogError(report);
      const covering = (checkpoints.get(origin) ?? [])
        .map((entry) => ({ entry, size: parseCheckpoint(parseNote(entry.checkpoint).text).size }))
        .filter((item) => item.size > index && item.size <= (log?.provenSize ?? 0))
        .sort((a, b) => a.size - b.size)[0];
      if (covering === undefined) {
        throw new DmrError(
          'NOT_FOUND',
          `no countersigned checkpoint of ${origin} covers the record of ${messageId} yet`,
          {
            hint: 'checkpoints follow within a second or 256 records; export again a little later',
          },
        );
      }
      const leaves = records.slice(0, covering.size).map((text) => leafHash(Buffer.from(text, 'utf8')));
      const proof = inclusionProof(index, covering.size, rangeHasher(leaves));
      const root = parseCheckpoint(parseNote(covering.entry.checkpoint).text).root;
      if (!verifyInclusion(index, covering.size, leaves[index] as Buffer, proof, root)) {
        throw new DmrError('INTERNAL', `the inclusion proof of ${messageId} does not verify`);
      }
      statements.push({
        origin,
        record,
        index,
        checkpoint: covering.entry.checkpoint,
        signers: covering.entry.signers,
        treeSize: covering.size,
        proof: proof.map((hash) => hash.toString('base64')),
      });
    }
  }
  if (statements.length === 0) {
    throw new DmrError('NOT_FOUND', `no audit record of message ${messageId} in the export`, {
      hint: 'export from the node(s) the message passed (`dmr audit export`), then prove from that file',
    });
  }
  return statements;
}
