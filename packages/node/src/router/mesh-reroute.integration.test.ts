/**
 * Three nodes in a ring, A – B – C – A, linked by the reconciler's shovels,
 * each node's routers with a tracer of their own; then a line.
 *
 * A link removed live: a client on A sends to a client on C at a steady rate
 * over the direct link A→C. While it runs, the A–C link leaves both nodes'
 * configurations with the routes recomputed (A→C via B), applied as an agent
 * applies a document: reconcile, then the routers. Every message the sender
 * had confirmed reaches the application once, and the removed link's queue
 * drains before its shovel and queue go.
 *
 * Traces across the line that leaves (docs/decisions/0032-traces.md): each
 * node's routers export over OTLP/HTTP (the real exporter, batched) to a
 * receiver in the test. A two-hop message yields ONE trace with a span from
 * every node, each hop the child of the one before; the edge starts the
 * trace when the client sent none; the audit records name it; no span
 * carries the payload; `dmr trace` (audit/trace.ts) reads the same path back
 * from the three nodes' dmr.audit streams. These were a file of their own
 * with a line of three brokers of its own: one mesh less is about 15 s of
 * CPU (docs/decisions/0038-ci-time.md).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { OtlpReceiver, waitFor, type ReceivedSpan } from '@dmr/core/testing';
import { traceIdOf } from '@dmr/core';
import { tracerProvider } from '@dmr/core/tracing-sdk';
import { outboundQueueName, type NodeConfig } from '@dmr/contract';
import type { Tracer } from '@opentelemetry/api';
import { parseHopChain } from '../message/hop-chain.js';
import { DrainTracker, linkShovelName } from '../reconciler/links.js';
import { MeshFixture, shortestRoutes } from '../testing/mesh-fixture.js';
import type { TestClient } from '../testing/node-fixture.js';
import type { AuditRecord } from './audit.js';
import { scanStream, traceMessage, type ScanResult } from '../audit/trace.js';

const A = 'node-a';
const B = 'node-b';
const C = 'node-c';
const NODES = [A, B, C];
const RING = [
  [A, B],
  [B, C],
  [C, A],
] as const;
const WITHOUT_AC = [
  [A, B],
  [B, C],
] as const;
/** The sender's pace: steady, well under what one shovel moves, so the test is about the switch, not load. */
const SEND_INTERVAL_MS = 10;
/**
 * Its pace once traffic is seen via B: still live through the drain and the removal (a grace of 12 s), but a
 * tenth of the messages; at the full pace those ~1,100 messages over three hops were half the file's CPU.
 */
const DRAIN_SEND_INTERVAL_MS = 100;
const BODY = 'the payload must never reach a span';

function withoutLink(node: string, peer: string): (config: NodeConfig) => void {
  return (config) => {
    config.links = config.links.filter((link) => link.peer !== peer);
    config.routes = shortestRoutes(node, NODES, WITHOUT_AC);
  };
}

/** The nodes a delivered message crossed, from its verified hop chain. */
function pathOf(headers: Record<string, unknown> | undefined): string[] {
  const chain = parseHopChain(headers?.['dmr-hops'], 8);
  assert.ok(chain.ok, 'dmr-hops is a hop chain');
  return chain.message.map((entry) => entry.node);
}

describe('a link removed live, then traces across the line that is left', { timeout: 600_000 }, () => {
  let receiver: OtlpReceiver;
  let mesh: MeshFixture;
  let ria: TestClient;
  let rik: TestClient;
  let providers: Array<ReturnType<typeof tracerProvider> & { node: string }> = [];

  before(async () => {
    receiver = await OtlpReceiver.start();
    // One provider per node, as each node's router processes have their own; batched, as in production.
    providers = NODES.map((node) => ({
      node,
      ...tracerProvider({
        serviceName: 'dmr-router',
        attributes: { 'dmr.node': node },
        url: `${receiver.url}/v1/traces`,
      }),
    }));
    const tracers: Record<string, Tracer> = Object.fromEntries(providers.map((p) => [p.node, p.tracer]));
    mesh = await MeshFixture.start({
      label: 'mesh-reroute',
      nodes: NODES,
      links: RING,
      tracers,
      clients: [
        { id: 'ria-bot', organisation: 'ria', roles: ['bot'], homeNode: A },
        { id: 'rik-bot', organisation: 'rik', roles: ['bot'], homeNode: C },
      ],
    });
    ria = await mesh.node(A).client('ria-bot');
    rik = await mesh.node(C).client('rik-bot');
  });

  after(async () => {
    await mesh?.stop();
    for (const provider of providers) await provider.shutdown();
    await receiver?.close();
  });

  it('traffic follows the new routes with nothing lost, and the removed link drains before it goes', async () => {
    const nodeA = mesh.node(A);
    const nodeC = mesh.node(C);
    const delivered = new Map<string, number>();
    const paths = new Map<string, string[]>();
    let receiving = true;
    const consumer = (async () => {
      while (receiving) {
        let message;
        try {
          message = await rik.next(500);
        } catch {
          continue;
        }
        const id = message.properties.messageId as string;
        delivered.set(id, (delivered.get(id) ?? 0) + 1);
        paths.set(id, pathOf(message.properties.headers));
      }
    })();

    const confirmed = new Set<string>();
    const failed: unknown[] = [];
    let sent = 0;
    let sending = true;
    let interval = SEND_INTERVAL_MS;
    const sender = (async () => {
      const pending: Array<Promise<void>> = [];
      while (sending) {
        sent += 1;
        pending.push(
          ria.send({ to: 'rik-bot' }).then(
            (id) => void confirmed.add(id as string),
            (error: unknown) => void failed.push(error),
          ),
        );
        await new Promise((resolve) => setTimeout(resolve, interval));
      }
      await Promise.all(pending);
    })();

    try {
      const direct = (): number => [...paths.values()].filter((path) => path.join('>') === `${A}>${C}`).length;
      const viaB = (): number => [...paths.values()].filter((path) => path.join('>') === `${A}>${B}>${C}`).length;
      await waitFor('messages over the direct link A→C', () => direct() >= 100, { timeoutMs: 60_000 });

      // Both ends of the link leave it, each reconciling before its routers switch (what an agent does).
      const drainsA = new DrainTracker();
      const drainsC = new DrainTracker();
      const removedAt = performance.now();
      const [first] = await Promise.all([
        nodeA.applyMeshConfig(withoutLink(A, C), drainsA),
        nodeC.applyMeshConfig(withoutLink(C, A), drainsC),
      ]);
      assert.deepEqual(
        first.draining.map((link) => [link.peer, link.shovel]),
        [[C, true]],
        'the removed link is kept, draining, not deleted at once',
      );
      const viaBBefore = viaB();
      await waitFor('messages via B after the switch', () => viaB() >= viaBBefore + 100, { timeoutMs: 60_000 });
      interval = DRAIN_SEND_INTERVAL_MS;
      const sentBeforeDrain = sent;

      // The drain: A's reconciler (as the agent's loop does) removes shovel and queue once the queue stayed empty.
      let passes = 0;
      let sawDraining = 0;
      let last: unknown;
      await waitFor(
        () => `the removed link A→C to be drained and removed; last ${JSON.stringify(last)}`,
        async () => {
          passes += 1;
          const result = await nodeA.reconcileLinks(nodeA.config, drainsA);
          await nodeC.reconcileLinks(nodeC.config, drainsC);
          if (result.draining.some((link) => link.peer === C)) sawDraining += 1;
          last = {
            draining: result.draining,
            shovel: await nodeA.management.shovelStatus(nodeA.vhost, linkShovelName(C)),
          };
          return (
            result.draining.length === 0 &&
            (await nodeA.management.getShovel(nodeA.vhost, linkShovelName(C))) === undefined
          );
        },
        { timeoutMs: 90_000, intervalMs: 500 },
      );
      const drainMs = performance.now() - removedAt;
      const sentDuringDrain = sent - sentBeforeDrain;
      assert.ok(sentDuringDrain > 0, 'traffic was sent while the link drained and went');
      const queues = await nodeA.management.listQueues(nodeA.vhost);
      assert.ok(!queues.some((queue) => queue.name === outboundQueueName(C)), 'the removed link’s queue is gone');
      assert.ok(sawDraining > 0, 'the link was seen draining before it was removed');

      sending = false;
      await sender;
      await waitFor('every confirmed message delivered', () => [...confirmed].every((id) => delivered.has(id)), {
        timeoutMs: 60_000,
      });
      // A duplicate would come from a redelivery after the first copy: wait for the stream to go quiet.
      let seen = -1;
      await waitFor(
        'no more deliveries',
        () => {
          const total = [...delivered.values()].reduce((sum, count) => sum + count, 0);
          const quiet = total === seen;
          seen = total;
          return quiet;
        },
        { timeoutMs: 30_000, intervalMs: 1_500 },
      );
      receiving = false;
      await consumer;

      const lost = [...confirmed].filter((id) => !delivered.has(id)).length;
      const duplicates = [...delivered.values()].filter((count) => count > 1).length;
      const total = [...delivered.values()].reduce((sum, count) => sum + count, 0);
      console.log(
        `# mesh-reroute sent=${sent} confirmed=${confirmed.size} delivered=${total} (direct ${direct()}, via B ${viaB()}) ` +
          `lost=${lost} duplicates=${duplicates} drained-and-removed=${Math.round(drainMs)}ms (${passes} reconciles, grace ${drainsA.graceMs} ms, ` +
          `${sentDuringDrain} sent meanwhile)`,
      );
      assert.deepEqual(failed, [], 'no publish nacked');
      assert.equal(lost, 0);
      assert.equal(duplicates, 0);
      assert.ok(direct() > 0 && viaB() > 0, 'messages took both routes');
      assert.deepEqual(
        [...paths.values()].filter((path) => ![`${A}>${C}`, `${A}>${B}>${C}`].includes(path.join('>'))),
        [],
        'no other path',
      );
    } finally {
      // On a failure too: a sender left running would keep the file from ending.
      sending = false;
      receiving = false;
      await Promise.allSettled([sender, consumer]);
    }
  });

  /** The spans of `traceId` once every node's hop span of it arrived (each provider flushed while waiting). */
  async function hopSpans(traceId: string): Promise<Map<string, ReceivedSpan>> {
    return waitFor(
      () =>
        `a span from every node in trace ${traceId}: have ${JSON.stringify(receiver.trace(traceId).map((s) => s.attributes['dmr.node']))}`,
      async () => {
        for (const provider of providers) await provider.flush();
        const byNode = new Map(receiver.trace(traceId).map((span) => [span.attributes['dmr.node'] ?? '', span]));
        return NODES.every((node) => byNode.has(node)) ? byNode : undefined;
      },
    );
  }

  // The traces: A – C is gone, so A → C is two hops, A → B → C (the test above checked the routes).
  it('a two-hop message with the client’s traceparent is one trace, each hop the child of the one before', async () => {
    const traceId = randomUUID().replace(/-/g, '');
    const clientSpan = '00f067aa0ba902b7';
    const id = await ria.send({
      to: 'rik-bot',
      body: BODY,
      headers: { traceparent: `00-${traceId}-${clientSpan}-01` },
    });
    const delivered = await rik.next();
    assert.equal(delivered.properties.messageId, id);

    const spans = await hopSpans(traceId);
    const [a, b, c] = NODES.map((node) => spans.get(node)) as [ReceivedSpan, ReceivedSpan, ReceivedSpan];
    assert.equal(a.parentSpanId, clientSpan);
    assert.equal(b.parentSpanId, a.spanId);
    assert.equal(c.parentSpanId, b.spanId);
    assert.deepEqual([a.name, b.name, c.name], ['dmr route', 'dmr relay', 'dmr relay']);
    for (const span of [a, b, c]) {
      assert.equal(span.service, 'dmr-router');
      assert.equal(span.attributes['messaging.message.id'], id);
      assert.equal(span.status, 0, `${span.attributes['dmr.node']} settled without error`);
    }
    assert.deepEqual(
      [a.attributes['dmr.result'], b.attributes['dmr.result'], c.attributes['dmr.result']],
      ['forwarded', 'forwarded', 'routed'],
    );
    assert.equal(a.attributes['dmr.next_hop'], 'node-b');
    // The checks in order; the publish and the audit record may overlap (Outcomes.sendAndSettle).
    assert.deepEqual(a.events.slice(0, 2), ['validated', 'policy']);
    assert.deepEqual(c.events.slice(0, 2), ['verified', 'policy']);
    for (const span of [a, b, c]) {
      assert.deepEqual(span.events.slice(2).sort(), ['audit', 'confirm', 'publish'], span.attributes['dmr.node']);
    }
    // The recipient gets the trace, as the child of the last hop.
    assert.equal(delivered.properties.headers?.traceparent, `00-${traceId}-${c.spanId}-01`);
    for (const span of receiver.spans) {
      for (const value of Object.values(span.attributes)) assert.ok(!value.includes('payload'), value);
    }
    assert.deepEqual(receiver.refused, []);

    // `dmr trace`: the same path from the three nodes' audit streams, read with each node's own identity.
    assert.ok(id !== undefined);
    const trace = traceMessage(id, await scanAll(id, 100_000), { jaeger: 'http://127.0.0.1:16686' });
    assert.deepEqual(trace.nodes, NODES);
    assert.deepEqual(
      trace.steps.map((step) => [step.hop, step.node, step.result, step.nextHop]),
      [
        [0, 'node-a', 'forwarded', 'node-b'],
        [1, 'node-b', 'forwarded', 'node-c'],
        [2, 'node-c', 'routed', null],
      ],
    );
    assert.equal(trace.outcome, 'routed');
    assert.deepEqual(trace.traceIds, [traceId]);
    assert.deepEqual(trace.jaeger, [`http://127.0.0.1:16686/trace/${traceId}`]);
  });

  /** Every node's dmr.audit stream scanned for `messageId`, as `dmr trace` does, with the node's certificate. */
  async function scanAll(messageId: string, limit: number): Promise<ScanResult[]> {
    return Promise.all(
      NODES.map(async (node) => {
        const connection = await mesh.node(node).connectAs(node);
        try {
          return await scanStream(connection, { messageId, limit, idleMs: 300, source: node });
        } finally {
          await connection.close().catch(() => undefined);
        }
      }),
    );
  }

  it('dmr trace: an unknown message is MESSAGE_NOT_FOUND; a read bounded by --limit stops there and says so', async () => {
    const unknown = randomUUID();
    const scans = await scanAll(unknown, 100_000);
    assert.ok(scans.every((scan) => scan.summary.read > 0 && !scan.summary.truncated));
    assert.throws(() => traceMessage(unknown, scans), { code: 'MESSAGE_NOT_FOUND' });
    const cut = await scanAll(unknown, 1);
    assert.deepEqual(
      cut.map((scan) => [scan.summary.read, scan.summary.truncated]),
      NODES.map(() => [1, true]),
    );
  });

  it('a plain AMQP client’s message without trace context: the first hop starts the trace, the audit records name it', async () => {
    const id = await ria.send({ to: 'rik-bot', body: BODY });
    const delivered = await rik.next();
    assert.equal(delivered.properties.messageId, id);
    const traceId = traceIdOf(delivered.properties.headers?.traceparent);
    assert.ok(traceId !== undefined, 'the delivered copy carries a traceparent');

    const spans = await hopSpans(traceId);
    assert.equal(spans.get('node-a')?.parentSpanId, undefined, 'node-a started the trace');
    for (const node of NODES) {
      const records = (await mesh.node(node).auditRecords(300)).map(
        (bytes) => JSON.parse(bytes.toString('utf8')) as AuditRecord,
      );
      const record = records.find((entry) => entry.messageId === id);
      assert.equal(record?.traceId, traceId, `${node}'s audit record names the trace`);
    }
  });
});
