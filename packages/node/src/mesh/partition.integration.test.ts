/**
 * A peer partitioned away under a continuous sender, on real brokers with a
 * real link shovel: node A's shovel reaches node B's broker only through a
 * network namespace (NetnsPartition), which the test partitions in the
 * kernel while both brokers, both routers and the test's own connections
 * keep running.
 *
 * - (c) first, while the queues are empty: messages whose TTL runs out in
 *   the link come back to their sender as MESSAGE_EXPIRED reports.
 * - (a) + (b) in one 60 s outage at a steady rate: the outbound queue
 *   buffers up to its bound, then the origin pushes back (the router's
 *   forward is nacked, it pauses, the ingress fills and the client's own
 *   publishes are nacked); after heal the shovel resumes and every message
 *   the client got a confirm for reaches the recipient exactly once
 *   (counted by message id).
 *
 * Lines starting with "# mesh-partition" are the measured numbers
 * (docs/decisions/0026-partitions-and-mesh-bench.md).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NetnsPartition, netnsUnavailable, type NetnsEndpoint } from '@dmr/broker-harness';
import { outboundQueueName } from '@dmr/contract';
import { waitFor } from '@dmr/core/testing';
import type { ChannelModel } from 'amqplib';
import { linkShovelName } from '../reconciler/links.js';
import { MeshFixture } from '../testing/mesh-fixture.js';
import { parseReport, type NodeFixture, type TestClient } from '../testing/node-fixture.js';

const A = 'node-a';
const B = 'node-b';
const OUTAGE_MS = 60_000;
const RATE = 50;
// Small enough that a 60 s outage at RATE overruns the outbound queue and then the ingress behind it.
const QUEUE_BOUND = 500;
const EXPIRING = 5;
const EXPIRATION_MS = 2000;

const unavailable = netnsUnavailable();
if (unavailable) process.stdout.write(`# mesh-partition skipped: ${unavailable}\n`);

function fact(line: string): void {
  process.stdout.write(`# mesh-partition ${line}\n`);
}

/**
 * Sends node `from`'s link to `to` through `endpoint`: the shovel the
 * reconciler declared, with only the host and port of its destination URI
 * replaced (same name, certificate, trust bundle, SNI, reconnect delay and
 * heartbeat), as if CentOps had named the namespace's address as `to`'s
 * AMQPS endpoint. Nothing reconciles again during the test, so it stays.
 */
async function routeLinkThrough(from: NodeFixture, to: NodeFixture, endpoint: NetnsEndpoint): Promise<string> {
  const name = linkShovelName(to.nodeId);
  const definition = await from.management.getShovel(from.vhost, name);
  const uri = definition?.['dest-uri'];
  if (typeof uri !== 'string') throw new Error(`${from.nodeId} has no shovel ${name} to reroute`);
  const rerouted = uri.replace(/^amqps:\/\/[^/]+\//, `amqps://${endpoint.host}:${endpoint.port}/`);
  assert.notEqual(rerouted, uri, `the destination of ${name} is amqps://host:port/…`);
  // The stored definition as it is, one key changed: declareShovel takes a spec built from parts instead.
  await from.management.request(
    'PUT',
    `/parameters/shovel/${encodeURIComponent(from.vhost)}/${encodeURIComponent(name)}`,
    { component: 'shovel', vhost: from.vhost, name, value: { ...definition, 'dest-uri': rerouted } },
  );
  await waitFor(
    `${name} running through the namespace`,
    async () => {
      const status = await from.management.shovelStatus(from.vhost, name);
      return status?.state === 'running' && endpoint.stats.accepted > 0;
    },
    { timeoutMs: 60_000, intervalMs: 50 },
  );
  return name;
}

describe('a peer partitioned away under a continuous sender', { skip: unavailable, timeout: 400_000 }, () => {
  let mesh: MeshFixture;
  let partition: NetnsPartition;
  let nodeA: NodeFixture;
  let nodeB: NodeFixture;
  let ria: TestClient;
  let shovel: string;
  let recipient: ChannelModel;
  /** Copies of each message id the recipient's application got. */
  const delivered = new Map<string, number>();
  /** Reports ria got, by the id of the message they are about. */
  const reports = new Map<string, { status: string; reason: string | undefined }>();
  let collecting = true;
  let collector: Promise<void> | undefined;

  before(async () => {
    mesh = await MeshFixture.start({
      label: 'partition',
      nodes: [A, B],
      links: [[A, B]],
      clients: [
        { id: 'ria-bot', organisation: 'ria', roles: ['bot'], homeNode: A },
        { id: 'rik-bot', organisation: 'rik', roles: ['bot'], homeNode: B },
      ],
      limits: { queueMaxLength: QUEUE_BOUND },
    });
    nodeA = mesh.node(A);
    nodeB = mesh.node(B);
    partition = await NetnsPartition.start({ onProgress: (line) => process.stdout.write(`# ${line}\n`) });
    const endpoint = await partition.expose(nodeB.harness.node(0).amqpsPort);
    shovel = await routeLinkThrough(nodeA, nodeB, endpoint);

    // rik-bot's application: counts every copy of every message id it gets.
    recipient = await nodeB.connectAs('rik-bot');
    const channel = await recipient.createChannel();
    await channel.prefetch(500);
    await channel.consume('dmr.client.rik-bot', (message) => {
      if (message === null) return;
      const id = String(message.properties.messageId);
      delivered.set(id, (delivered.get(id) ?? 0) + 1);
      channel.ack(message);
    });
    ria = await nodeA.client('ria-bot');
    collector = (async () => {
      while (collecting) {
        const message = await ria.next(500).catch(() => undefined);
        if (message === undefined || message.properties.type !== 'dmr.DeliveryReport') continue;
        const report = parseReport(message);
        if (report.messageId !== null) reports.set(report.messageId, { status: report.status, reason: report.reason });
      }
    })();
  });

  after(async () => {
    collecting = false;
    await collector;
    await recipient?.close().catch(() => undefined);
    try {
      await mesh?.stop();
    } finally {
      await partition?.stop();
    }
  });

  /** What bounds the outbound queue, as the broker has it: the queue's x-max-length and the shovel's prefetch. */
  async function outboundBound(): Promise<{ maxLength: number; prefetch: number }> {
    const queue = await nodeA.management.request(
      'GET',
      `/queues/${encodeURIComponent(nodeA.vhost)}/${encodeURIComponent(outboundQueueName(B))}`,
    );
    const args = (queue as { arguments?: Record<string, unknown> } | undefined)?.arguments ?? {};
    const definition = await nodeA.management.getShovel(nodeA.vhost, shovel);
    const maxLength = Number(args['x-max-length']);
    const prefetch = Number(definition?.['src-prefetch-count'] ?? 1000);
    assert.ok(Number.isInteger(maxLength), `dmr.outbound.${B} is bounded by length (${JSON.stringify(args)})`);
    return { maxLength, prefetch };
  }

  async function shovelState(): Promise<string> {
    return (await nodeA.management.shovelStatus(nodeA.vhost, shovel))?.state ?? 'absent';
  }

  it('(c) a peer gone past the messages’ TTL: each message comes back as a MESSAGE_EXPIRED report', async () => {
    await partition.partition('drop');
    const ids: string[] = [];
    try {
      for (let i = 0; i < EXPIRING; i++) {
        const id = randomUUID();
        await ria.send({ to: 'rik-bot', messageId: id, expiration: String(EXPIRATION_MS) });
        ids.push(id);
      }
      const sentAt = Date.now();
      await waitFor(
        () => `MESSAGE_EXPIRED reports for ${ids.filter((id) => !reports.has(id)).length} of ${ids.length} messages`,
        () => ids.every((id) => reports.has(id)),
        { timeoutMs: 60_000, intervalMs: 50 },
      );
      fact(
        `ttl expiration_ms=${EXPIRATION_MS} messages=${EXPIRING} all_reported_after_ms=${Date.now() - sentAt} ` +
          `reasons=${[...new Set(ids.map((id) => reports.get(id)?.reason))].join(',')}`,
      );
      for (const id of ids) assert.equal(reports.get(id)?.reason, 'MESSAGE_EXPIRED', `report for ${id}`);
    } finally {
      await partition.heal();
    }
    await waitFor('the link running again', async () => (await shovelState()) === 'running', {
      timeoutMs: 60_000,
      intervalMs: 100,
    });
    for (const id of ids) assert.equal(delivered.get(id), undefined, 'an expired message is never delivered');
  });

  it('(a, b) 60 s unreachable at a steady rate: the link buffers to its bound, then the origin pushes back; after heal every confirmed message arrives exactly once', async () => {
    const confirmed: string[] = [];
    const nacked: string[] = [];
    const pending: Array<Promise<void>> = [];
    let sent = 0;
    let sending = true;
    let firstNackAt: number | undefined;
    let peakOutbound = 0;
    const started = Date.now();
    const sender = (async () => {
      while (sending) {
        const due = Math.floor(((Date.now() - started) * RATE) / 1000);
        for (; sent < due; sent++) {
          const id = randomUUID();
          pending.push(
            ria.send({ to: 'rik-bot', messageId: id }).then(
              () => void confirmed.push(id),
              () => {
                firstNackAt ??= Date.now();
                nacked.push(id);
              },
            ),
          );
        }
        // Pacing the sender, not waiting for an outcome.
        await sleep(10);
      }
    })();

    const at = { cut: 0, healed: 0, runningAgainMs: 0 };
    const bound = await outboundBound();
    try {
      await waitFor('messages flowing across the link first', () => delivered.size >= 50, {
        timeoutMs: 30_000,
      });
      await partition.partition('drop');
      at.cut = Date.now();
      // The outage itself has a fixed length: what is measured is what happens during and after it.
      while (Date.now() - at.cut < OUTAGE_MS) {
        peakOutbound = Math.max(peakOutbound, await nodeA.depth(outboundQueueName(B)).catch(() => 0));
        await sleep(1000);
      }
      await partition.heal();
      at.healed = Date.now();
      await waitFor('the link running again after heal', async () => (await shovelState()) === 'running', {
        timeoutMs: 60_000,
        intervalMs: 50,
      });
      at.runningAgainMs = Date.now() - at.healed;
    } finally {
      sending = false;
      await sender;
      await Promise.all(pending);
    }

    await waitFor(
      () =>
        `${confirmed.filter((id) => !delivered.has(id)).length} of ${confirmed.length} confirmed messages delivered`,
      () => confirmed.every((id) => delivered.has(id)),
      { timeoutMs: 120_000, intervalMs: 100 },
    );
    const recoveredMs = Date.now() - at.healed;
    const lost = confirmed.filter((id) => !delivered.has(id)).length;
    const duplicates = confirmed.reduce((sum, id) => sum + (delivered.get(id) ?? 1) - 1, 0);
    const refused = confirmed.filter((id) => reports.get(id)?.status === 'rejected');
    fact(
      `outage_ms=${at.healed - at.cut} rate=${RATE}/s x_max_length=${bound.maxLength} shovel_prefetch=${bound.prefetch} sent=${sent} confirmed=${confirmed.length} ` +
        `nacked=${nacked.length} first_nack_after_partition_ms=${firstNackAt === undefined ? 'none' : firstNackAt - at.cut} ` +
        `peak_outbound_depth=${peakOutbound}`,
    );
    fact(
      `recovery shovel_running_after_heal_ms=${at.runningAgainMs} all_confirmed_delivered_after_heal_ms=${recoveredMs} ` +
        `lost=${lost} duplicates=${duplicates} refused_with_report=${refused.length}`,
    );
    assert.equal(lost, 0, 'every confirmed message reached the recipient');
    assert.equal(duplicates, 0, 'and exactly once');
    assert.ok(nacked.length > 0, 'past the bound the sender’s publishes were nacked (pushback)');
    // x-max-length counts the ready messages; the shovel holds up to its prefetch more, unacknowledged, in the dead path.
    assert.ok(
      peakOutbound <= bound.maxLength + 1 + bound.prefetch,
      `the outbound queue stayed within its bound (peak ${peakOutbound}, x-max-length ${bound.maxLength} + prefetch ${bound.prefetch})`,
    );
    assert.deepEqual(refused, [], 'pushback is a nack to the sender, not a refusal');
  });
});
