/**
 * The router under sharding and failures, on one harness broker with two
 * ingress shards: two routers share the work (no false replays, a real replay
 * still refused, a message without id still refused), a broker restart in the
 * middle of a stream and a router killed with SIGKILL lose nothing that was
 * confirmed to the sender (at least once; duplicates allowed), and a router
 * killed with SIGKILL comes back remembering its shard's message ids (the
 * replay journal in its state dir): a plain AMQP client's re-publish is
 * refused and audited as a replay, not delivered twice.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeFixture, parseReport, type TestClient } from '../testing/node-fixture.js';
import type { AuditRecord } from './audit.js';

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

/** Collects reports (message id → reason) until `count` distinct ids were reported on. */
async function waitForReports(sender: TestClient, reports: Map<string, string>, count: number): Promise<void> {
  while (reports.size < count) {
    const report = parseReport(await sender.next(30_000));
    if (report.messageId !== null) reports.set(report.messageId, report.reason);
  }
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

  /** Each shard's replay memory, where `dmr node run` keeps it: the same directory for a killed router's successor. */
  const replayDir = (shard: number): string => join(node.dir, 'replay', `shard-${shard}`);

  it('a router killed with SIGKILL mid-stream: nothing lost once a new router runs', async () => {
    await node.stopRouters();
    const first = await Promise.all([0, 1].map((shard) => node.spawnRouter(shard, { replayDir: replayDir(shard) })));
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
    // The successor starts from the ids the victim wrote: its redeliveries are re-attempts, not replays.
    const second = await node.spawnRouter(0, { replayDir: replayDir(0) });
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
  it('a router restarted after SIGKILL remembers its ids: a plain AMQP re-publish is refused and audited as a replay', async () => {
    await node.stopRouters();
    const routers = await Promise.all([0, 1].map((shard) => node.spawnRouter(shard, { replayDir: replayDir(shard) })));
    const ria = await client('ria-bot');
    const rik = await client('rik-bot');
    const ids = await sendMany(ria, 40, 'rik-bot');
    const seen = new Set<string>();
    assert.ok(await collectUntil([rik], seen, ids, 30_000), `delivered ${seen.size} of ${ids.length}`);
    for (const victim of routers) {
      victim.child.kill('SIGKILL'); // our own child processes, by PID
      assert.equal(await victim.exited, null);
    }
    const restarted = await Promise.all(
      [0, 1].map((shard) => node.spawnRouter(shard, { replayDir: replayDir(shard) })),
    );
    const restoredLines = restarted.flatMap((router) =>
      router.lines.filter((line) => line.includes('replay memory restored')),
    );
    assert.equal(restoredLines.length, 2, 'both successors restored their shard');

    // The same ids again, from a plain AMQP client (no SDK deduplication behind it).
    for (const id of ids) await ria.send({ messageId: id, to: 'rik-bot' });
    // One outcome per message: a refusal report for each id means none of them was delivered again.
    const reports = new Map<string, string>();
    await waitForReports(ria, reports, ids.length);
    assert.deepEqual(new Set(reports.keys()), new Set(ids));
    assert.deepEqual([...new Set(reports.values())], ['MESSAGE_REPLAYED']);
    const again = (await rik.drain(300)).filter((message) => ids.includes(message.properties.messageId as string));
    assert.deepEqual(again, [], 'nothing delivered twice');

    const replays = (await node.auditRecords(500))
      .map((bytes) => JSON.parse(bytes.toString('utf8')) as AuditRecord)
      .filter((record) => record.reason === 'MESSAGE_REPLAYED' && ids.includes(record.messageId ?? ''));
    assert.equal(new Set(replays.map((record) => record.messageId)).size, ids.length, 'each replay audited');
    assert.ok(replays.every((record) => record.result === 'rejected'));
  });
});
