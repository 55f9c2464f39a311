/**
 * Rows a and b: raw amqplib on the same broker with the same settings as the
 * DMR path (TLS, EXTERNAL, quorum queues, persistent messages, confirms,
 * manual acks), in a vhost of their own.
 *   a: publisher → bench.a → consumer
 *   b: publisher → bench.b1 → relay process (republish + confirm, then ack) → bench.b2 → consumer
 */
import { randomUUID } from 'node:crypto';
import { spiffeId } from '@dmr/core';
import type { ChannelModel } from 'amqplib';
import { startChild, type ChildHandle } from './child.js';
import { PREFETCH, type BenchContext, type RowDriver, type RowSetup } from './context.js';
import type { RowId } from './options.js';
import { Probe } from './probe.js';
import type { RelayConfig } from './relay-main.js';

const VHOST = 'bench-raw';
const LOAD_USER = 'bench-load';
const RELAY_USER = 'bench-relay';
const QUORUM = { 'x-queue-type': 'quorum' };

export async function setupRawRows(context: BenchContext, rows: readonly RowId[]): Promise<RowSetup> {
  const wanted = rows.filter((row) => row === 'a' || row === 'b');
  if (wanted.length === 0) return { ok: true, drivers: [], close: async () => undefined };
  const { harness, ca } = context;
  const management = harness.management();
  await management.declareVhost(VHOST);
  const all = { configure: '.*', write: '.*', read: '.*' };
  for (const user of [LOAD_USER, RELAY_USER]) {
    // The broker logs a certificate in as its SPIFFE id.
    const name = spiffeId(ca.trustDomain, 'client', user);
    await management.createCertificateUser(name);
    await management.setPermissions(VHOST, name, all);
  }
  // The first queue of each row is what an ingress shard is; --raw-first-queue classic weighs a classic one there.
  const first = context.options.rawFirstQueue === 'classic' ? { 'x-queue-type': 'classic' } : QUORUM;
  for (const [queue, queueArguments] of [
    ['bench.a', first],
    ['bench.b1', first],
    ['bench.b2', QUORUM],
  ] as const) {
    await management.declareQueue(VHOST, queue, { arguments: queueArguments });
  }
  const load = await ca.issueWithKey({ kind: 'client', id: LOAD_USER });
  const material = { certificatePem: load.chainPem, privateKeyPem: load.privateKeyPem, vhost: VHOST };
  const connections: ChannelModel[] = [];
  const children: ChildHandle[] = [];
  const close = async (): Promise<void> => {
    for (const child of children) await child.stop();
    for (const connection of connections) await connection.close().catch(() => undefined);
  };
  try {
    const drivers: RowDriver[] = [];
    for (const row of wanted) {
      // Publisher and consumer on separate connections, as two parties would be.
      const publishing = await harness.connect(material);
      const consuming = await harness.connect(material);
      connections.push(publishing, consuming);
      if (row === 'b') {
        const relayUser = await ca.issueWithKey({ kind: 'client', id: RELAY_USER });
        const config: RelayConfig = {
          port: harness.node().amqpsPort,
          vhost: VHOST,
          caPem: harness.trustBundlePem,
          certificatePem: relayUser.chainPem,
          privateKeyPem: relayUser.privateKeyPem,
          from: 'bench.b1',
          to: 'bench.b2',
          prefetch: PREFETCH,
        };
        const relay = await startChild(new URL('./relay-main.js', import.meta.url), 'relay', config);
        children.push(relay);
        context.log(`row b: relay process ${relay.pid} consuming bench.b1`);
      }
      const probe = new Probe({
        publisher: await publishing.createConfirmChannel(),
        consumer: await consuming.createChannel(),
        queue: row === 'a' ? 'bench.a' : 'bench.b2',
        target: {
          exchange: '',
          routingKey: row === 'a' ? 'bench.a' : 'bench.b1',
          // The properties a DMR client must set, so every row carries the same bytes on the wire.
          properties: () => ({
            messageId: randomUUID(),
            type: 'ChatMessage',
            timestamp: Math.floor(Date.now() / 1000),
          }),
        },
        body: context.body,
        prefetch: PREFETCH,
      });
      await probe.start();
      const relayPid = children[0]?.pid;
      drivers.push({ row, probe, workerPid: () => (row === 'b' ? relayPid : undefined) });
    }
    return { ok: true, drivers, close };
  } catch (error) {
    await close();
    throw error;
  }
}
