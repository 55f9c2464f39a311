/**
 * `npm run bench -- audit-log`: what the Merkle log costs a router writer
 * per record, on the CPU alone (no broker), against the hash chain it
 * replaced, measured in the same run:
 *
 *   chain      seal a record (canonical JSON) + SHA-256 of its bytes (before)
 *   merkle     seal + RFC 6962 leaf hash + extend the log edge + keep the leaf (the hot path now)
 *   checkpoint sign a checkpoint (ECDSA P-256) + consistency proof over 256 new leaves (off the path, per 256)
 *
 *
 * Then `dmr audit verify`'s speed: an export of --verify-records records
 * (default 100000) of one writer, a countersigned checkpoint every 256
 * (node and witness certificates from a throwaway CA), parsed and verified
 * offline as the CLI does (readExportFile + verifyExport), in records/s.
 *
 * Flags: --records N per round, 5 interleaved rounds, the fastest kept (default 20000).
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonicalJson } from '@dmr/core';
import {
  LogEdge,
  NoteSigner,
  consistencyProof,
  edgeAndLeavesHasher,
  formatCheckpoint,
  leafHash,
  nodeKeyName,
  witnessKeyName,
  writerOrigin,
} from '@dmr/contract';
import { CertificateAuthority, loadSigningIdentity } from '@dmr/pki';
import { GENESIS, sealRecord, type AuditEvent, type ChainHead } from '../router/audit.js';
import { formatExport, readExportFile, type CheckpointEntry, type RecordEntry } from '../audit/export-file.js';
import { verifyExport } from '../audit/verify.js';

const argument = process.argv.indexOf('--records');
const records = argument > 0 ? Number(process.argv[argument + 1]) : 20_000;

const event = (n: number): AuditEvent => ({
  kind: 'route',
  node: 'node-1',
  messageId: `0b7f5b6e-4a51-4f4e-9a5c-${String(n).padStart(12, '0')}`,
  sender: 'ria-bot',
  recipient: 'rik-bot',
  result: 'routed',
  reason: null,
  policyRevision: '12',
  policyReasons: ['GRANT'],
  configRevision: 42,
  at: '2026-12-05T12:00:00.000Z',
});

function time(label: string, count: number, work: () => void): { label: string; perRecordUs: number } {
  const start = process.hrtime.bigint();
  work();
  const ns = Number(process.hrtime.bigint() - start);
  return { label, perRecordUs: ns / 1000 / count };
}

const chainOnce = () =>
  time('chain (before)', records, () => {
    let prev: string | null = null;
    for (let n = 0; n < records; n += 1) {
      const bytes: Buffer = Buffer.from(canonicalJson({ ...event(n), v: 1, writer: 'w', seq: n + 1, prev }), 'utf8');
      prev = createHash('sha256').update(bytes).digest('hex');
    }
  });
const edge = new LogEdge();
const since: Buffer[] = [];
const merkleOnce = () =>
  time('merkle (now)', records, () => {
    let prev: string | null = null;
    for (let n = 0; n < records; n += 1) {
      const bytes: Buffer = Buffer.from(
        canonicalJson({ ...event(n), v: 2, writer: 'w', seq: n + 1, prev, run: 'r' }),
        'utf8',
      );
      const leaf = leafHash(bytes);
      prev = leaf.toString('hex');
      edge.append(leaf);
      since.push(leaf);
      if (since.length > 4096) since.length = 0;
    }
  });
// Interleaved rounds, the fastest of each kept: the machine is shared, and the slowest rounds measure the neighbours.
const fastest = (runs: Array<{ label: string; perRecordUs: number }>) =>
  runs.reduce((best, run) => (run.perRecordUs < best.perRecordUs ? run : best));
const chainRuns = [];
const merkleRuns = [];
for (let round = 0; round < 5; round += 1) {
  chainRuns.push(chainOnce());
  merkleRuns.push(merkleOnce());
}
const chain = fastest(chainRuns);
const merkle = fastest(merkleRuns);
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signer = new NoteSigner('dmr.bench/node/node-1', privateKey);
const rounds = 200;
const checkpoint = time('checkpoint per 256 records', rounds * 256, () => {
  const base = new LogEdge();
  for (let round = 0; round < rounds; round += 1) {
    const next = base.clone();
    const leaves: Buffer[] = [];
    for (let i = 0; i < 256; i += 1) {
      const leaf = leafHash(Buffer.from(`r${round}-${i}`));
      leaves.push(leaf);
      next.append(leaf);
    }
    signer.sign(formatCheckpoint({ origin: 'dmr.bench/audit/node-1/router-0', size: next.size, root: next.root() }));
    consistencyProof(base.size, next.size, edgeAndLeavesHasher(base, leaves));
    for (const leaf of leaves) base.append(leaf);
  }
});

const rows = [chain, merkle, checkpoint];
console.log(`audit log cost per record, ${records} records, node ${process.version}`);
console.log('what                          µs/record   vs chain');
for (const row of rows) {
  console.log(
    `${row.label.padEnd(30)}${row.perRecordUs.toFixed(2).padStart(9)}   ${(row.perRecordUs / chain.perRecordUs).toFixed(2)}×`,
  );
}

const verifyArgument = process.argv.indexOf('--verify-records');
const verifyRecords = verifyArgument > 0 ? Number(process.argv[verifyArgument + 1]) : 100_000;
const dir = await mkdtemp(join(tmpdir(), 'dmr-bench-audit-'));
try {
  const td = 'dmr.bench';
  const writer = 'node-1/router-0';
  const origin = writerOrigin(td, writer);
  const ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: td });
  const day = 24 * 3600 * 1000;
  const load = (issued: { chainPem: string; privateKeyPem: string }) =>
    loadSigningIdentity(issued.chainPem, issued.privateKeyPem, 'bench');
  const node = load(await ca.issueWithKey({ kind: 'node', id: 'node-1', ttlMs: day }));
  const witness = load(await ca.issueWithKey({ kind: 'centops', id: 'config-signer', ttlMs: day }));
  const nodeSigner = new NoteSigner(nodeKeyName(td, 'node-1'), node.key);
  const witnessSigner = new NoteSigner(witnessKeyName(td), witness.key);
  const entries: Array<Omit<RecordEntry, 'line'> | Omit<CheckpointEntry, 'line'>> = [];
  const log = new LogEdge();
  let head: ChainHead = GENESIS;
  const at = new Date().toISOString();
  for (let n = 1; n <= verifyRecords; n += 1) {
    const sealed = sealRecord(writer, 'run-a', head, event(n));
    head = sealed.head;
    log.append(sealed.leaf);
    entries.push({ origin, record: sealed.bytes.toString('utf8') });
    if (n % 256 === 0 || n === verifyRecords) {
      const text = formatCheckpoint({ origin, size: log.size, root: log.root() });
      entries.push({
        origin,
        checkpoint: witnessSigner.cosign(nodeSigner.sign(text)),
        signers: { [nodeSigner.name]: node.x5c, [witnessSigner.name]: witness.x5c },
        at,
      });
    }
  }
  const file = join(dir, 'export.jsonl');
  await writeFile(
    file,
    formatExport(
      { format: 'dmr-audit-export', version: 1, source: 'stream', trustDomain: td, exportedAt: at },
      entries,
    ),
  );
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  const report = await verifyExport(await readExportFile(file), { trustBundlePem: ca.trustBundlePem() });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  // CPU seconds (user + system) of this process: on a loaded shared machine the wall time is mostly waiting.
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  if (!report.ok) throw new Error(`the bench export does not verify: ${report.firstProblem?.message ?? ''}`);
  const checkpoints = entries.length - verifyRecords;
  console.log(
    `verify (read + check) ${verifyRecords} records, ${checkpoints} checkpoints: ${seconds.toFixed(2)} s wall, ` +
      `${Math.round(verifyRecords / seconds)} records/s; ${cpuSeconds.toFixed(2)} s CPU, ` +
      `${Math.round(verifyRecords / cpuSeconds)} records per CPU second`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
