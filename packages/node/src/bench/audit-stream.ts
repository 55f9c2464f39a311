/**
 * What an audit record costs on its way into `dmr.audit` (decision 0036):
 * CPU time of the broker and of this process per record, through the
 * product's StreamAuditSink into a stream on a real harness broker (TLS,
 * EXTERNAL, confirms), one stream message per record (maxBatch 1: how
 * routers wrote before 0036) against one per batch (the default). Records
 * are appended the way a router appends them: a burst per event loop turn
 * (the messages of one socket read), at most `window` unconfirmed (its
 * prefetch). CPU time, not wall time: on a shared machine the neighbours
 * stretch the wall clock, much less the CPU a record takes. Rounds
 * alternate between the modes; the lowest figure of each is kept. A
 * benchmark, not a test: it prints figures and asserts nothing.
 *
 *   npm run bench -- audit-stream [N] [BURST]   N records per round (default 20 000), BURST per turn (default 16)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { readProcStat, startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import { spiffeId } from '@dmr/core';
import { AUDIT_STREAM } from '@dmr/contract';
import { CertificateAuthority } from '@dmr/pki';
import { StreamAuditSink, type AuditEvent } from '../router/audit.js';

const VHOST = 'bench-audit';
const USER = 'bench-audit-writer';
const ROUNDS = 3;
/** Unconfirmed records at most, as a router's prefetch (256) bounds them. */
const WINDOW = 256;
/** Linux USER_HZ: /proc/<pid>/stat counts CPU in 1/100 s. */
const TICKS_PER_SECOND = 100;

function event(n: number): AuditEvent {
  return {
    kind: 'route',
    node: 'bench-node',
    messageId: `0b6a7c2e-1111-4a5b-8c9d-${String(n).padStart(12, '0')}`,
    sender: 'bench-sender',
    recipient: 'bench-receiver',
    result: 'routed',
    reason: null,
    policyRevision: '1',
    policyReasons: ['GRANT'],
    configRevision: 1,
    at: new Date().toISOString(),
  };
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

function brokerCpuMs(pid: number): number {
  const stat = readProcStat(pid);
  if (stat === undefined) throw new Error(`broker process ${pid} is gone`);
  return (stat.cpuTicks / TICKS_PER_SECOND) * 1000;
}

/** Appends `n` records through `sink` in bursts of `burst` per turn, at most WINDOW unconfirmed. */
async function append(sink: StreamAuditSink, n: number, burst: number, offset: number): Promise<void> {
  const unconfirmed = new Set<Promise<void>>();
  for (let i = 0; i < n; i += burst) {
    for (let j = i; j < Math.min(n, i + burst); j += 1) {
      const stored: Promise<void> = sink.append(event(offset + j)).finally(() => unconfirmed.delete(stored));
      unconfirmed.add(stored);
    }
    await nextTurn();
    while (unconfirmed.size >= WINDOW) await Promise.race(unconfirmed);
  }
  await Promise.all(unconfirmed);
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 20_000);
  const burst = Number(process.argv[3] ?? 16);
  const dir = await mkdtemp(join(tmpdir(), 'dmr-bench-audit-'));
  let harness: BrokerHarness | undefined;
  try {
    const ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: 'dmr.bench' });
    process.stderr.write('starting a broker (≈ 7 s)\n');
    harness = await startBrokers({ dir: join(dir, 'brokers'), ca, nodes: 1, namePrefix: 'bench-audit' });
    const management = harness.management();
    await management.declareVhost(VHOST);
    const user = spiffeId(ca.trustDomain, 'client', USER);
    await management.createCertificateUser(user);
    await management.setPermissions(VHOST, user, { configure: '.*', write: '.*', read: '.*' });
    await management.declareQueue(VHOST, AUDIT_STREAM, { arguments: { 'x-queue-type': 'stream' } });
    const issued = await ca.issueWithKey({ kind: 'client', id: USER });
    const connection = await harness.connect({
      certificatePem: issued.chainPem,
      privateKeyPem: issued.privateKeyPem,
      vhost: VHOST,
    });
    const channel = await connection.createConfirmChannel();
    const pid = harness.node().pid;
    if (pid === null) throw new Error('the broker has no process id');
    const modes = [
      { name: 'one stream message per record (before 0036)', maxBatch: 1 },
      { name: 'one stream message per batch (0036)', maxBatch: 64 },
    ];
    const best = modes.map(() => ({ broker: Infinity, writer: Infinity }));
    // Warm-up: JIT, the stream's first segment.
    for (const mode of modes) {
      const sink = new StreamAuditSink({ writer: 'warm-up', maxBatch: mode.maxBatch });
      sink.attach(channel, undefined);
      await append(sink, Math.min(n, 5_000), burst, 0);
      await sink.close();
    }
    for (let round = 0; round < ROUNDS; round += 1) {
      for (const [index, mode] of modes.entries()) {
        const sink = new StreamAuditSink({ writer: `round-${round}-${index}`, maxBatch: mode.maxBatch });
        sink.attach(channel, undefined);
        const broker = brokerCpuMs(pid);
        const writer = cpuMs();
        await append(sink, n, burst, round * n);
        await sink.close();
        const figures = best[index] as { broker: number; writer: number };
        figures.broker = Math.min(figures.broker, ((brokerCpuMs(pid) - broker) * 1000) / n);
        figures.writer = Math.min(figures.writer, ((cpuMs() - writer) * 1000) / n);
        process.stderr.write(`round ${round + 1}/${ROUNDS}: ${mode.name} done\n`);
      }
    }
    await connection.close();
    console.log(`audit records into ${AUDIT_STREAM}: ${n} per round, bursts of ${burst}, lowest of ${ROUNDS} rounds`);
    console.log('mode                                          broker µs/record  writer µs/record');
    for (const [index, mode] of modes.entries()) {
      const figures = best[index] as { broker: number; writer: number };
      console.log(
        `${mode.name.padEnd(46)}${figures.broker.toFixed(1).padStart(16)}${figures.writer.toFixed(1).padStart(18)}`,
      );
    }
  } finally {
    await harness?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
