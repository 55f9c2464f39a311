/**
 * Row s: the raw link between two brokers, the baseline of the mesh rows
 * (e, f). Nothing of DMR but the link itself, built as DMR builds it:
 *   publisher → bench.s.out (quorum) on broker A
 *     → dynamic shovel (linkShovelSpec: on-confirm, AMQPS + EXTERNAL with a
 *       node certificate, prefetch 1000) → exchange bench.s.ingress on broker B
 *     → bench.s.in (quorum) → consumer
 * Brokers A and B are the first two of the mesh rows (options.ts brokerPlan).
 * TLS on every connection; the shovel runs inside A's broker, so there is no
 * worker process: the CPU column's "broker" is both brokers together.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { linkShovelSpec } from '@dmr/broker';
import { spiffeId } from '@dmr/core';
import { waitFor } from '@dmr/core/testing';
import type { ChannelModel } from 'amqplib';
import { PREFETCH, type BenchContext, type RowDriver, type RowSetup } from './context.js';
import type { RowId } from './options.js';
import { Probe } from './probe.js';

const VHOST_A = 'bench-shovel-a';
const VHOST_B = 'bench-shovel-b';
const OUT_QUEUE = 'bench.s.out';
const INGRESS = 'bench.s.ingress';
const IN_QUEUE = 'bench.s.in';
const SHOVEL = 'bench.s.link';
const LOAD_USER = 'bench-shovel-load';
const LINK_NODE = 'bench-shovel-node';
const QUORUM = { 'x-queue-type': 'quorum' };

export async function setupShovelRow(context: BenchContext, rows: readonly RowId[]): Promise<RowSetup> {
  if (!rows.includes('s')) return { ok: true, drivers: [], close: async () => undefined };
  const { harness, ca } = context;
  const [a, b] = [context.meshBroker, context.meshBroker + 1];
  if (harness.nodes.length <= b) return { ok: false, unavailable: 'row s needs two brokers' };
  const A = harness.management(a);
  const B = harness.management(b);
  const all = { configure: '.*', write: '.*', read: '.*' };
  const loadUser = spiffeId(ca.trustDomain, 'client', LOAD_USER);
  const linkUser = spiffeId(ca.trustDomain, 'node', LINK_NODE);

  await A.declareVhost(VHOST_A);
  // A direct src-uri is checked against the user who declares the shovel.
  await A.setPermissions(VHOST_A, harness.adminUsername, all);
  await A.createCertificateUser(loadUser);
  await A.setPermissions(VHOST_A, loadUser, all);
  await A.declareQueue(VHOST_A, OUT_QUEUE, { arguments: QUORUM });

  await B.declareVhost(VHOST_B);
  await B.setPermissions(VHOST_B, harness.adminUsername, all);
  await B.declareExchange(VHOST_B, INGRESS, 'fanout');
  await B.declareQueue(VHOST_B, IN_QUEUE, { arguments: QUORUM });
  await B.bindQueue(VHOST_B, INGRESS, IN_QUEUE, '');
  await B.createCertificateUser(loadUser);
  await B.setPermissions(VHOST_B, loadUser, all);
  // What a peer may do on a DMR node: write its mesh ingress, nothing else. No `dmr-peer` tag: that marks the
  // users a node's reconciler owns, and the reconciler of rows e/f on the same broker would delete this one.
  await B.createCertificateUser(linkUser);
  await B.setPermissions(VHOST_B, linkUser, { configure: '', write: `^${INGRESS.replace(/\./g, '\\.')}$`, read: '' });

  // The files the shovel presents, read by A's broker process.
  const node = await ca.issueWithKey({ kind: 'node', id: LINK_NODE });
  const tls = {
    certFile: join(context.dir, 'shovel-node.crt'),
    keyFile: join(context.dir, 'shovel-node.key'),
    caFile: join(context.dir, 'shovel-trust.pem'),
  };
  await writeFile(tls.certFile, node.chainPem);
  await writeFile(tls.keyFile, node.privateKeyPem, { mode: 0o600 });
  await writeFile(tls.caFile, harness.trustBundlePem);
  const spec = linkShovelSpec({
    sourceVhost: VHOST_A,
    outboundQueue: OUT_QUEUE,
    peer: {
      host: '127.0.0.1',
      port: harness.node(b).amqpsPort,
      vhost: VHOST_B,
      serverName: harness.node(b).servername,
    },
    destinationExchange: INGRESS,
    tls,
  });
  await A.declareShovel(VHOST_A, SHOVEL, spec);

  const connections: ChannelModel[] = [];
  const close = async (): Promise<void> => {
    await A.deleteShovel(VHOST_A, SHOVEL).catch(() => undefined);
    for (const connection of connections) await connection.close().catch(() => undefined);
  };
  try {
    await waitFor(
      `shovel ${SHOVEL} running`,
      async () => (await A.shovelStatus(VHOST_A, SHOVEL))?.state === 'running',
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    const load = await ca.issueWithKey({ kind: 'client', id: LOAD_USER });
    const material = { certificatePem: load.chainPem, privateKeyPem: load.privateKeyPem };
    const publishing = await harness.connect({ ...material, vhost: VHOST_A, node: a });
    const consuming = await harness.connect({ ...material, vhost: VHOST_B, node: b });
    connections.push(publishing, consuming);
    const probe = new Probe({
      publisher: await publishing.createConfirmChannel(),
      consumer: await consuming.createChannel(),
      queue: IN_QUEUE,
      target: {
        exchange: '',
        routingKey: OUT_QUEUE,
        properties: () => ({ messageId: randomUUID(), type: 'ChatMessage', timestamp: Math.floor(Date.now() / 1000) }),
      },
      body: context.body,
      prefetch: PREFETCH,
    });
    await probe.start();
    context.log(`row s: shovel ${SHOVEL} ${harness.node(a).name} → ${harness.node(b).name} running`);
    const driver: RowDriver = { row: 's', probe, brokerPids: () => [harness.node(a).pid, harness.node(b).pid] };
    return { ok: true, drivers: [driver], close };
  } catch (error) {
    await close();
    throw error;
  }
}
