/**
 * Traces across the mesh (docs/decisions/0032-traces.md): three nodes in a
 * line, A – B – C, linked by the reconciler's shovels, each node's routers
 * with a tracer of their own exporting over OTLP/HTTP (the real exporter,
 * batched) to a receiver in the test. A two-hop message yields ONE trace
 * with a span from every node, each hop the child of the one before; the
 * edge starts the trace when the client sent none; the audit records name
 * it; no span carries the payload; `dmr trace` (audit/trace.ts) reads the
 * same path back from the three nodes' dmr.audit streams.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { OtlpReceiver, waitFor, type ReceivedSpan } from '@dmr/core/testing';
import { traceIdOf } from '@dmr/core';
import { tracerProvider } from '@dmr/core/tracing-sdk';
import type { Tracer } from '@opentelemetry/api';
import { MeshFixture } from '../testing/mesh-fixture.js';
import type { TestClient } from '../testing/node-fixture.js';
import type { AuditRecord } from './audit.js';
import { scanStream, traceMessage, type ScanResult } from '../audit/trace.js';

const NODES = ['node-a', 'node-b', 'node-c'];
const LINKS = [
  ['node-a', 'node-b'],
  ['node-b', 'node-c'],
] as const;
const BODY = 'the payload must never reach a span';

describe('traces across three nodes', { timeout: 360_000 }, () => {
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
      label: 'traces',
      nodes: NODES,
      links: LINKS,
      tracers,
      clients: [
        { id: 'ria-bot', organisation: 'ria', homeNode: 'node-a' },
        { id: 'rik-bot', organisation: 'rik', homeNode: 'node-c' },
      ],
    });
    ria = await mesh.node('node-a').client('ria-bot');
    rik = await mesh.node('node-c').client('rik-bot');
  });

  after(async () => {
    await mesh?.stop();
    for (const provider of providers) await provider.shutdown();
    await receiver?.close();
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
