/**
 * Test-only entry: one Router in its own process, so a test can SIGKILL it
 * mid-stream (NodeFixture.spawnRouter writes the spec file it reads).
 * Logs pino JSON lines to stdout; "router consuming" means ready.
 */
import { readFileSync } from 'node:fs';
import { connectWithCertificate } from '@dmr/broker';
import type { NodeConfig } from '@dmr/contract';
import { PolicyEngine, type BundleVerification } from '@dmr/policy';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { stopRequested } from '../agent/stop-request.js';
import { vhostName } from '@dmr/contract';
import { StreamAuditSink } from '../router/audit.js';
import { RouterMetrics } from '../router/metrics.js';
import { Router } from '../router/router.js';
import { ReplayJournal } from '../message/replay-journal.js';

interface Spec {
  shard: number;
  port: number;
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  config: NodeConfig;
  bundleFile: string;
  verification: BundleVerification;
  /** The shard's replay memory directory, as router-process.ts keeps it in the state dir. */
  replayDir?: string;
}

const spec = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as Spec;
const logger = pino({ base: undefined });
const policy = await PolicyEngine.load(readFileSync(spec.bundleFile), { verification: spec.verification });
const journal = spec.replayDir === undefined ? undefined : ReplayJournal.open({ dir: spec.replayDir });
if (journal !== undefined) logger.info(journal.load, 'replay memory loaded');
const router = new Router({
  nodeId: spec.config.node.id,
  shard: spec.shard,
  connect: () =>
    connectWithCertificate({
      port: spec.port,
      caPem: spec.caPem,
      certificatePem: spec.certificatePem,
      privateKeyPem: spec.privateKeyPem,
      vhost: vhostName(spec.config.node.id),
    }),
  policy,
  logger,
  metrics: new RouterMetrics(new Registry()),
  audit: new StreamAuditSink(),
  backoff: { initialMs: 100, maxMs: 2_000 },
  ...(journal === undefined ? {} : { replayMemory: journal }),
  identity: { certificateChainPem: spec.certificatePem, privateKeyPem: spec.privateKeyPem, trustBundlePem: spec.caPem },
});
router.applyConfig(spec.config);
await router.start();
// SIGTERM from the fixture, or the fixture's process gone (its IPC channel closed).
void stopRequested().then(() =>
  router.stop().then(() => {
    journal?.close();
    process.exit(0);
  }),
);
