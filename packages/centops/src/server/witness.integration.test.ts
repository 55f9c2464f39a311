/**
 * CentOps as the audit logs' witness, over its real mutual-TLS API: a node's
 * writer gets consistent checkpoints countersigned, a fork is refused, a
 * node cannot checkpoint another node's writer, and CentOps' own audit table
 * is checkpointed as a log of the same kind.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { canonicalJson } from '@dmr/core';
import {
  LogEdge,
  MAX_PROOF_HASHES,
  NoteSigner,
  centOpsOrigin,
  consistencyProof,
  formatCheckpoint,
  leafHash,
  nodeKeyName,
  noteVerifier,
  openNote,
  parseCheckpoint,
  rangeHasher,
  rootOf,
  witnessKeyName,
  writerOrigin,
} from '@dmr/contract';
import { MAX_AUDIT_WRITERS_PER_NODE } from '../store/index.js';
import { node, organisation } from '../store/test-support/fixtures.js';
import { CONFIG_FILE, loadConfig } from './config.js';
import { startEmptyCentOps, type EmptyCentOps } from './test-support/empty-centops.js';
import type { Credentials } from './test-support/https.js';

const TD = 'dmr.test';
const WRITER = 'node-1/router-0';
const ORIGIN = writerOrigin(TD, WRITER);

const leaves = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, i) => leafHash(Buffer.from(`${prefix} ${i}`)));

describe('CentOps witnesses audit checkpoints', () => {
  let centops: EmptyCentOps;
  let node1: Credentials;
  let node2: Credentials;
  let witnessCertificate: X509Certificate;

  before(async () => {
    centops = await startEmptyCentOps({ label: 'centops-witness', trustDomain: TD });
    const applied = await centops.api('/v1/apply', {
      method: 'POST',
      body: [
        { kind: 'Organisation', spec: organisation('police') },
        { kind: 'Node', spec: node('node-1') },
        { kind: 'Node', spec: node('node-2') },
      ],
    });
    assert.equal(applied.status, 200, applied.text);
    const asCredentials = ({ cert, key }: Credentials): Credentials => ({ cert, key });
    node1 = asCredentials(await centops.enrol('node-1', { kind: 'node' }));
    node2 = asCredentials(await centops.enrol('node-2', { kind: 'node' }));
    const config = await loadConfig(`${centops.centopsDir}/${CONFIG_FILE}`);
    witnessCertificate = new X509Certificate(await readFile(config.signer.certificate, 'utf8'));
  });

  after(() => centops?.close());

  function submission(tree: Buffer[], from: number, key = node1.key, history: Buffer[] = tree) {
    const edge = new LogEdge();
    for (const leaf of tree) edge.append(leaf);
    const text = formatCheckpoint({ origin: ORIGIN, size: tree.length, root: edge.root() });
    return {
      checkpoint: new NoteSigner(nodeKeyName(TD, 'node-1'), createPrivateKey(key)).sign(text),
      proof: consistencyProof(from, tree.length, rangeHasher(history)).map((hash) => hash.toString('base64')),
      edge: edge.nodes.map((hash) => hash.toString('base64')),
    };
  }

  const submit = (body: unknown, credentials = node1) =>
    centops.api('/v1/audit/checkpoints', { method: 'POST', body, credentials });

  it('countersigns a new log and each consistent extension; the writer can read where its log stands', async () => {
    const history = leaves('record', 40);
    const first = await submit(submission(history.slice(0, 5), 0));
    assert.equal(first.status, 200, first.text);
    const answer = first.json as { checkpoint: string; size: number; witness: string[] };
    assert.equal(answer.size, 5);
    const opened = openNote(answer.checkpoint, [
      noteVerifier(nodeKeyName(TD, 'node-1'), new X509Certificate(node1.cert).publicKey),
      noteVerifier(witnessKeyName(TD), witnessCertificate.publicKey),
    ]);
    assert.equal(opened.signedBy.length, 2, 'signed by the node and countersigned by CentOps');
    assert.equal(
      new X509Certificate(Buffer.from(answer.witness[0] as string, 'base64')).fingerprint256,
      witnessCertificate.fingerprint256,
    );

    const second = await submit(submission(history.slice(0, 23), 5, node1.key, history.slice(0, 23)));
    assert.equal(second.status, 200, second.text);
    // The same checkpoint again is answered with the one held.
    assert.equal((await submit(submission(history.slice(0, 23), 5, node1.key, history.slice(0, 23)))).status, 200);

    const held = await centops.api(`/v1/audit/writers/${WRITER}/checkpoint`, { credentials: node1 });
    assert.equal(held.status, 200, held.text);
    const body = held.json as { size: number; edge: string[]; checkpoint: string };
    assert.equal(body.size, 23);
    const edge = new LogEdge(
      23,
      body.edge.map((hash) => Buffer.from(hash, 'base64')),
    );
    assert.ok(edge.root().equals(rootOf(history.slice(0, 23))));
    assert.equal((await centops.api(`/v1/audit/writers/${WRITER}/checkpoint`, { credentials: node2 })).status, 403);
    assert.equal(
      (await centops.api('/v1/audit/writers/node-1/router-9/checkpoint', { credentials: node1 })).status,
      404,
    );

    const writers = await centops.api('/v1/audit/writers');
    assert.deepEqual(
      (writers.json as { items: Array<{ writer: string; nodeId: string }> }).items.map((item) => [
        item.writer,
        item.nodeId,
      ]),
      [[WRITER, 'node-1']],
    );
  });

  it('refuses a fork: another history, another root at the held size, or a size behind the held one', async () => {
    const history = leaves('record', 40);
    const forked = [...history.slice(0, 10), ...leaves('forged', 20)];
    const refused = await submit(submission(forked, 23));
    assert.equal(refused.status, 422, refused.text);
    assert.match(refused.text, /AUDIT_CHECKPOINT_INVALID/);
    assert.match(refused.text, /fork/);
    const sameSize = await submit(submission([...history.slice(0, 22), leafHash(Buffer.from('x'))], 23));
    assert.equal(sameSize.status, 422, sameSize.text);
    const behind = await submit(submission(history.slice(0, 7), 5));
    assert.equal(behind.status, 422, behind.text);
    // The held checkpoint is still the honest one, and the honest writer goes on.
    assert.equal((await submit(submission(history.slice(0, 30), 23))).status, 200);
  });

  it("a node cannot checkpoint another node's writer, nor sign with a key that is not its certificate's", async () => {
    const tree = leaves('record', 31);
    const theirs = await submit(submission(tree, 30, node2.key), node2);
    assert.equal(theirs.status, 422, 'signed by node-2 under node-1 key name: no known key signed it');
    const history = leaves('record', 40);
    const wrongKey = await submit(submission(history.slice(0, 35), 30, node2.key, history.slice(0, 35)));
    assert.equal(wrongKey.status, 422, wrongKey.text);
    const asOperator = await centops.api('/v1/audit/checkpoints', { method: 'POST', body: submission(tree, 30) });
    assert.equal(asOperator.status, 403, asOperator.text);
    const malformed = await submit({ checkpoint: 'x', proof: ['nope'], edge: [] });
    assert.equal(malformed.status, 422, malformed.text);
    assert.match(malformed.text, /VALIDATION_FAILED/);
  });

  /** A new log of `writer` (size 0) checkpointed by node-2 with its own key: the node's writer or not. */
  function node2Checkpoint(writer: string) {
    const text = formatCheckpoint({ origin: writerOrigin(TD, writer), size: 0, root: new LogEdge().root() });
    return {
      checkpoint: new NoteSigner(nodeKeyName(TD, 'node-2'), createPrivateKey(node2.key)).sign(text),
      proof: [],
      edge: [],
    };
  }

  it("a node signing with its own key still cannot checkpoint another node's writer", async () => {
    const theirs = await submit(node2Checkpoint(WRITER), node2);
    assert.equal(theirs.status, 403, theirs.text);
    assert.match(theirs.text, /FORBIDDEN/);
  });

  it('refuses a consistency proof or an edge longer than any log of 2^53 records needs', async () => {
    const hash = leafHash(Buffer.from('x')).toString('base64');
    const longProof = await submit(
      { ...node2Checkpoint('node-2/router-0'), proof: Array(MAX_PROOF_HASHES + 1).fill(hash) },
      node2,
    );
    assert.equal(longProof.status, 422, longProof.text);
    assert.match(longProof.text, /VALIDATION_FAILED/);
    const longEdge = await submit({ ...node2Checkpoint('node-2/router-0'), edge: Array(65).fill(hash) }, node2);
    assert.equal(longEdge.status, 422, longEdge.text);
    assert.match(longEdge.text, /VALIDATION_FAILED/);
  });

  it(`registers at most ${MAX_AUDIT_WRITERS_PER_NODE} writers per node; the registered ones go on`, async () => {
    const root = new LogEdge().root().toString('base64');
    for (let i = 0; i < MAX_AUDIT_WRITERS_PER_NODE; i++) {
      const writer = `node-2/w-${i}`;
      await centops.store.witnessAuditCheckpoint(
        { origin: writerOrigin(TD, writer), writer: { writer, nodeId: 'node-2' }, size: 0, root, edge: [] },
        () => 'filled by the test',
      );
    }
    const oneMore = await submit(node2Checkpoint('node-2/router-0'), node2);
    assert.equal(oneMore.status, 403, oneMore.text);
    assert.match(oneMore.text, /FORBIDDEN/);
    assert.match(oneMore.text, new RegExp(`${MAX_AUDIT_WRITERS_PER_NODE} audit writers`));
    const known = await submit(node2Checkpoint('node-2/w-0'), node2);
    assert.equal(known.status, 200, known.text);
    // The bound is per node: node-1 registers a new writer still.
    const tree = leaves('other', 3);
    const edge = new LogEdge();
    for (const leaf of tree) edge.append(leaf);
    const text = formatCheckpoint({ origin: writerOrigin(TD, 'node-1/router-1'), size: 3, root: edge.root() });
    const fresh = await submit({
      checkpoint: new NoteSigner(nodeKeyName(TD, 'node-1'), createPrivateKey(node1.key)).sign(text),
      proof: [],
      edge: edge.nodes.map((hash) => hash.toString('base64')),
    });
    assert.equal(fresh.status, 200, fresh.text);
  });

  it("checkpoints CentOps' own audit table as a Merkle log of its entries' canonical JSON", async () => {
    await centops.server.witness.checkpointOwnLog();
    const listed = await centops.api(`/v1/audit/checkpoints?origin=${encodeURIComponent(centOpsOrigin(TD))}`);
    assert.equal(listed.status, 200, listed.text);
    const items = (listed.json as { items: Array<{ checkpoint: string; size: number }> }).items;
    const latest = items.at(-1);
    assert.ok(latest !== undefined);
    const { text } = openNote(latest.checkpoint, [noteVerifier(witnessKeyName(TD), witnessCertificate.publicKey)]);
    const entries = [];
    for (let seq = 0; ;) {
      const page = await centops.store.auditEntriesAfter(seq, 1000);
      entries.push(...page);
      if (page.length < 1000) break;
      seq = page.at(-1)?.seq ?? seq;
    }
    const checkpoint = parseCheckpoint(text);
    assert.equal(checkpoint.size, entries.length);
    assert.ok(
      checkpoint.root.equals(rootOf(entries.map((entry) => leafHash(Buffer.from(canonicalJson(entry), 'utf8'))))),
    );
  });
});
