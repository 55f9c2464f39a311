/**
 * Rows c and d: the DMR path on the same broker as rows a/b.
 *   client bench-sender → dmr.ingress → router process (validation, policy,
 *   logging, metrics, audit) → dmr.delivery → dmr.client.bench-receiver → client
 * The broker layout comes from the product's reconciler (desiredLayout of a
 * NodeConfig), the clients log in with their own certificates, and the router
 * is the product's Router in a child process. Row c decides with the real
 * default policy pack (a signed bundle, in-process Wasm); row d with
 * BenchOnlyAllowAllDecider (router-main.ts). c and d share the layout, the
 * clients and one router process; a command switches its decider between
 * points.
 */
import { createHash, randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spiffeId } from '@dmr/core';
import { resolveLimits } from '@dmr/centops';
import {
  CONTRACT_VERSION,
  INGRESS_EXCHANGE,
  RECIPIENT_HEADER,
  VERSION_HEADER,
  clientQueueName,
  type NodeConfig,
} from '@dmr/contract';
import { desiredLayout, reconcile } from '@dmr/node';
import type { IssuedCertificate } from '@dmr/pki';
import { BundleSigner, buildBundle, policySignerSpiffeId } from '@dmr/policy';
import type { ChannelModel } from 'amqplib';
import { startChild, type ChildHandle } from './child.js';
import {
  PREFETCH,
  type BenchContext,
  type RouterChildConfig,
  type RouterCommand,
  type RowDriver,
  type RowSetup,
} from './context.js';
import type { RowId } from './options.js';
import { Probe, type ProbeTarget } from './probe.js';

export const BENCH_NODE = 'bench-node';
export const SENDER = 'bench-sender';
export const RECIPIENT = 'bench-receiver';
/** Organisations of the default pack's data.json with a grant from the first to the second (route "GRANT"). */
const SENDER_ORG = 'ria';
const RECIPIENT_ORG = 'rik';

export function certificateRef(issued: IssuedCertificate): NodeConfig['directory'][number]['certificates'][number] {
  return {
    fingerprint: issued.fingerprintSha256,
    serial: issued.serial,
    notBefore: issued.notBefore.toISOString(),
    notAfter: issued.notAfter.toISOString(),
  };
}

/** The node's configuration as CentOps would send it: two local clients, one policy bundle, default limits. */
export function benchConfig(
  port: number,
  trustDomain: string,
  certificates: { sender: IssuedCertificate; recipient: IssuedCertificate },
  policy: { revision: string; archive: Buffer },
): NodeConfig {
  const client = (id: string, organisation: string) => ({
    id,
    organisation,
    roles: ['chatbot'],
    labels: {},
    status: 'active' as const,
  });
  const entry = (id: string, organisation: string, issued: IssuedCertificate) => ({
    id,
    homeNode: BENCH_NODE,
    organisation,
    roles: ['chatbot'],
    status: 'active' as const,
    certificates: [certificateRef(issued)],
  });
  return {
    apiVersion: 'dmr.ee/v1',
    kind: 'NodeConfig',
    trustDomain,
    node: {
      id: BENCH_NODE,
      amqpsEndpoint: `amqps://localhost:${port}`,
      managementEndpoint: 'http://127.0.0.1/unused-by-the-bench',
    },
    revision: 1,
    issuedAt: new Date().toISOString(),
    clients: [client(RECIPIENT, RECIPIENT_ORG), client(SENDER, SENDER_ORG)],
    directory: [
      entry(RECIPIENT, RECIPIENT_ORG, certificates.recipient),
      entry(SENDER, SENDER_ORG, certificates.sender),
    ],
    links: [],
    routes: [],
    denylist: [],
    policy: {
      revision: policy.revision,
      digest: `sha256:${createHash('sha256').update(policy.archive).digest('hex')}`,
      bundle: '/v1/policy/bundle',
    },
    // One client sends everything here: the per-sender rate and replay share would measure the refusal
    // path instead of the routing path, so they are lifted to the router's whole window.
    limits: resolveLimits({ senderRatePerSecond: 1_000_000, senderBurst: 1_000_000, maxIdsPerSender: 1_000_000 }),
  };
}

/** The default policy pack shipped in packages/policy/rego. */
function defaultPackDir(): string {
  return join(dirname(fileURLToPath(import.meta.resolve('@dmr/policy'))), '..', 'rego');
}

/** The default policy pack, built and signed as CentOps would (`opa build`), for the rows' routers. */
export async function signedDefaultBundle(ca: BenchContext['ca']): Promise<{ revision: string; archive: Buffer }> {
  const signerCertificate = await ca.issueWithKey({ kind: 'centops', id: 'policy-signer' });
  const signer = new BundleSigner({
    certificateChainPem: signerCertificate.chainPem,
    privateKeyPem: signerCertificate.privateKeyPem,
  });
  return buildBundle({ dir: defaultPackDir(), revision: '1', signer });
}

export async function setupDmrRows(context: BenchContext, rows: readonly RowId[]): Promise<RowSetup> {
  const wanted = rows.filter((row): row is 'c' | 'd' => row === 'c' || row === 'd');
  if (wanted.length === 0) return { ok: true, drivers: [], close: async () => undefined };
  const { harness, ca, log } = context;
  const port = harness.node().amqpsPort;

  log('rows c/d: building and signing the default policy bundle (opa build)');
  const bundle = await signedDefaultBundle(ca);

  const [sender, recipient, node] = await Promise.all([
    ca.issueWithKey({ kind: 'client', id: SENDER }),
    ca.issueWithKey({ kind: 'client', id: RECIPIENT }),
    ca.issueWithKey({ kind: 'node', id: BENCH_NODE }),
  ]);
  const config = benchConfig(
    port,
    ca.trustDomain,
    { sender, recipient },
    { revision: bundle.revision, archive: bundle.archive },
  );
  // What the broker logged the sender in as, and so the only user_id it accepts from it.
  const senderUserId = spiffeId(ca.trustDomain, 'client', SENDER);
  const layout = desiredLayout(config);
  const applied = await reconcile(harness.management(), layout);
  if (applied.conflicts.length > 0) {
    throw new Error(`reconcile left conflicts: ${applied.conflicts.map((c) => `${c.name}: ${c.reason}`).join('; ')}`);
  }
  log(`rows c/d: layout of vhost ${layout.vhost} applied (${applied.changes.length} changes)`);

  const connections: ChannelModel[] = [];
  let router: ChildHandle | undefined;
  let active: 'c' | 'd' | undefined;
  const close = async (): Promise<void> => {
    if (router !== undefined) {
      const stopped = await router.stop();
      log(`rows c/d: router process ${router.pid} stopped ${JSON.stringify(stopped ?? {})}`);
    }
    for (const connection of connections) await connection.close().catch(() => undefined);
  };
  const routerConfig: RouterChildConfig = {
    port,
    caPem: harness.trustBundlePem,
    certificatePem: node.chainPem,
    privateKeyPem: node.privateKeyPem,
    vhost: layout.vhost,
    nodeConfig: config,
    bundle: {
      archiveBase64: bundle.archive.toString('base64'),
      trustBundlePem: ca.rootCertificatePem,
      expectedSigner: policySignerSpiffeId(ca.trustDomain),
    },
    logFile: join(context.dir, 'router.log'),
    prefetch: context.options.routerPrefetch,
    audit: !context.options.noAudit,
    replayDir: context.options.noReplayJournal ? undefined : join(context.dir, 'replay', 'shard-0'),
  };
  try {
    const sending = await harness.connect({
      certificatePem: sender.chainPem,
      privateKeyPem: sender.privateKeyPem,
      vhost: layout.vhost,
    });
    connections.push(sending);
    const receiving = await harness.connect({
      certificatePem: recipient.chainPem,
      privateKeyPem: recipient.privateKeyPem,
      vhost: layout.vhost,
    });
    connections.push(receiving);
    // One probe for both rows: same clients, same queues; only the router behind them differs.
    const probe = new Probe({
      publisher: await sending.createConfirmChannel(),
      consumer: await receiving.createChannel(),
      queue: clientQueueName(RECIPIENT),
      target: clientPublishTarget(senderUserId, RECIPIENT),
      body: context.body,
      prefetch: PREFETCH,
    });
    await probe.start();
    const handle = await startChild(new URL('./router-main.js', import.meta.url), 'router', routerConfig);
    router = handle;
    log(`rows c/d: router process ${handle.pid} running ${JSON.stringify(handle.info)}`);
    const activate = (row: 'c' | 'd') => async (): Promise<void> => {
      if (active === row) return;
      const command: RouterCommand = { policy: row === 'c' ? 'bundle' : 'bench-only-allow-all' };
      const counters = await handle.command(command);
      const previous = active === undefined ? 'start-up' : `row ${active}`;
      active = row;
      log(
        `row ${row}: router switched to ${command.policy}; router since the last switch (${previous}): ` +
          JSON.stringify(counters),
      );
    };
    const drivers: RowDriver[] = wanted.map((row) => ({
      row,
      probe,
      activate: activate(row),
      workerPid: () => handle.pid,
    }));
    return { ok: true, drivers, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** What a DMR client publishes in the bench: a fresh message id per message, to `recipient` through the ingress. */
export function clientPublishTarget(senderUserId: string, recipient: string): ProbeTarget {
  return {
    exchange: INGRESS_EXCHANGE,
    routingKey: '',
    properties: () => ({
      messageId: randomUUID(),
      userId: senderUserId,
      type: 'ChatMessage',
      timestamp: Math.floor(Date.now() / 1000),
      headers: { [RECIPIENT_HEADER]: recipient, [VERSION_HEADER]: CONTRACT_VERSION },
    }),
  };
}
