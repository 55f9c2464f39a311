/**
 * A writer that stopped after its last checkpoint, on a real broker with a
 * real CentOps witness (mutual TLS): its records after the checkpoint stay
 * in `dmr.audit`. Without adopting them the next run re-uses their seqs and
 * verify calls an honest log "reordered" (the control below); the router
 * process reads them back and adopts them, and its graceful stop publishes
 * a last countersigned checkpoint covering every record. One CentOps, one
 * broker and one node agent for the file.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { writeFile } from 'node:fs/promises';
import { connectWithCertificate } from '@dmr/broker';
import { TcpProxy } from '@dmr/broker-harness';
import { brokerServerCheck } from '@dmr/pki';
import { vhostName } from '@dmr/contract';
import { waitFor } from '@dmr/core/testing';
import { NodeAgent } from '../agent/agent.js';
import { CentOpsClient } from '@dmr/centops-client';
import { loadIdentity } from '../agent/identity.js';
import { startRouterProcess } from '../agent/router-process.js';
import { loadRunConfig, type RunConfig } from '../agent/run-config.js';
import { NODE, TD, startAgentEnvironment, writeRunConfig, type AgentEnvironment } from '../agent/test-support.js';
import { StreamAuditSink, type AuditEvent } from '../router/audit.js';
import { AuditCheckpointer } from '../router/audit-checkpointer.js';
import { exportFromNode } from './export.js';
import { scanNode } from './trace.js';
import { parseExport } from './export-file.js';
import { verifyExport, type LogReport } from './verify.js';
import { readBackAfterLostConfirm, readWriterTail } from './tail.js';

const event = (i: number): AuditEvent => ({
  kind: 'route',
  node: NODE,
  messageId: randomUUID(),
  sender: 'police-bot',
  recipient: 'police-bot',
  result: 'rejected',
  reason: `test ${i}`,
  policyRevision: null,
  policyReasons: [],
  configRevision: 1,
  at: new Date().toISOString(),
});

describe('audit log: a writer that stopped after its last checkpoint', () => {
  let env: AgentEnvironment;
  let config: RunConfig;
  let agent: NodeAgent;
  let client: CentOpsClient;

  before(async () => {
    env = await startAgentEnvironment();
    config = await loadRunConfig(await writeRunConfig(env.dir, 'node-a.yaml', env.runConfig));
    await writeFile(join(env.dir, 'node-a.token'), `${await env.token(NODE, 'node')}\n`);
    agent = new NodeAgent(config, { logger: pino({ level: 'silent' }) });
    await agent.start();
    // The agent has applied a document: the broker layout (dmr.audit) and the node's broker user exist.
    await waitFor('the agent to apply its first document', () => (agent.appliedRevision ?? 0) > 0 || undefined);
    const identity = await loadIdentity(config.dataDir);
    assert.ok(identity !== undefined);
    client = new CentOpsClient({
      apiUrl: config.centops.url,
      caPem: env.ca,
      trustDomain: TD,
      identity: { certPem: identity.chainPem, keyPem: identity.privateKeyPem },
    });
  });

  after(async () => {
    client?.close();
    await agent?.stop();
    await env?.close();
  });

  /** A connection with the node's certificate, as a router makes it (optionally through a proxy's port). */
  async function connect(port = env.harness.node(0).amqpsPort) {
    const identity = await loadIdentity(config.dataDir);
    assert.ok(identity !== undefined);
    const connection = await connectWithCertificate({
      port,
      servername: 'localhost',
      caPem: identity.trustBundlePem,
      certificatePem: identity.chainPem,
      privateKeyPem: identity.privateKeyPem,
      vhost: vhostName(NODE),
      tls: { checkServerIdentity: brokerServerCheck(TD, NODE) },
    });
    connection.on('error', () => undefined);
    return connection;
  }

  /** A writer's run as a router runs it, on its own broker connection with the node's certificate. */
  async function run(writer: string, port?: number) {
    const identity = await loadIdentity(config.dataDir);
    assert.ok(identity !== undefined);
    const connection = await connect(port);
    const channel = await connection.createConfirmChannel();
    // As the router process makes it: a lost confirm is read back before the next record.
    const sink = new StreamAuditSink({ writer, readBack: readBackAfterLostConfirm });
    const checkpointer = new AuditCheckpointer({
      writer,
      nodeId: NODE,
      trustDomain: TD,
      identity: () => ({ certificateChainPem: identity.chainPem, privateKeyPem: identity.privateKeyPem }),
      witness: client,
      publish: (body) => sink.publishCheckpoint(body),
    });
    sink.onStored = (leaf) => checkpointer.stored(leaf);
    sink.attach(channel, connection);
    const append = (from: number, count: number) =>
      Promise.all(Array.from({ length: count }, (_, i) => sink.append(event(from + i))));
    return { sink, checkpointer, connection, append };
  }

  /** A first run: 5 records, a witnessed checkpoint, 3 more records, then its connection is gone (no last checkpoint). */
  async function crashedRun(writer: string): Promise<void> {
    const first = await run(writer);
    assert.equal((await first.checkpointer.resume()).size, 0);
    await first.append(1, 5);
    await first.checkpointer.checkpoint();
    assert.equal(first.checkpointer.witnessedSize, 5);
    await first.append(6, 3);
    // Abrupt: no sink.close, no checkpointer.close; the confirmed records 6–8 stay in the stream, unwitnessed.
    await first.connection.close();
  }

  async function report(writer: string): Promise<LogReport> {
    const exported = parseExport(await exportFromNode(config, { idleMs: 1000 }));
    const verified = await verifyExport(exported, { trustBundlePem: env.ca });
    const log = verified.logs.find((item) => item.origin === `${TD}/audit/${writer}`);
    assert.ok(log !== undefined, JSON.stringify(verified.logs));
    return log;
  }

  it('control: a next run that continues from the checkpoint alone makes an honest log read as tampered', async () => {
    const writer = `${NODE}/router-9`;
    await crashedRun(writer);
    const second = await run(writer);
    const { size } = await second.checkpointer.resume();
    assert.equal(size, 5);
    second.sink.resume(size);
    await second.append(100, 2);
    await second.checkpointer.close();
    await second.connection.close();
    const log = await report(writer);
    // Records 6–8 twice: the checkpoint of 7 misses the root over the first 6–7 (or a seq steps back).
    assert.ok(log.problem !== undefined && ['edited', 'reordered'].includes(log.problem.kind), JSON.stringify(log));
  });

  it('the next run reads back and adopts what the last one stored after its checkpoint', async () => {
    const writer = `${NODE}/router-8`;
    await crashedRun(writer);
    const second = await run(writer);
    const continues = await second.checkpointer.resume();
    assert.equal(continues.size, 5);
    assert.ok(continues.at instanceof Date, 'CentOps says when it witnessed the checkpoint');
    const tail = await readWriterTail(second.connection, {
      writer,
      run: second.sink.run,
      after: continues.size,
      ...(continues.at === undefined ? {} : { witnessedAt: continues.at }),
    });
    assert.equal(tail.leaves.length, 3);
    second.checkpointer.adopt(tail.leaves);
    second.sink.resume(continues.size + tail.leaves.length, tail.head);
    await second.append(100, 2);
    await second.checkpointer.close();
    await second.connection.close();
    const log = await report(writer);
    assert.equal(log.problem, undefined, JSON.stringify(log));
    assert.equal(log.records, 10);
    assert.equal(log.provenSize, 10);
    assert.equal(log.unproven, 0);
  });

  it('a router process adopts the tail at start, and its graceful stop checkpoints every record, countersigned', async () => {
    const writer = `${NODE}/router-0`;
    await crashedRun(writer);
    const router = await startRouterProcess({ config, shard: 0, logger: pino({ level: 'silent' }), pollMs: 200 });
    await router.stop();
    const held = await client.auditWriterCheckpoint(writer);
    assert.equal(held?.size, 8, 'CentOps countersigned a checkpoint of all 8 records');
    const log = await report(writer);
    assert.equal(log.problem, undefined, JSON.stringify(log));
    assert.equal(log.records, 8);
    assert.equal(log.provenSize, 8, 'the last checkpoint in the stream covers every record');
    assert.equal(log.unproven, 0);
  });

  it('a record stored whose confirm is lost in a connection drop is read back, not numbered again', async () => {
    const writer = `${NODE}/router-7`;
    // The writer's broker connection goes through a proxy that can lose the broker's answers on the way back.
    const proxy = await TcpProxy.start({ targetPort: env.harness.node(0).amqpsPort });
    try {
      const first = await run(writer, proxy.port);
      assert.equal((await first.checkpointer.resume()).size, 0);
      await first.append(1, 3);
      // The broker stores records 4–5 and confirms them, but the confirm never arrives: the connection drops.
      proxy.holdReplies();
      const lost = first.append(4, 2);
      const observer = await connect();
      await waitFor('records 4–5 to be stored in dmr.audit', async () => {
        const stored = await readWriterTail(observer, { writer, run: 'observer', after: 3 });
        return stored.leaves.length === 2 || undefined;
      });
      await observer.close();
      proxy.cut();
      await assert.rejects(lost, 'the lost confirm fails the records (their messages are routed again)');
      assert.equal(first.sink.head.seq, 3, 'the writer knows records 1–3 stored, nothing after');
      // The router reconnects and hands the sink its new channel; the next records follow the stored 4–5.
      proxy.restore();
      const connection = await connect(proxy.port);
      first.sink.attach(await connection.createConfirmChannel(), connection);
      await first.append(6, 2);
      await first.checkpointer.close();
      await connection.close();
      const log = await report(writer);
      // Before the read-back the new records re-used seqs 4–5: verify called the honest log tampered.
      assert.equal(log.problem, undefined, JSON.stringify(log));
      assert.equal(first.sink.head.seq, 7);
      assert.equal(log.records, 7);
      assert.equal(log.provenSize, 7);
      assert.equal(log.unproven, 0);
    } finally {
      await proxy.close();
    }
  });

  it('an export and a trace of a stream that routers keep writing return: they stop at the end as of their start', async () => {
    const writer = `${NODE}/router-6`;
    const busy = await run(writer);
    assert.equal((await busy.checkpointer.resume()).size, 0);
    await busy.append(1, 5);
    // A writer that never pauses: the idle rule alone (the old stop) would keep both reads open forever.
    let writing = true;
    let written = 5;
    const traffic = (async () => {
      while (writing) {
        await busy.append(written + 1, 1);
        written += 1;
      }
    })();
    let exported: ReturnType<typeof parseExport> | undefined;
    let scanned: Awaited<ReturnType<typeof scanNode>> | undefined;
    try {
      // A generous idle bound: only the end-of-stream rule can end these reads while the writer runs.
      const reads = Promise.all([
        exportFromNode(config, { idleMs: 600_000 }).then((text) => (exported = parseExport(text))),
        scanNode(config, { messageId: randomUUID(), limit: 1_000_000, idleMs: 600_000 }).then((r) => (scanned = r)),
      ]);
      await waitFor(
        'the export and the trace read to return while the writer keeps writing',
        () => (exported !== undefined && scanned !== undefined) || undefined,
        { timeoutMs: 120_000 },
      );
      await reads;
      assert.ok(writing, 'both reads returned while records were still being written');
    } finally {
      writing = false;
      await traffic;
      await busy.checkpointer.close();
      await busy.connection.close();
    }
    assert.ok(exported !== undefined && scanned !== undefined);
    assert.equal(scanned.summary.truncated, false);
    assert.ok(scanned.summary.read > 0, 'the trace read the stream');
    const records = exported.entries.filter((entry) => 'record' in entry && entry.record.includes(writer)).length;
    assert.ok(records >= 5, `the export holds the records written before it began (${records})`);
  });
});
