/**
 * The router under sharding and failures, on one harness broker with two
 * ingress shards: two routers share the work (no false replays, a real replay
 * still refused, a message without id still refused), a broker restart in the
 * middle of a stream and a router killed with SIGKILL lose nothing that was
 * confirmed to the sender (at least once; duplicates allowed).
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeFixture, parseReport, type TestClient } from '../testing/node-fixture.js';

const SHARDS = 2;

async function collectUntil(
  clients: TestClient[],
  seen: Set<string>,
  wanted: readonly string[],
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const client of clients) {
      for (const message of await client.drain(100, Math.max(100, deadline - Date.now()))) {
        if (typeof message.properties.messageId === 'string') seen.add(message.properties.messageId);
      }
    }
    if (wanted.every((id) => seen.has(id))) return true;
    await sleep(50);
  }
  return false;
}

async function routedBy(node: NodeFixture): Promise<number[]> {
  const counts: number[] = [];
  for (const handle of node.routers) {
    const found = (await handle.registry.getMetricsAsJSON()).find(
      (metric) => metric.name === 'dmr_router_messages_routed_total',
    );
    counts.push(((found?.values ?? []) as Array<{ value: number }>).reduce((sum, value) => sum + value.value, 0));
  }
  return counts;
}

async function sendMany(client: TestClient, count: number, to: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const id = await client.send({ to, body: `{"n":${i}}` });
    if (id !== undefined) ids.push(id);
  }
  return ids;
}

describe('router shards and failures', () => {
  let node: NodeFixture;

  before(async () => {
    node = await NodeFixture.start({ label: 'resilience', routerShards: SHARDS });
  });

  // A client left consuming by a failed test would take a share of the next test's messages.
  const clients: TestClient[] = [];
  const client = async (id: string): Promise<TestClient> => {
    const opened = await node.client(id);
    clients.push(opened);
    return opened;
  };

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((opened) => opened.close()));
  });

  after(async () => {
    await node?.stop();
  });

  it('two routers share the work: all delivered, none a false replay; a replay and a message without id refused', async () => {
    const ria = await client('ria-bot');
    const rik = await client('rik-bot');
    const ids = await sendMany(ria, 200, 'rik-bot');
    const seen = new Set<string>();
    assert.ok(await collectUntil([rik], seen, ids, 30_000), `delivered ${seen.size} of ${ids.length}`);
    const counts = await routedBy(node);
    assert.equal(counts.length, SHARDS);
    assert.ok(
      counts.every((count) => count > 0),
      `each router routed some: ${counts.join(', ')}`,
    );
    assert.deepEqual(await ria.drain(300), [], 'no refusal');
    await ria.send({ messageId: ids[7] ?? null, to: 'rik-bot' });
    assert.equal(parseReport(await ria.next()).reason, 'MESSAGE_REPLAYED');
    await ria.send({ messageId: null, to: 'rik-bot' });
    assert.equal(parseReport(await ria.next()).reason, 'MESSAGE_ID_INVALID');
  });

  it('broker restart in the middle of a stream: every confirmed message arrives at least once', async (t) => {
    // A sender that keeps going through the restart: it reconnects and counts only confirmed sends.
    const confirmed: string[] = [];
    let producing = true;
    let failedSends = 0;
    const producer = (async () => {
      let sender: TestClient | undefined;
      let n = 0;
      while (producing) {
        try {
          sender ??= await client('ria-bot');
          const id = await sender.send({ to: 'rik-bot', body: `{"n":${n++}}` });
          if (id !== undefined) confirmed.push(id);
        } catch {
          failedSends += 1;
          sender = undefined;
          await sleep(250);
        }
      }
    })();
    let rik = await client('rik-bot');
    const seen = new Set<string>();
    const deadline = Date.now() + 30_000;
    while (seen.size < 100 && Date.now() < deadline) await collectUntil([rik], seen, [], 100);
    assert.ok(seen.size >= 100, 'the stream is flowing before the restart');
    const sentBefore = confirmed.length;
    await node.harness.restartNode(0);
    // Keep the stream going a little after the broker is back, then stop it.
    await sleep(2_000);
    producing = false;
    await producer;
    assert.ok(failedSends > 0, 'the restart interrupted the sender');
    assert.ok(confirmed.length > sentBefore, 'messages were confirmed after the restart');
    await collectUntil([rik], seen, [], 100);
    rik = await client('rik-bot');
    assert.ok(
      await collectUntil([rik], seen, confirmed, 60_000),
      `delivered ${confirmed.filter((id) => seen.has(id)).length} of ${confirmed.length} confirmed`,
    );
    t.diagnostic(`${confirmed.length} confirmed (${sentBefore} before the restart), ${failedSends} sends failed`);
    assert.ok(
      node.routers.every((handle) => handle.router.state === 'running'),
      'routers running again',
    );
    for (const handle of node.routers) {
      const reconnects = (await handle.registry.getMetricsAsJSON()).find(
        (metric) => metric.name === 'dmr_router_reconnects_total',
      );
      assert.ok(((reconnects?.values[0] as { value: number } | undefined)?.value ?? 0) >= 1, 'reconnected');
    }
    // Duplicates of earlier reports are allowed (at least once); a refusal of this stream's messages is not.
    const ours = new Set(confirmed);
    const ria = await client('ria-bot');
    const reports = (await ria.drain(500))
      .map((message) => parseReport(message))
      .filter((report) => report.messageId !== null && ours.has(report.messageId));
    assert.deepEqual(reports, [], 'no refusal, in particular no false replay');
  });

  it('a router killed with SIGKILL mid-stream: nothing lost once a new router runs', async () => {
    await node.stopRouters();
    const first = await Promise.all([node.spawnRouter(0), node.spawnRouter(1)]);
    const ria = await client('ria-bot');
    const rik = await client('rik-bot');
    const seen = new Set<string>();
    const sending = sendMany(ria, 300, 'rik-bot');
    const deadline = Date.now() + 30_000;
    while (seen.size < 50 && Date.now() < deadline) await collectUntil([rik], seen, [], 100);
    assert.ok(seen.size >= 50, `only ${seen.size} delivered before the kill`);
    const victim = first[0];
    assert.ok(victim);
    victim.child.kill('SIGKILL'); // our own child process, by PID
    assert.equal(await victim.exited, null);
    const ids = await sending;
    const second = await node.spawnRouter(0);
    const complete = await collectUntil([rik], seen, ids, 60_000);
    const depths = await Promise.all([0, 1].map((shard) => node.depth(`dmr.ingress.${shard}`)));
    assert.ok(
      complete,
      `delivered ${ids.filter((id) => seen.has(id)).length} of ${ids.length}; ingress depths ${depths.join(', ')}; ` +
        `new router said:\n${second.lines.slice(-5).join('\n')}\nvictim said:\n${victim.lines.slice(-3).join('\n')}`,
    );
    const reports = (await ria.drain(500)).map((message) => parseReport(message).reason);
    assert.deepEqual(reports, [], 'no refusal after the new router took over');
  });
});
