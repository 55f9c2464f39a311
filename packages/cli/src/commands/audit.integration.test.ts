/**
 * `dmr audit export | verify | prove`, live and end to end: a real CentOps
 * (test kit), a real node (`startNode`: the agent and one router child
 * process) on a TLS-only broker, traffic between two clients through the
 * SDK, the router killed with SIGKILL mid-way (its next run adopts what it
 * stored after its last checkpoint) and stopped gracefully at the end (a
 * last checkpoint covers every record). Then the real CLI exports the
 * node's stream and CentOps, verifies both, names an edited and a deleted
 * record, and proves a message against a countersigned checkpoint. One
 * CentOps, one broker and one node for the file.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { harnessPaths, pemCacheReloadCommand, startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import {
  leafHash,
  noteVerifier,
  openNote,
  parseCheckpoint,
  verifyInclusion,
  witnessKeyName,
  writerOrigin,
} from '@dmr/contract';
import { loadRunConfig, startNode, type RawRunConfig, type RunningNode } from '@dmr/node';
import { DmrClient, type ReceivedMessage } from '@dmr/sdk';
import { startTestCentOps, waitFor, type TestCentOps } from '@dmr/testkit';
import { dmrCli, runDmrInProcess } from '../test-support.js';

const TD = 'dmr.test';
const NODE = 'node-a';
const WRITER = `${NODE}/router-0`;

describe('dmr audit, live: export, verify and prove what a running node wrote', () => {
  let centops: TestCentOps;
  let harness: BrokerHarness;
  let node: RunningNode | undefined;
  let dir: string;
  let nodeConfig: string;
  let adminConfig: string;
  let rootFile: string;
  const sent: string[] = [];
  // In process (a `dmr` child costs a Node start and the group's imports: docs/decisions/0038-ci-time.md).
  const { dmr, ok, json } = dmrCli(() => ({ cwd: dir }), runDmrInProcess);

  before(async () => {
    centops = await startTestCentOps({
      label: 'audit-live',
      trustDomain: TD,
      organisations: { 'org-a': 'A', 'org-b': 'B' },
      nodes: [NODE],
      clients: [
        { id: 'bot-a', organisation: 'org-a' },
        { id: 'bot-b', organisation: 'org-b' },
      ],
    });
    dir = centops.dir;
    // Grant org-a → org-b in the default pack's data (CentOps runs opa check and opa test on it).
    const policy = await centops.api('/v1/policy');
    assert.equal(policy.status, 200, policy.text);
    const files = (policy.json as { files: Record<string, string> }).files;
    const data = JSON.parse(files['dmr/data.json'] ?? '{}') as { grants?: unknown[] };
    const granted = await centops.api('/v1/policy', {
      method: 'PUT',
      body: {
        files: {
          ...files,
          'dmr/data.json': JSON.stringify({
            ...data,
            grants: [...(data.grants ?? []), { from: 'org-a', to: 'org-b', types: ['ChatMessage', 'DeliveryReport'] }],
          }),
        },
      },
    });
    assert.equal(granted.status, 200, granted.text);

    harness = await startBrokers({ dir: join(dir, 'brokers'), ca: centops.server.ca, namePrefix: 'audit-live' });
    const broker = harness.node(0);
    rootFile = join(dir, 'root.pem');
    await writeFile(rootFile, centops.rootPem);
    await writeFile(join(dir, 'node.token'), `${await centops.token(NODE, 'node')}\n`);
    const raw: RawRunConfig = {
      node: NODE,
      dataDir: join(dir, NODE),
      centops: {
        url: centops.server.apiUrl,
        enrolUrl: centops.server.enrolUrl,
        caFile: rootFile,
        tokenFile: join(dir, 'node.token'),
        trustDomain: TD,
      },
      broker: {
        amqpsUrl: broker.amqpsUrl,
        serverName: 'localhost',
        management: {
          url: broker.managementUrl,
          username: harness.adminUsername,
          passwordFile: harnessPaths(harness.dir).adminPasswordFile,
        },
        tls: { ...broker.tls, reloadCommand: pemCacheReloadCommand(harness.dir) },
      },
      routers: 1,
      feed: { backoffInitialMs: 100, backoffMaxMs: 1000, waitSeconds: 5 },
      logLevel: 'silent',
    };
    nodeConfig = join(dir, 'node.yaml');
    await writeFile(nodeConfig, stringify(raw));
    adminConfig = join(dir, 'admin.yaml');
    await writeFile(
      adminConfig,
      stringify({
        apiVersion: 'dmr/v1',
        kind: 'CentOpsClientConfig',
        endpoint: centops.server.apiUrl,
        caBundle: join(centops.centopsDir, 'ca/root.crt'),
        clientCertificate: join(`${centops.centopsDir}-admin`, 'admin.crt'),
        clientKey: join(`${centops.centopsDir}-admin`, 'admin.key'),
      }),
      { mode: 0o600 },
    );
    node = await startNode(await loadRunConfig(nodeConfig));
  });

  after(async () => {
    await node?.stop();
    await harness?.stop().catch(() => undefined);
    await centops?.close();
  });

  /** Enrols both clients, waits until the node runs the revision that gives them broker users, connects them. */
  async function clients(ids: string[]): Promise<DmrClient[]> {
    const issued = await Promise.all(ids.map((id) => centops.enrolClient(id)));
    await waitFor('the node to run the revision with the clients', async () => {
      const status = (await centops.api(`/v1/nodes/${NODE}/status`)).json as {
        inSync?: boolean;
        currentRevision?: number;
      };
      return status.inSync === true && node?.agent.appliedRevision === status.currentRevision ? true : undefined;
    });
    return Promise.all(
      ids.map((id, i) =>
        DmrClient.connect({
          url: harness.node(0).amqpsUrl,
          servername: 'localhost',
          node: NODE,
          id,
          tls: { cert: issued[i]?.chainPem ?? '', key: issued[i]?.privateKeyPem ?? '', ca: centops.rootPem },
          backoff: { initialMs: 100, maxMs: 1000 },
        }),
      ),
    );
  }

  it('routes SDK traffic across a SIGKILLed router, and a graceful stop checkpoints every record', async () => {
    const [a, b] = await clients(['bot-a', 'bot-b']);
    assert.ok(a !== undefined && b !== undefined);
    const got = new Set<string>();
    await b.receive((message: ReceivedMessage) => {
      got.add(message.id);
    });
    const burst = async (count: number): Promise<void> => {
      const ids = await Promise.all(
        Array.from({ length: count }, (_, i) => a.send({ to: 'bot-b', type: 'ChatMessage', body: { n: i } })),
      );
      sent.push(...ids);
      await waitFor(`${sent.length} messages at bot-b`, () => sent.every((id) => got.has(id)) || undefined);
    };
    await burst(20);
    // Killed right after its last deliveries: what it stored since its last checkpoint stays in the stream.
    const supervisor = node?.supervisor;
    assert.ok(supervisor !== undefined);
    const killed = supervisor.pids[0];
    assert.ok(killed !== undefined);
    supervisor.child(0)?.kill('SIGKILL');
    await waitFor('the router to be restarted', () => {
      const pid = supervisor.pids[0];
      return pid !== undefined && pid !== killed ? pid : undefined;
    });
    await burst(20);
    await a.close();
    await b.close();
    await node?.stop();
    node = undefined;
  });

  it('dmr audit export + verify: the stream and CentOps each prove themselves; every record proven', async () => {
    await ok('audit', 'export', '--config', nodeConfig, '--out', 'stream.jsonl', '--idle-ms', '1000');
    await ok('audit', 'export', '--centops', '--ctl-config', adminConfig, '--out', 'centops.jsonl');
    const report = await json<{
      ok: boolean;
      logs: Array<{ origin: string; records: number; provenSize: number; unproven: number }>;
    }>('audit', 'verify', 'stream.jsonl', '--trust-bundle', rootFile);
    assert.equal(report.ok, true);
    const log = report.logs.find((item) => item.origin === writerOrigin(TD, WRITER));
    assert.ok(log !== undefined, JSON.stringify(report.logs));
    assert.ok(log.records >= sent.length, `${log.records} records for ${sent.length} messages`);
    assert.equal(log.unproven, 0, 'the graceful stop checkpointed every record');
    assert.equal(log.provenSize, log.records);
    const held = await centops.api(`/v1/audit/writers/${WRITER}/checkpoint`);
    assert.equal(held.status, 200, held.text);
    assert.equal((held.json as { size: number }).size, log.records, 'CentOps countersigned a checkpoint of them all');
    const own = await json<{ ok: boolean; logs: Array<{ origin: string; records: number }> }>(
      'audit',
      'verify',
      'centops.jsonl',
      '--trust-bundle',
      rootFile,
    );
    assert.equal(own.ok, true);
    assert.ok((own.logs.find((item) => item.origin === `${TD}/audit/centops`)?.records ?? 0) > 0);
  });

  it('dmr audit verify names an edited and a deleted record', async () => {
    const lines = (await readFile(join(dir, 'stream.jsonl'), 'utf8')).split('\n');
    const index = lines.findIndex((line) => line.includes(sent[5] as string));
    assert.ok(index > 0);
    const entry = JSON.parse(lines[index] as string) as { origin: string; record: string };
    const record = JSON.parse(entry.record) as Record<string, unknown>;
    const edited = [...lines];
    edited[index] = JSON.stringify({ ...entry, record: entry.record.replace('"bot-b"', '"bot-x"') });
    await writeFile(join(dir, 'edited.jsonl'), edited.join('\n'));
    const editedRun = await dmr('-o', 'json', 'audit', 'verify', 'edited.jsonl', '--trust-bundle', rootFile);
    assert.equal(editedRun.status, 14, editedRun.stderr);
    const { error: editedError } = JSON.parse(editedRun.stderr) as {
      error: { code: string; details: { kind: string; seq: number } };
    };
    assert.equal(editedError.code, 'AUDIT_LOG_BROKEN');
    assert.equal(editedError.details.kind, 'edited');
    assert.equal(editedError.details.seq, record.seq);

    const deleted = lines.filter((_, i) => i !== index);
    await writeFile(join(dir, 'deleted.jsonl'), deleted.join('\n'));
    const deletedRun = await dmr('-o', 'json', 'audit', 'verify', 'deleted.jsonl', '--trust-bundle', rootFile);
    assert.equal(deletedRun.status, 14, deletedRun.stderr);
    const { error: deletedError } = JSON.parse(deletedRun.stderr) as {
      error: { details: { kind: string; seq: number } };
    };
    assert.equal(deletedError.details.kind, 'deleted');
    assert.equal(deletedError.details.seq, record.seq);
  });

  it('dmr audit prove <message-id>: an inclusion proof a third party checks against the countersigned checkpoint', async () => {
    const id = sent[30] as string;
    const [statement] = await json<
      Array<{
        record: string;
        index: number;
        treeSize: number;
        proof: string[];
        checkpoint: string;
        signers: Record<string, string[]>;
      }>
    >('audit', 'prove', id, '--file', 'stream.jsonl', '--trust-bundle', rootFile);
    assert.ok(statement !== undefined);
    assert.equal((JSON.parse(statement.record) as { messageId: string }).messageId, id);
    // What a third party does with the statement alone: the witness signature, then the proof to the root.
    const witnessChain = statement.signers[witnessKeyName(TD)];
    assert.ok(witnessChain !== undefined);
    const witness = new X509Certificate(Buffer.from(witnessChain[0] as string, 'base64'));
    const { text } = openNote(statement.checkpoint, [noteVerifier(witnessKeyName(TD), witness.publicKey)]);
    const checkpoint = parseCheckpoint(text);
    assert.equal(checkpoint.size, statement.treeSize);
    assert.ok(
      verifyInclusion(
        statement.index,
        statement.treeSize,
        leafHash(Buffer.from(statement.record, 'utf8')),
        statement.proof.map((hash) => Buffer.from(hash, 'base64')),
        checkpoint.root,
      ),
    );
  });
});
