/**
 * Rows e and f: the DMR path across the mesh, measured against the bare
 * link of row s. Every piece is the product's: each node's broker layout
 * and its link shovels come from the reconciler (`reconcile(desiredLayout(
 * config, { links }))`), each node runs the product's Router in a process of
 * its own (router-main.ts) with its node identity, so it signs what it
 * forwards and verifies what it relays.
 *   e: client mesh-sender on mesh-a → router A (checks, policy, signs) →
 *      dmr.outbound.mesh-b → shovel → mesh-b's mesh ingress → router B
 *      (hop chain, replay, policy) → dmr.client.mesh-recipient-b → client
 *   f: the same to mesh-recipient-c on mesh-c, relayed by router B over the
 *      second link (a line mesh-a — mesh-b — mesh-c, CentOps' shortest routes).
 * Node i of the mesh lives on broker meshBroker + i (options.ts brokerPlan);
 * row s's brokers A and B are the first two of them, in other vhosts.
 */
import { join } from 'node:path';
import { resolveLimits } from '@dmr/centops';
import { clientQueueName, vhostName, type NodeConfig } from '@dmr/contract';
import { spiffeId } from '@dmr/core';
import { waitFor } from '@dmr/core/testing';
import { desiredLayout, installLinkTlsFiles, linkShovelName, reconcile } from '@dmr/node';
import type { IssuedCertificate } from '@dmr/pki';
import { policySignerSpiffeId } from '@dmr/policy';
import type { ChannelModel } from 'amqplib';
import { createHash } from 'node:crypto';
import { startChild, type ChildHandle } from './child.js';
import { PREFETCH, type BenchContext, type RouterChildConfig, type RowDriver, type RowSetup } from './context.js';
import { certificateRef, clientPublishTarget, signedDefaultBundle } from './dmr.js';
import type { RowId } from './options.js';
import { Probe } from './probe.js';

export const MESH_NODES = ['mesh-a', 'mesh-b', 'mesh-c'] as const;
const SENDER = 'mesh-sender';
/** Organisations of the default pack's data.json with a grant from the first to the second. */
const SENDER_ORG = 'ria';
const RECIPIENT_ORG = 'rik';
const RECIPIENTS = { e: 'mesh-recipient-b', f: 'mesh-recipient-c' } as const;

type Issued = IssuedCertificate & { privateKeyPem: string };

interface MeshClient {
  id: string;
  organisation: string;
  homeNode: string;
}

/** Shortest paths over a line of nodes: the next hop towards each other node and the hop count. */
export function lineRoutes(nodes: readonly string[], from: string): NodeConfig['routes'] {
  const at = nodes.indexOf(from);
  return nodes
    .filter((node) => node !== from)
    .sort()
    .map((destination) => {
      const to = nodes.indexOf(destination);
      const nextHop = nodes[to > at ? at + 1 : at - 1] as string;
      return { destination, reachable: true as const, nextHop, cost: Math.abs(to - at) };
    });
}

/** The neighbours of `node` on the line. */
function lineLinks(nodes: readonly string[], node: string): string[] {
  const at = nodes.indexOf(node);
  return [nodes[at - 1], nodes[at + 1]].filter((peer): peer is string => peer !== undefined);
}

export function meshConfig(input: {
  nodeId: string;
  nodes: readonly string[];
  ports: ReadonlyMap<string, number>;
  trustDomain: string;
  clients: readonly MeshClient[];
  certificates: ReadonlyMap<string, IssuedCertificate>;
  policy: { revision: string; archive: Buffer };
}): NodeConfig {
  const { nodeId, nodes, ports } = input;
  const endpoint = (node: string): string => `amqps://127.0.0.1:${ports.get(node) ?? 0}`;
  const certificate = (id: string): IssuedCertificate => {
    const issued = input.certificates.get(id);
    if (issued === undefined) throw new Error(`no certificate for ${id}`);
    return issued;
  };
  return {
    apiVersion: 'dmr.ee/v1',
    kind: 'NodeConfig',
    trustDomain: input.trustDomain,
    node: { id: nodeId, amqpsEndpoint: endpoint(nodeId), managementEndpoint: 'http://127.0.0.1/unused-by-the-bench' },
    revision: 1,
    issuedAt: new Date().toISOString(),
    clients: input.clients
      .filter((client) => client.homeNode === nodeId)
      .map((client) => ({
        id: client.id,
        organisation: client.organisation,
        roles: ['chatbot'],
        labels: {},
        status: 'active' as const,
      })),
    directory: input.clients.map((client) => ({
      id: client.id,
      homeNode: client.homeNode,
      organisation: client.organisation,
      roles: ['chatbot'],
      status: 'active' as const,
      certificates: [certificateRef(certificate(client.id))],
    })),
    links: lineLinks(nodes, nodeId).map((peer) => ({
      peer,
      amqpsEndpoint: endpoint(peer),
      cost: 1,
      peerCertificates: [certificateRef(certificate(peer))],
    })),
    routes: lineRoutes(nodes, nodeId),
    denylist: [],
    policy: {
      revision: input.policy.revision,
      digest: `sha256:${createHash('sha256').update(input.policy.archive).digest('hex')}`,
      bundle: '/v1/policy/bundle',
    },
    // One client sends everything: per-sender rate and replay share lifted to the routers' whole window, as in c/d.
    limits: resolveLimits({ senderRatePerSecond: 1_000_000, senderBurst: 1_000_000, maxIdsPerSender: 1_000_000 }),
  };
}

export async function setupMeshRows(context: BenchContext, rows: readonly RowId[]): Promise<RowSetup> {
  const wanted = rows.filter((row): row is 'e' | 'f' => row === 'e' || row === 'f');
  if (wanted.length === 0) return { ok: true, drivers: [], close: async () => undefined };
  const { harness, ca, log } = context;
  const nodes = MESH_NODES.slice(0, wanted.includes('f') ? 3 : 2);
  const broker = (i: number): number => context.meshBroker + i;
  if (harness.nodes.length < broker(nodes.length)) {
    return { ok: false, unavailable: `rows ${wanted.join(',')} need ${nodes.length} brokers` };
  }
  const ports = new Map(nodes.map((node, i) => [node, harness.node(broker(i)).amqpsPort]));
  const clients: MeshClient[] = [
    { id: SENDER, organisation: SENDER_ORG, homeNode: 'mesh-a' },
    { id: RECIPIENTS.e, organisation: RECIPIENT_ORG, homeNode: 'mesh-b' },
    ...(nodes.length === 3 ? [{ id: RECIPIENTS.f, organisation: RECIPIENT_ORG, homeNode: 'mesh-c' }] : []),
  ];

  log(`rows ${wanted.join(',')}: ${nodes.join(' — ')}; building and signing the default policy bundle`);
  const bundle = await signedDefaultBundle(ca);
  const certificates = new Map<string, Issued>();
  for (const client of clients) certificates.set(client.id, await ca.issueWithKey({ kind: 'client', id: client.id }));
  for (const node of nodes) {
    certificates.set(node, await ca.issueWithKey({ kind: 'node', id: node, dns: ['localhost'], ips: ['127.0.0.1'] }));
  }
  const certificate = (id: string): Issued => certificates.get(id) as Issued;

  const connections: ChannelModel[] = [];
  const routers: ChildHandle[] = [];
  const close = async (): Promise<void> => {
    for (const router of routers) {
      const stopped = await router.stop();
      log(`mesh router ${router.pid} stopped ${JSON.stringify(stopped ?? {})}`);
    }
    for (const connection of connections) await connection.close().catch(() => undefined);
  };
  try {
    for (const [i, node] of nodes.entries()) {
      const config = meshConfig({
        nodeId: node,
        nodes,
        ports,
        trustDomain: ca.trustDomain,
        clients,
        certificates,
        policy: bundle,
      });
      const management = harness.management(broker(i));
      const vhost = vhostName(node);
      // The shovels' direct src-uri is checked against the user who declares them: the admin needs the vhost first.
      await management.declareVhost(vhost);
      await management.setPermissions(vhost, harness.adminUsername, { configure: '.*', write: '.*', read: '.*' });
      const tls = await installLinkTlsFiles(join(context.dir, 'links', node), {
        chainPem: certificate(node).chainPem,
        privateKeyPem: certificate(node).privateKeyPem,
        trustPem: harness.trustBundlePem,
      });
      const layout = desiredLayout(config, { links: { tls, serverName: () => harness.node(broker(0)).servername } });
      const applied = await reconcile(management, layout);
      if (applied.conflicts.length > 0) {
        throw new Error(
          `${node}: reconcile left conflicts: ${applied.conflicts.map((c) => `${c.name}: ${c.reason}`).join('; ')}`,
        );
      }
      const routerConfig: RouterChildConfig = {
        port: harness.node(broker(i)).amqpsPort,
        caPem: harness.trustBundlePem,
        certificatePem: certificate(node).chainPem,
        privateKeyPem: certificate(node).privateKeyPem,
        vhost,
        nodeConfig: config,
        bundle: {
          archiveBase64: bundle.archive.toString('base64'),
          trustBundlePem: ca.rootCertificatePem,
          expectedSigner: policySignerSpiffeId(ca.trustDomain),
        },
        logFile: join(context.dir, `router-${node}.log`),
        prefetch: context.options.routerPrefetch,
        audit: !context.options.noAudit,
        replayDir: context.options.noReplayJournal ? undefined : join(context.dir, 'replay', node, 'shard-0'),
        identity: {
          certificateChainPem: certificate(node).chainPem,
          privateKeyPem: certificate(node).privateKeyPem,
          trustBundlePem: harness.trustBundlePem,
        },
      };
      const router = await startChild(new URL('./router-main.js', import.meta.url), 'router', routerConfig);
      routers.push(router);
      log(`${node}: layout applied (${applied.changes.length} changes), router process ${router.pid}`);
    }
    for (const [i, node] of nodes.entries()) {
      for (const peer of lineLinks(nodes, node)) {
        const name = linkShovelName(peer);
        await waitFor(
          `${node}'s link ${name} running`,
          async () => (await harness.management(broker(i)).shovelStatus(vhostName(node), name))?.state === 'running',
          { timeoutMs: 60_000, intervalMs: 100 },
        );
      }
    }
    log(`rows ${wanted.join(',')}: every link running`);

    const senderUserId = spiffeId(ca.trustDomain, 'client', SENDER);
    const drivers: RowDriver[] = [];
    for (const row of wanted) {
      const recipient = RECIPIENTS[row];
      const home = row === 'e' ? 1 : 2;
      const sending = await harness.connect({
        certificatePem: certificate(SENDER).chainPem,
        privateKeyPem: certificate(SENDER).privateKeyPem,
        vhost: vhostName('mesh-a'),
        node: broker(0),
      });
      const receiving = await harness.connect({
        certificatePem: certificate(recipient).chainPem,
        privateKeyPem: certificate(recipient).privateKeyPem,
        vhost: vhostName(nodes[home] as string),
        node: broker(home),
      });
      connections.push(sending, receiving);
      const probe = new Probe({
        publisher: await sending.createConfirmChannel(),
        consumer: await receiving.createChannel(),
        queue: clientQueueName(recipient),
        target: clientPublishTarget(senderUserId, recipient),
        body: context.body,
        prefetch: PREFETCH,
      });
      await probe.start();
      const crossed = nodes.slice(0, home + 1).map((_, i) => i);
      drivers.push({
        row,
        probe,
        // Before each point: each router's counters since the previous one (route time, CPU µs per message).
        activate: async () => {
          for (const [i, router] of routers.entries()) {
            const counters = await router.command({ policy: 'bundle' });
            log(`row ${row}: mesh router ${MESH_NODES[i] ?? i} since the previous point: ${JSON.stringify(counters)}`);
          }
        },
        brokerPids: () => crossed.map((i) => harness.node(broker(i)).pid),
        workerPids: () => crossed.map((i) => routers[i]?.pid),
      });
    }
    return { ok: true, drivers, close };
  } catch (error) {
    await close();
    throw error;
  }
}
