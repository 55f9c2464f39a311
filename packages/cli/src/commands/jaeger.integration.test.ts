/**
 * On demand, against a real Jaeger: `dmr up --nodes 3 --observability` (a
 * line node-1 – node-2 – node-3, the demo's bot-a on node-1 asking bot-b on
 * node-3, so every question is relayed by node-2) with the pinned Jaeger
 * v1.75.0, and one trace read back through Jaeger's query API must hold the
 * hop spans of all three routers, each the child of the hop before; CentOps
 * and the agents export too. Then `dmr trace` reads the same message's path from the three nodes' audit
 * streams while the demo keeps talking, and links the trace.
 *
 * Skipped when Jaeger is not installed (`npm run setup:jaeger`): CI does not
 * build it (decision 0032: ≈ 10 min of Go on a quiet 2-core machine, 108 min
 * under load here), so in CI this file costs its import only. It needs
 * Prometheus as well (`--observability` starts both).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { locateJaeger, locatePrometheus, type MeshState } from '@dmr/mesh';
import { waitFor } from '@dmr/testkit';
import { dmrCli, runDmr } from '../test-support.js';

function missing(): false | string {
  if (locateJaeger() === undefined) return 'jaeger is not installed (npm run setup:jaeger; CI does not build it)';
  try {
    locatePrometheus();
  } catch {
    return 'prometheus is not installed (npm run setup:prometheus)';
  }
  return false;
}

/** What Jaeger's query API (`/api/traces`) answers, as far as this test reads it. */
interface JaegerTrace {
  traceID: string;
  spans: Array<{
    spanID: string;
    operationName: string;
    references?: Array<{ refType: string; spanID: string }>;
    tags: Array<{ key: string; value: unknown }>;
    processID: string;
  }>;
  processes: Record<string, { serviceName: string; tags?: Array<{ key: string; value: unknown }> }>;
}

type JaegerSpan = JaegerTrace['spans'][number];

function tag(trace: JaegerTrace, span: JaegerSpan, key: string): unknown {
  return (
    span.tags.find((item) => item.key === key)?.value ??
    trace.processes[span.processID]?.tags?.find((item) => item.key === key)?.value
  );
}

/**
 * The router hop spans of one message of a trace, by node: the demo's answer (and a delivery report) may
 * travel in the same trace the other way, so the spans are grouped by the message id they name.
 */
function hopsOfMessages(trace: JaegerTrace): Map<string, Map<string, JaegerSpan>> {
  const messages = new Map<string, Map<string, JaegerSpan>>();
  for (const span of trace.spans) {
    if (trace.processes[span.processID]?.serviceName !== 'dmr-router') continue;
    if (span.operationName !== 'dmr route' && span.operationName !== 'dmr relay') continue;
    const node = tag(trace, span, 'dmr.node');
    const messageId = tag(trace, span, 'messaging.message.id');
    if (typeof node !== 'string' || typeof messageId !== 'string') continue;
    let hops = messages.get(messageId);
    if (hops === undefined) messages.set(messageId, (hops = new Map()));
    hops.set(node, span);
  }
  return messages;
}

describe('Jaeger v1.75.0: a two-hop message is one trace with spans from every node', { skip: missing() }, () => {
  let root: string;
  let meshDir: string;
  let state: MeshState;
  const { ok } = dmrCli(() => ({ cwd: root }));

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'dmr-jaeger-'));
    meshDir = join(root, 'mesh');
    const up = await ok('-o', 'json', 'up', '--dir', meshDir, '--nodes', '3', '--interval', '250', '--observability');
    state = JSON.parse(up.stdout) as MeshState;
  });

  after(async () => {
    await runDmr(['down', '--dir', meshDir], { cwd: root });
    await rm(root, { recursive: true, force: true });
  });

  it('origin, relay and destination routers in one trace, each hop the child of the one before; the query API returns it', async () => {
    const jaeger = state.jaeger;
    assert.ok(jaeger != null, 'mesh.json names the Jaeger it started');
    const query = new URL('/api/traces', jaeger.url);
    query.search = new URLSearchParams({ service: 'dmr-router', operation: 'dmr route', limit: '50' }).toString();
    const { trace, hops, messageId } = await waitFor(
      'a trace through node-1, node-2 and node-3 in Jaeger',
      async () => {
        const answer = (await (await fetch(query)).json()) as { data: JaegerTrace[] | null };
        for (const candidate of answer.data ?? []) {
          // The query names traces with a matching span; the whole trace comes by its id.
          const whole = (await (await fetch(new URL(`/api/traces/${candidate.traceID}`, jaeger.url))).json()) as {
            data: JaegerTrace[];
          };
          const found = whole.data[0];
          if (found === undefined) continue;
          for (const [messageId, byNode] of hopsOfMessages(found)) {
            // bot-a's question (the answer goes the other way, from node-3).
            const asked = byNode.get('node-1')?.operationName === 'dmr route';
            if (asked && ['node-2', 'node-3'].every((node) => byNode.has(node))) {
              return { trace: found, hops: byNode, messageId };
            }
          }
        }
        return undefined;
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    const [origin, relay, destination] = ['node-1', 'node-2', 'node-3'].map((node) => hops.get(node) as JaegerSpan);
    assert.equal(origin?.operationName, 'dmr route');
    assert.equal(relay?.operationName, 'dmr relay');
    assert.equal(destination?.operationName, 'dmr relay');
    const parentOf = (span: JaegerSpan | undefined) =>
      span?.references?.find((ref) => ref.refType === 'CHILD_OF')?.spanID;
    assert.equal(parentOf(relay), origin?.spanID, 'the relay continues from the origin hop');
    assert.equal(parentOf(destination), relay?.spanID, 'the destination continues from the relay hop');
    assert.equal(tag(trace, destination as JaegerSpan, 'dmr.result'), 'routed');

    // CentOps and the agents export to the same Jaeger.
    const services = (await (await fetch(new URL('/api/services', jaeger.url))).json()) as { data: string[] | null };
    for (const service of ['dmr-router', 'dmr-agent', 'dmr-centops']) {
      assert.ok(services.data?.includes(service), `${service} in ${JSON.stringify(services.data)}`);
    }

    // The whole trace by its id through the query API, as `dmr trace` links it (`<ui>/trace/<id>`).
    assert.ok(messageId.length > 0);
    const byId = (await (await fetch(new URL(`/api/traces/${trace.traceID}`, jaeger.url))).json()) as {
      data: JaegerTrace[];
    };
    assert.equal(byId.data[0]?.traceID, trace.traceID);

    // `dmr trace` reads the same message's path from the three nodes' audit streams while the demo keeps
    // talking (it stops at each stream's end as of its start), and links this Jaeger trace.
    const traced = await runDmr(['trace', messageId, '--dir', meshDir, '--json'], { cwd: root });
    assert.equal(traced.status, 0, traced.stderr);
    const path = JSON.parse(traced.stdout) as { nodes: string[]; traceIds: string[]; jaeger: string[] };
    assert.deepEqual(path.nodes, ['node-1', 'node-2', 'node-3']);
    assert.ok(path.traceIds.includes(trace.traceID), JSON.stringify(path.traceIds));
    assert.ok(
      path.jaeger.some((link) => link.endsWith(`/trace/${trace.traceID}`)),
      JSON.stringify(path.jaeger),
    );
  });
});
