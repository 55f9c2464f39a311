/**
 * A link removed live. Three nodes in a ring, linked by the reconciler's
 * shovels; a client on A sends to a client on C at a steady rate over the
 * direct link A→C. While it runs, the A–C link leaves both nodes'
 * configurations with the routes recomputed (A→C via B), applied as an agent
 * applies a document: reconcile, then the routers. Every message the sender
 * had confirmed reaches the application once, and the removed link's queue
 * drains before its shovel and queue go.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@dmr/core/testing';
import { outboundQueueName, type NodeConfig } from '@dmr/contract';
import { parseHopChain } from '../message/hop-chain.js';
import { DrainTracker, linkShovelName } from '../reconciler/links.js';
import { MeshFixture, shortestRoutes } from '../testing/mesh-fixture.js';
import type { TestClient } from '../testing/node-fixture.js';

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

describe('a link removed live', { timeout: 300_000 }, () => {
  let mesh: MeshFixture;
  let ria: TestClient;
  let rik: TestClient;

  before(async () => {
    mesh = await MeshFixture.start({
      label: 'mesh-reroute',
      nodes: NODES,
      links: RING,
      clients: [
        { id: 'ria-bot', organisation: 'ria', roles: ['bot'], homeNode: A },
        { id: 'rik-bot', organisation: 'rik', roles: ['bot'], homeNode: C },
      ],
    });
    ria = await mesh.node(A).client('ria-bot');
    rik = await mesh.node(C).client('rik-bot');
  });

  after(() => mesh?.stop());

  it('traffic follows the new routes with nothing lost, and the removed link drains before it goes', async () => {
    const nodeA = mesh.node(A);
    const nodeC = mesh.node(C);
    const delivered = new Map<string, number>();
    const paths = new Map<string, string[]>();
    let receiving = true;
    const receiver = (async () => {
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
      await receiver;

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
      await Promise.allSettled([sender, receiver]);
    }
  });
});
