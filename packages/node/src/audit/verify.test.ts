/**
 * Each kind of tampering with an audit export, against real certificates
 * (a CA made for the test, a node certificate, CentOps' config signer) and
 * the real record sealing, signing and countersigning code.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canonicalJson } from '@dmr/core';
import {
  LogEdge,
  NoteSigner,
  centOpsOrigin,
  formatCheckpoint,
  leafHash,
  nodeKeyName,
  parseCheckpoint,
  parseNote,
  verifyInclusion,
  witnessKeyName,
  writerOrigin,
} from '@dmr/contract';
import { CertificateAuthority, loadSigningIdentity, type SigningIdentity } from '@dmr/pki';
import { GENESIS, sealRecord, type AuditEvent, type ChainHead } from '../router/audit.js';
import {
  MAX_EXPORT_LINE,
  MAX_RECORD_BYTES,
  formatExport,
  parseExport,
  readExportFile,
  type CheckpointEntry,
  type ExportEntry,
  type RecordEntry,
} from './export-file.js';
import { proveMessage } from './prove.js';
import { verifyExport, type VerifyReport } from './verify.js';

const TD = 'dmr.test';
const WRITER = 'node-1/router-0';
const ORIGIN = writerOrigin(TD, WRITER);
const DAY = 24 * 3600 * 1000;

let dir: string;
let trustBundlePem: string;
let node: SigningIdentity;
let witness: SigningIdentity;
let stranger: SigningIdentity;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dmr-audit-verify-'));
  const ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: TD });
  const other = await CertificateAuthority.init(join(dir, 'other'), { trustDomain: TD });
  trustBundlePem = ca.trustBundlePem();
  const load = (issued: { chainPem: string; privateKeyPem: string }) =>
    loadSigningIdentity(issued.chainPem, issued.privateKeyPem, 'test');
  node = load(await ca.issueWithKey({ kind: 'node', id: 'node-1', ttlMs: DAY }));
  witness = load(await ca.issueWithKey({ kind: 'centops', id: 'config-signer', ttlMs: DAY }));
  stranger = load(await other.issueWithKey({ kind: 'centops', id: 'config-signer', ttlMs: DAY }));
});

after(() => rm(dir, { recursive: true, force: true }));

function event(n: number): AuditEvent {
  return {
    kind: 'route',
    node: 'node-1',
    messageId: `m-${n}`,
    sender: 'ria-bot',
    recipient: 'rik-bot',
    result: 'routed',
    reason: null,
    policyRevision: '1',
    policyReasons: ['GRANT'],
    configRevision: 1,
    at: '2026-12-05T12:00:00.000Z',
  };
}

type Entry = Omit<RecordEntry, 'line'> | Omit<CheckpointEntry, 'line'>;

function checkpointEntry(
  origin: string,
  edge: LogEdge,
  options: { witnessedBy?: SigningIdentity; byNode?: boolean } = {},
): Entry {
  const text = formatCheckpoint({ origin, size: edge.size, root: edge.root() });
  const signers: Record<string, string[]> = {};
  let note: string | undefined;
  if (options.byNode !== false) {
    note = new NoteSigner(nodeKeyName(TD, 'node-1'), node.key).sign(text);
    signers[nodeKeyName(TD, 'node-1')] = node.x5c;
  }
  const by = options.witnessedBy === undefined ? witness : options.witnessedBy;
  const cosigner = new NoteSigner(witnessKeyName(TD), by.key);
  note = note === undefined ? cosigner.sign(text) : cosigner.cosign(note);
  signers[witnessKeyName(TD)] = by.x5c;
  return { origin, checkpoint: note, signers, at: new Date().toISOString() };
}

/** A writer's log of `count` records with a checkpoint every `every` records (and none after the tail). */
function writerLog(count: number, every: number, runs: number[] = []): Entry[] {
  const entries: Entry[] = [];
  const edge = new LogEdge();
  let head: ChainHead = GENESIS;
  let run = 'run-a';
  for (let n = 1; n <= count; n += 1) {
    if (runs.includes(n)) {
      run = `run-${n}`;
      head = { seq: head.seq, hash: null };
    }
    const sealed = sealRecord(WRITER, run, head, event(n));
    head = sealed.head;
    edge.append(sealed.leaf);
    entries.push({ origin: ORIGIN, record: sealed.bytes.toString('utf8') });
    if (n % every === 0) entries.push(checkpointEntry(ORIGIN, edge));
  }
  return entries;
}

async function verify(entries: Entry[], source: 'stream' | 'centops' = 'stream'): Promise<VerifyReport> {
  const text = formatExport(
    { format: 'dmr-audit-export', version: 1, source, trustDomain: TD, exportedAt: new Date().toISOString() },
    entries,
  );
  return verifyExport(parseExport(text), { trustBundlePem });
}

const records = (entries: Entry[]) => entries.filter((entry): entry is Omit<RecordEntry, 'line'> => 'record' in entry);
function edit(entry: Entry, change: (record: Record<string, unknown>) => void): Entry {
  const record = JSON.parse((entry as RecordEntry).record) as Record<string, unknown>;
  change(record);
  return { origin: entry.origin, record: canonicalJson(record) };
}

describe('dmr audit verify', () => {
  it('a whole log verifies, across a writer restart (new run), and counts the records after the last checkpoint', async () => {
    const report = await verify(writerLog(25, 10, [14]));
    assert.equal(report.ok, true, JSON.stringify(report.firstProblem));
    assert.deepEqual(report.logs, [{ origin: ORIGIN, records: 25, provenSize: 20, checkpoints: 2, unproven: 5 }]);
  });

  it('an edited record is named by the next record, or by the checkpoint when it is the last', async () => {
    const log = writerLog(20, 10);
    const third = log.indexOf(records(log)[2] as Entry);
    log[third] = edit(log[third] as Entry, (record) => (record.recipient = 'mallory-bot'));
    const report = await verify(log);
    assert.equal(report.firstProblem?.kind, 'edited');
    assert.equal(report.firstProblem?.seq, 3);
    assert.match(report.firstProblem?.message ?? '', /record 3 of .* was changed/);

    const tail = writerLog(10, 10);
    tail[9] = edit(tail[9] as Entry, (record) => (record.result = 'rejected'));
    const last = await verify(tail);
    assert.equal(last.firstProblem?.kind, 'edited');
    assert.match(last.firstProblem?.message ?? '', /records 1–10 .* do not give the root/);

    const reformatted = writerLog(10, 10);
    reformatted[4] = { origin: ORIGIN, record: (reformatted[4] as RecordEntry).record.replace('"kind":', '"kind": ') };
    assert.match((await verify(reformatted)).firstProblem?.message ?? '', /not in canonical form/);
  });

  it('a deleted record, a reordered pair and a log that starts midway are each named', async () => {
    const deleted = writerLog(20, 10);
    deleted.splice(5, 1);
    const gap = await verify(deleted);
    assert.deepEqual([gap.firstProblem?.kind, gap.firstProblem?.seq], ['deleted', 6]);

    const swapped = writerLog(20, 10);
    [swapped[3], swapped[4]] = [swapped[4] as Entry, swapped[3] as Entry];
    const reordered = await verify(swapped);
    assert.deepEqual([reordered.firstProblem?.kind, reordered.firstProblem?.seq], ['reordered', 5]);

    const midway = writerLog(20, 10).slice(3);
    assert.equal((await verify(midway)).firstProblem?.kind, 'starts-midway');
  });

  it('a tail cut short of the latest checkpoint is caught; one cut after it is only unproven', async () => {
    const log = writerLog(20, 10);
    const cut = log.filter((entry) => !('record' in entry) || JSON.parse(entry.record).seq <= 15);
    const report = await verify(cut);
    assert.equal(report.firstProblem?.kind, 'cut-short');
    assert.match(report.firstProblem?.message ?? '', /ends at record 15, but the checkpoint .* covers 20/);
    const after = await verify(writerLog(25, 10).slice(0, -2));
    assert.equal(after.ok, true);
    assert.equal(after.logs[0]?.unproven, 3);
  });

  it('a fork: two countersigned checkpoints of one size that disagree, or one the records do not match', async () => {
    const log = writerLog(10, 10);
    const forked = new LogEdge();
    for (let n = 1; n <= 10; n += 1) forked.append(leafHash(Buffer.from(`other history ${n}`)));
    const report = await verify([...log, checkpointEntry(ORIGIN, forked)]);
    assert.equal(report.firstProblem?.kind, 'fork');
    assert.match(report.firstProblem?.message ?? '', /fork: two countersigned checkpoints .* at 10 records disagree/);

    const other = writerLog(10, 5);
    const twelve = new LogEdge();
    for (let n = 1; n <= 12; n += 1) twelve.append(leafHash(Buffer.from(`x ${n}`)));
    const beyond = await verify([...other, checkpointEntry(ORIGIN, twelve)]);
    assert.equal(beyond.firstProblem?.kind, 'cut-short');
  });

  it('a writer CentOps does not know: no countersignature, a witness outside the trust bundle, or no checkpoint at all', async () => {
    const edge = new LogEdge();
    const entries: Entry[] = [];
    let head = GENESIS;
    for (let n = 1; n <= 3; n += 1) {
      const sealed = sealRecord(WRITER, 'r', head, event(n));
      head = sealed.head;
      edge.append(sealed.leaf);
      entries.push({ origin: ORIGIN, record: sealed.bytes.toString('utf8') });
    }
    const nodeOnly = checkpointEntry(ORIGIN, edge);
    const parsed = parseNote((nodeOnly as CheckpointEntry).checkpoint);
    const unwitnessed = {
      ...(nodeOnly as CheckpointEntry),
      checkpoint: new NoteSigner(nodeKeyName(TD, 'node-1'), node.key).sign(parsed.text),
    };
    assert.equal((await verify([...entries, unwitnessed])).firstProblem?.kind, 'unknown-writer');
    const foreign = await verify([...entries, checkpointEntry(ORIGIN, edge, { witnessedBy: stranger })]);
    assert.equal(foreign.firstProblem?.kind, 'bad-checkpoint');
    assert.match(foreign.firstProblem?.message ?? '', /not trusted/);
    assert.equal((await verify(entries)).firstProblem?.kind, 'unknown-writer');
    // A node may not sign for another node's writer.
    const alien = writerOrigin(TD, 'node-2/router-0');
    const theirs = await verify([
      { origin: alien, record: (entries[0] as RecordEntry).record },
      checkpointEntry(alien, edge),
    ]);
    assert.ok(!theirs.ok);
  });

  it('a chain checked once is trusted again only while it is valid: a checkpoint after the node certificate expired is refused', async () => {
    const log = writerLog(8, 4);
    const late = log[9] as Omit<CheckpointEntry, 'line'>;
    assert.ok('checkpoint' in late);
    // The same two chains as the first checkpoint (checked and remembered), but published two days on.
    log[9] = { ...late, at: new Date(Date.now() + 2 * DAY).toISOString() };
    const report = await verify(log);
    assert.equal(report.firstProblem?.kind, 'bad-checkpoint');
    assert.equal(report.firstProblem?.line, 11, JSON.stringify(report.firstProblem));
    assert.match(report.firstProblem?.message ?? '', /not trusted/);
  });

  it("CentOps' export: a writer's checkpoints without records or the node's chain verify by the witness alone", async () => {
    const edge = new LogEdge();
    const forked = new LogEdge();
    const witnessed: Entry[] = [];
    for (let n = 1; n <= 10; n += 1) {
      edge.append(leafHash(Buffer.from(`r${n}`)));
      forked.append(leafHash(Buffer.from(n === 10 ? 'other' : `r${n}`)));
      if (n % 5 === 0) witnessed.push(checkpointEntry(ORIGIN, edge, { byNode: false }));
    }
    const report = await verify(witnessed, 'centops');
    assert.equal(report.ok, true, JSON.stringify(report.firstProblem));
    assert.deepEqual(report.logs[0], { origin: ORIGIN, records: 0, provenSize: 0, checkpoints: 2, unproven: 0 });
    // The same lines in a stream export lack the node's signature; a fork still shows.
    assert.equal((await verify(witnessed, 'stream')).firstProblem?.kind, 'bad-checkpoint');
    const fork = await verify([...witnessed, checkpointEntry(ORIGIN, forked, { byNode: false })], 'centops');
    assert.equal(fork.firstProblem?.kind, 'fork');
    const foreign = await verify([checkpointEntry(ORIGIN, edge, { byNode: false, witnessedBy: stranger })], 'centops');
    assert.equal(foreign.firstProblem?.kind, 'bad-checkpoint');
  });

  it("CentOps' own log verifies by position, and an edited entry breaks its checkpoint", async () => {
    const origin = centOpsOrigin(TD);
    const edge = new LogEdge();
    const entries: Entry[] = [];
    for (let seq = 1; seq <= 6; seq += 1) {
      const record = canonicalJson({
        seq: seq * 2,
        at: '2026-12-05T12:00:00.000Z',
        actor: 'spiffe://dmr.test/operator/alice',
        action: 'create',
        kind: 'Node',
        id: `n-${seq}`,
        beforeDigest: null,
        afterDigest: 'ab',
        revision: seq,
        detail: null,
      });
      edge.append(leafHash(Buffer.from(record, 'utf8')));
      entries.push({ origin, record });
    }
    entries.push(checkpointEntry(origin, edge, { byNode: false }));
    assert.equal((await verify(entries)).ok, true);
    entries[2] = edit(entries[2] as Entry, (record) => (record.actor = 'spiffe://dmr.test/operator/mallory'));
    assert.equal((await verify(entries)).firstProblem?.kind, 'edited');
  });

  it('prove: the record of a message and its inclusion proof to the smallest countersigned checkpoint', async () => {
    const log = writerLog(25, 10);
    const text = formatExport(
      {
        format: 'dmr-audit-export',
        version: 1,
        source: 'stream',
        trustDomain: TD,
        exportedAt: new Date().toISOString(),
      },
      log,
    );
    const [statement] = await proveMessage(parseExport(text), 'm-13', { trustBundlePem });
    assert.ok(statement !== undefined);
    assert.equal(statement.index, 12);
    assert.equal(statement.treeSize, 20);
    const root = parseCheckpoint(parseNote(statement.checkpoint).text).root;
    const proof = statement.proof.map((hash) => Buffer.from(hash, 'base64'));
    assert.ok(verifyInclusion(12, 20, leafHash(Buffer.from(statement.record, 'utf8')), proof, root));
    await assert.rejects(proveMessage(parseExport(text), 'm-23', { trustBundlePem }), /no countersigned checkpoint/);
    await assert.rejects(proveMessage(parseExport(text), 'nope', { trustBundlePem }), /no audit record/);
  });

  it('refuses a file that is not an export, naming the line', () => {
    assert.throws(() => parseExport('{"format":"other"}\n'), /line 1/);
    const header = JSON.stringify({
      format: 'dmr-audit-export',
      version: 1,
      source: 'stream',
      trustDomain: TD,
      exportedAt: 'x',
    });
    assert.throws(() => parseExport(`${header}\n{"origin":"o"}\n`), /line 2 .* neither a record nor a checkpoint/);
    assert.throws(() => parseExport(`${header}\nnot json\n`), /line 2 .* not JSON/);
    const entries: ExportEntry[] = parseExport(`${header}\n`).entries;
    assert.deepEqual(entries, []);
    const big = JSON.stringify({ origin: 'o', record: `"${'x'.repeat(MAX_RECORD_BYTES)}"` });
    assert.throws(() => parseExport(`${header}\n${big}\n`), /line 2 .* a record larger than/);
  });

  it('reads an export file streamed: the same entries as parsing it whole, and a line too long refused as it grows', async () => {
    const text = formatExport(
      { format: 'dmr-audit-export', version: 1, source: 'stream', trustDomain: TD, exportedAt: 'x' },
      writerLog(20, 5),
    );
    const file = join(dir, 'streamed.jsonl');
    await writeFile(file, text);
    assert.deepEqual(await readExportFile(file), parseExport(text));
    const header = text.slice(0, text.indexOf('\n') + 1);
    await writeFile(file, `${header}${'x'.repeat(MAX_EXPORT_LINE * 5)}`);
    await assert.rejects(readExportFile(file), /line 2 .* longer than/);
    await assert.rejects(readExportFile(join(dir, 'missing.jsonl')), (error: unknown) => {
      assert.ok(error instanceof Error && 'code' in error && error.code === 'NOT_FOUND');
      return true;
    });
  });
});
