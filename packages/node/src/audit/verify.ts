/**
 * `dmr audit verify`: checks an audit export offline against a trust bundle
 * (docs/audit.md "What verify proves"). Per log (origin):
 *
 * - every checkpoint is a signed note whose signers' certificate chains
 *   (carried in the file) end at the trust bundle: a writer's checkpoint
 *   must be signed by its own node's certificate AND countersigned by
 *   CentOps' witness (the config signer); CentOps' own by the witness;
 * - records are canonical JSON of their log's writer, numbered 1, 2, 3… with
 *   no gap or step back, each naming its predecessor's leaf hash (a new run
 *   after a restart starts with prev null);
 * - the Merkle root of the first N records equals every checkpoint of size N;
 * - no two checkpoints of a log disagree, and none is larger than the log;
 * - a writer's log with records has at least one countersigned checkpoint.
 *
 * The first problem found in each log is reported with the file line and,
 * where one is to blame, the record; records after the last checkpoint are
 * counted as not yet proven (a tail cut there cannot be told from one not
 * yet written).
 */
import { DmrError, canonicalJson } from '@dmr/core';
import {
  LogEdge,
  centOpsOrigin,
  leafHash,
  nodeKeyName,
  nodeOfWriter,
  noteVerifier,
  openNote,
  parseCheckpoint,
  witnessKeyName,
  type NoteVerifier,
} from '@dmr/contract';
import { parseCertificates, verifyX5cSigner } from '@dmr/pki';
import { X509Certificate, type KeyObject } from 'node:crypto';
import { isRecordEntry, type AuditExport, type CheckpointEntry, type RecordEntry } from './export-file.js';

export type ProblemKind =
  'edited' | 'deleted' | 'reordered' | 'cut-short' | 'fork' | 'starts-midway' | 'unknown-writer' | 'bad-checkpoint';

export interface Problem {
  kind: ProblemKind;
  origin: string;
  /** Line of the export file to look at. */
  line: number;
  /** The record to blame, when one is: its seq (writer logs) or 1-based position (CentOps' log). */
  seq?: number;
  message: string;
}

export interface LogReport {
  origin: string;
  records: number;
  /** The largest checkpoint verified against the records. */
  provenSize: number;
  checkpoints: number;
  /** Records after the last checkpoint. */
  unproven: number;
  problem?: Problem;
}

export interface VerifyReport {
  ok: boolean;
  logs: LogReport[];
  /** The first problem in file order, if any. */
  firstProblem?: Problem;
}

export interface VerifyOptions {
  trustBundlePem: string;
}

const CONFIG_SIGNER = (td: string) => `spiffe://${td}/centops/config-signer`;

interface VerifiedCheckpoint {
  entry: CheckpointEntry;
  size: number;
  root: Buffer;
}

class LogProblem extends Error {
  constructor(readonly problem: Problem) {
    super(problem.message);
  }
}

/**
 * Signer chains this verify run has already checked. An export carries the
 * same two chains (the node's, CentOps' witness) at every checkpoint, and
 * checking a chain (parse, path to a root, validity at the checkpoint's
 * time, names) cost more than everything else verify does per checkpoint.
 * A chain that verified at one time verifies at any other time at which
 * every certificate it can involve — its own and the bundle's roots — is
 * valid: the other checks (signatures, the expected signer, CA flag, key
 * usage) do not depend on the time, and verify checks no CRLs. So a hit
 * needs the same chain for the same expected signer at a time inside that
 * window; anything else is checked in full (and a failure is never cached).
 */
class TrustedChains {
  readonly #trustBundlePem: string;
  readonly #known = new Map<string, { from: number; to: number; key: KeyObject }>();
  /** When every root of the bundle is valid; undefined when it cannot be read (then nothing is cached). */
  readonly #roots: { from: number; to: number } | undefined;

  constructor(trustBundlePem: string) {
    this.#trustBundlePem = trustBundlePem;
    let roots: { from: number; to: number } | undefined;
    try {
      const certificates = parseCertificates(trustBundlePem, 'the trust bundle');
      roots = {
        from: Math.max(...certificates.map((certificate) => certificate.notBefore.getTime())),
        to: Math.min(...certificates.map((certificate) => certificate.notAfter.getTime())),
      };
    } catch {
      roots = undefined;
    }
    this.#roots = roots;
  }

  /** The signer's public key once its chain is trusted at `at`; throws the chain's problem otherwise. */
  async signerKey(x5c: string[], expectedSigner: string, at: Date): Promise<KeyObject> {
    const time = Number.isNaN(at.getTime()) ? Date.now() : at.getTime();
    const cacheKey = `${expectedSigner} ${x5c.join(' ')}`;
    const known = this.#known.get(cacheKey);
    if (known !== undefined && known.from <= time && time <= known.to) return known.key;
    await verifyX5cSigner(
      x5c,
      {
        trustBundlePem: this.#trustBundlePem,
        expectedSigner,
        ...(Number.isNaN(at.getTime()) ? {} : { now: at }),
      },
      (_check, message) => new Error(message),
    );
    const chain = x5c.map((der) => new X509Certificate(Buffer.from(der, 'base64')));
    const key = (chain[0] as X509Certificate).publicKey;
    const from = Math.max(...chain.map((certificate) => Date.parse(certificate.validFrom)));
    const to = Math.min(...chain.map((certificate) => Date.parse(certificate.validTo)));
    if (this.#roots !== undefined && !Number.isNaN(from) && !Number.isNaN(to)) {
      this.#known.set(cacheKey, { from: Math.max(from, this.#roots.from), to: Math.min(to, this.#roots.to), key });
    }
    return key;
  }
}

/** Opens a checkpoint line: the signers' chains to the trust bundle, then the note's signatures. */
async function openCheckpoint(
  entry: CheckpointEntry,
  trustDomain: string,
  writerNode: string | undefined,
  chains: TrustedChains,
  witnessOnly: boolean,
): Promise<VerifiedCheckpoint> {
  const fail = (message: string): LogProblem =>
    new LogProblem({ kind: 'bad-checkpoint', origin: entry.origin, line: entry.line, message });
  const witnessName = witnessKeyName(trustDomain);
  const nodeName = writerNode === undefined ? undefined : nodeKeyName(trustDomain, writerNode);
  const verifiers: NoteVerifier[] = [];
  const at = new Date(entry.at);
  for (const [name, x5c] of Object.entries(entry.signers)) {
    let expected: string;
    if (name === witnessName) expected = CONFIG_SIGNER(trustDomain);
    else if (name === nodeName && writerNode !== undefined) expected = `spiffe://${trustDomain}/node/${writerNode}`;
    else continue;
    try {
      verifiers.push(noteVerifier(name, await chains.signerKey(x5c, expected, at)));
    } catch (error) {
      throw fail(`the certificate of ${name} is not trusted: ${(error as Error).message}`);
    }
  }
  let signedBy: NoteVerifier[];
  let text: string;
  try {
    ({ text, signedBy } = openNote(entry.checkpoint, verifiers));
  } catch (error) {
    throw fail((error as Error).message);
  }
  const names = new Set(signedBy.map((key) => key.name));
  if (!names.has(witnessName)) {
    throw new LogProblem({
      kind: 'unknown-writer',
      origin: entry.origin,
      line: entry.line,
      message: `the checkpoint of ${entry.origin} is not countersigned by CentOps: CentOps does not vouch for this log`,
    });
  }
  if (nodeName !== undefined && !witnessOnly && !names.has(nodeName)) {
    throw fail(`the checkpoint of ${entry.origin} is not signed by node ${writerNode}`);
  }
  let checkpoint;
  try {
    checkpoint = parseCheckpoint(text);
  } catch (error) {
    throw fail((error as Error).message);
  }
  if (checkpoint.origin !== entry.origin)
    throw fail(`the checkpoint is of ${checkpoint.origin}, filed under ${entry.origin}`);
  return { entry, size: checkpoint.size, root: checkpoint.root };
}

interface ParsedRecord {
  entry: RecordEntry;
  bytes: Buffer;
  seq: number;
  prev: string | null;
  run: string | null;
}

function parseRecord(entry: RecordEntry, writer: string | undefined, position: number): ParsedRecord {
  const edited = (message: string): LogProblem =>
    new LogProblem({ kind: 'edited', origin: entry.origin, line: entry.line, seq: position, message });
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(entry.record) as Record<string, unknown>;
  } catch {
    throw edited(`the record on line ${entry.line} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || canonicalJson(value) !== entry.record) {
    throw edited(`the record on line ${entry.line} is not in canonical form: it was changed after writing`);
  }
  if (writer === undefined)
    return { entry, bytes: Buffer.from(entry.record, 'utf8'), seq: position, prev: null, run: null };
  if (value.writer !== writer || !Number.isSafeInteger(value.seq)) {
    throw edited(`the record on line ${entry.line} does not belong to writer ${writer}`);
  }
  return {
    entry,
    bytes: Buffer.from(entry.record, 'utf8'),
    seq: value.seq as number,
    prev: typeof value.prev === 'string' ? value.prev : null,
    run: typeof value.run === 'string' ? value.run : null,
  };
}

/** The seqs the log's records name: only to tell a gap from a reordering, so read only once one is found. */
function seqsOf(records: readonly RecordEntry[]): Set<number> {
  const seqs = new Set<number>();
  for (const entry of records) {
    try {
      const seq = (JSON.parse(entry.record) as { seq?: unknown }).seq;
      if (typeof seq === 'number') seqs.add(seq);
    } catch {
      // parseRecord names it in order.
    }
  }
  return seqs;
}

async function verifyLog(
  origin: string,
  records: RecordEntry[],
  checkpointEntries: CheckpointEntry[],
  trustDomain: string,
  chains: TrustedChains,
  fromCentOps: boolean,
): Promise<LogReport> {
  const prefix = `${trustDomain}/audit/`;
  const isCentOps = origin === centOpsOrigin(trustDomain);
  const writer = isCentOps || !origin.startsWith(prefix) ? undefined : origin.slice(prefix.length);
  const writerNode = writer === undefined ? undefined : nodeOfWriter(writer);
  // CentOps' export holds a writer's checkpoints without records or the node's chain (CentOps checked the
  // node's signature when it witnessed them): there, its countersignature and agreement between them count.
  const checkpointsOnly = fromCentOps && writer !== undefined && records.length === 0;
  const report: LogReport = {
    origin,
    records: records.length,
    provenSize: 0,
    checkpoints: 0,
    unproven: records.length,
  };
  try {
    if (!isCentOps && writerNode === undefined) {
      throw new LogProblem({
        kind: 'unknown-writer',
        origin,
        line: (records[0] ?? checkpointEntries[0])?.line ?? 0,
        message: `${origin} is neither a router writer's log of ${trustDomain} nor CentOps' own`,
      });
    }
    const checkpoints: VerifiedCheckpoint[] = [];
    for (const entry of checkpointEntries)
      checkpoints.push(await openCheckpoint(entry, trustDomain, writerNode, chains, checkpointsOnly));
    checkpoints.sort((a, b) => a.size - b.size);
    report.checkpoints = checkpoints.length;
    for (const [i, checkpoint] of checkpoints.entries()) {
      const next = checkpoints[i + 1];
      if (next !== undefined && next.size === checkpoint.size && !next.root.equals(checkpoint.root)) {
        throw new LogProblem({
          kind: 'fork',
          origin,
          line: next.entry.line,
          message: `fork: two countersigned checkpoints of ${origin} at ${checkpoint.size} records disagree (lines ${checkpoint.entry.line} and ${next.entry.line})`,
        });
      }
    }
    if (records.length > 0 && checkpoints.length === 0 && writer !== undefined) {
      throw new LogProblem({
        kind: 'unknown-writer',
        origin,
        line: (records[0] as RecordEntry).line,
        message: `no checkpoint countersigned by CentOps covers ${origin}: CentOps does not know this writer`,
      });
    }

    const edge = new LogEdge();
    let previous: ParsedRecord | undefined;
    let previousLeaf: Buffer | undefined;
    let cursor = 0;
    let lastProven: VerifiedCheckpoint | undefined;
    const compare = (): void => {
      while (cursor < checkpoints.length && (checkpoints[cursor] as VerifiedCheckpoint).size <= edge.size) {
        const checkpoint = checkpoints[cursor] as VerifiedCheckpoint;
        if (checkpoint.size === edge.size && !edge.root().equals(checkpoint.root)) {
          const from = (lastProven?.size ?? 0) + 1;
          throw new LogProblem({
            kind: 'edited',
            origin,
            line: records[from - 1]?.line ?? checkpoint.entry.line,
            seq: from,
            message:
              `records ${from}–${checkpoint.size} of ${origin} do not give the root of the checkpoint on line ` +
              `${checkpoint.entry.line}: one of them was edited, replaced or reordered, or the checkpoint belongs to a fork`,
          });
        }
        lastProven = checkpoint;
        report.provenSize = checkpoint.size;
        cursor += 1;
      }
    };
    compare();
    for (const [index, entry] of records.entries()) {
      const record = parseRecord(entry, writer, index + 1);
      const expectedSeq = index + 1;
      if (writer !== undefined && record.seq !== expectedSeq) {
        const seqs = seqsOf(records);
        const kind: ProblemKind =
          index === 0 && !seqs.has(expectedSeq)
            ? 'starts-midway'
            : record.seq > expectedSeq && !seqs.has(expectedSeq)
              ? 'deleted'
              : 'reordered';
        const message =
          kind === 'starts-midway'
            ? `${origin} starts at record ${record.seq} (line ${entry.line}), not 1: its beginning is missing`
            : kind === 'deleted'
              ? `record ${expectedSeq} of ${origin} is missing: line ${entry.line} holds record ${record.seq}`
              : `record ${record.seq} of ${origin} is out of order or repeated on line ${entry.line} (expected ${expectedSeq})`;
        throw new LogProblem({
          kind,
          origin,
          line: entry.line,
          seq: kind === 'reordered' ? record.seq : expectedSeq,
          message,
        });
      }
      const leaf = leafHash(record.bytes);
      if (writer !== undefined && previous !== undefined) {
        const newRun = record.run !== previous.run && record.prev === null;
        if (!newRun && record.prev !== previousLeaf?.toString('hex')) {
          throw new LogProblem({
            kind: 'edited',
            origin,
            line: previous.entry.line,
            seq: previous.seq,
            message: `record ${previous.seq} of ${origin} (line ${previous.entry.line}) was changed: record ${record.seq} names another hash for it`,
          });
        }
      }
      edge.append(leaf);
      previous = record;
      previousLeaf = leaf;
      compare();
    }
    const largest = checkpoints.at(-1);
    if (largest !== undefined && largest.size > edge.size && !checkpointsOnly) {
      throw new LogProblem({
        kind: 'cut-short',
        origin,
        line: largest.entry.line,
        seq: edge.size + 1,
        message: `${origin} ends at record ${edge.size}, but the checkpoint on line ${largest.entry.line} covers ${largest.size}: its tail was cut`,
      });
    }
    report.unproven = edge.size - report.provenSize;
  } catch (error) {
    if (!(error instanceof LogProblem)) throw error;
    report.problem = error.problem;
  }
  return report;
}

export async function verifyExport(file: AuditExport, options: VerifyOptions): Promise<VerifyReport> {
  const trustDomain = file.header.trustDomain;
  const origins = new Map<string, { records: RecordEntry[]; checkpoints: CheckpointEntry[] }>();
  for (const entry of file.entries) {
    let log = origins.get(entry.origin);
    if (log === undefined) origins.set(entry.origin, (log = { records: [], checkpoints: [] }));
    if (isRecordEntry(entry)) log.records.push(entry);
    else log.checkpoints.push(entry);
  }
  const logs: LogReport[] = [];
  const chains = new TrustedChains(options.trustBundlePem);
  for (const [origin, log] of origins)
    logs.push(
      await verifyLog(origin, log.records, log.checkpoints, trustDomain, chains, file.header.source === 'centops'),
    );
  const problems = logs.flatMap((log) => (log.problem === undefined ? [] : [log.problem]));
  problems.sort((a, b) => a.line - b.line);
  return { ok: problems.length === 0, logs, ...(problems[0] === undefined ? {} : { firstProblem: problems[0] }) };
}

/** The CLI's error for a report that is not ok: names the first bad record. */
export function brokenLogError(report: VerifyReport): DmrError {
  const problem = report.firstProblem as Problem;
  return new DmrError('AUDIT_LOG_BROKEN', problem.message, {
    details: {
      kind: problem.kind,
      origin: problem.origin,
      line: problem.line,
      ...(problem.seq === undefined ? {} : { seq: problem.seq }),
      logs: report.logs,
    },
    hint: 'keep the export as evidence; compare it with a fresh export from the node and from CentOps',
  });
}
