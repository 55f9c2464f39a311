/**
 * Three nodes in a line, A – B – C, each with its own harness broker: A and
 * C linked by the reconciler's shovels, B's outgoing links test-only
 * forwarders, so B is the middle hop that can tamper. A message from a
 * client on A to one on C crosses two links with every hop verified; a
 * tampered message (sender changed, an entry dropped, a body byte flipped)
 * is refused at C with the documented reason and the sender hears of it in
 * a report signed by C; a routing loop is refused at B (HOP_LOOP); a
 * denylisted origin and a revoked origin certificate are refused at C. A
 * message that expires in C's mesh ingress before C's router took it is
 * reported by C to its sender when its hop chain verifies there, and to
 * nobody when it does not.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@dmr/core/testing';
import type { ConsumeMessage } from 'amqplib';
import { parseHopChain } from '../message/hop-chain.js';
import type { Tamper } from '../testing/link-forwarder.js';
import type { AuditRecord } from './audit.js';
import { MeshFixture } from '../testing/mesh-fixture.js';
import { latestDeath, parseReport, type TestClient } from '../testing/node-fixture.js';

const NODES = ['node-a', 'node-b', 'node-c'];
const LINKS = [
  ['node-a', 'node-b'],
  ['node-b', 'node-c'],
] as const;

function chainOf(headers: Record<string, unknown> | undefined): Array<[string, string | null]> {
  const chain = parseHopChain(headers?.['dmr-hops'], 8);
  assert.ok(chain.ok, 'dmr-hops is a hop chain');
  return chain.message.map((entry) => [entry.node, entry.to]);
}

/** A report from node C about `id`, as it reached a client on A: C signed it, and it came back over B. */
function assertReportFromC(report: ConsumeMessage, id: string | undefined, reason: string, check: RegExp): void {
  assert.equal(report.properties.type, 'dmr.DeliveryReport');
  assert.equal(report.properties.headers?.['dmr-origin'], 'node-c');
  assert.deepEqual(chainOf(report.properties.headers), [
    ['node-c', 'node-b'],
    ['node-b', 'node-a'],
    ['node-a', null],
  ]);
  const body = parseReport(report);
  assert.equal(body.messageId, id);
  assert.equal(body.reason, reason, body.detail);
  assert.equal(body.node, 'node-c');
  assert.match(body.detail, check);
}

describe('three nodes in a line, two hops', { timeout: 360_000 }, () => {
  let mesh: MeshFixture;
  let ria: TestClient;
  let desk: TestClient;
  let rik: TestClient;

  before(async () => {
    mesh = await MeshFixture.start({
      label: 'mesh3',
      nodes: NODES,
      links: LINKS,
      forwardersAt: ['node-b'],
      clients: [
        { id: 'ria-bot', organisation: 'ria', roles: ['bot'], homeNode: 'node-a' },
        { id: 'ria-desk', organisation: 'ria', roles: ['desk'], homeNode: 'node-a' },
        { id: 'rik-bot', organisation: 'rik', roles: ['bot'], homeNode: 'node-c' },
      ],
    });
    ria = await mesh.node('node-a').client('ria-bot');
    desk = await mesh.node('node-a').client('ria-desk');
    rik = await mesh.node('node-c').client('rik-bot');
  });

  after(() => mesh?.stop());

  /**
   * Sends a message from ria-bot to rik-bot that B tampers with on its way to C
   * (only that one: the tamper stays set for whatever is still in flight).
   */
  async function sendTampered(tamper: Tamper, body?: string): Promise<string> {
    const id = randomUUID();
    mesh.link('node-b', 'node-c').tamper = (message) =>
      message.properties.messageId === id ? tamper(message) : message;
    await ria.send({ to: 'rik-bot', messageId: id, ...(body === undefined ? {} : { body }) });
    return id;
  }

  it('delivers across two links exactly once, each hop in the chain', async () => {
    const id = await ria.send({ to: 'rik-bot', body: '{"q":"two hops"}' });
    const delivered = await rik.next(30_000);
    assert.equal(delivered.properties.messageId, id);
    assert.equal(delivered.properties.headers?.['dmr-sender'], 'ria-bot');
    assert.deepEqual(chainOf(delivered.properties.headers), [
      ['node-a', 'node-b'],
      ['node-b', 'node-c'],
      ['node-c', null],
    ]);
    assert.deepEqual(await rik.drain(1_000), [], 'exactly one delivery');
    const atB = mesh.node('node-b').decisions(id ?? '')[0];
    assert.equal(atB?.result, 'forwarded');
    assert.equal(atB?.nextHop, 'node-c');
    assert.deepEqual(atB?.hops, ['node-a', 'node-b']);
    const atC = mesh.node('node-c').decisions(id ?? '')[0];
    assert.deepEqual(atC?.hops, ['node-a', 'node-b', 'node-c']);

    // A measurement, not an assertion: each router's time from taking a message to its settle (the decision
    // log line's ms), the first message (cold certificate caches) and the median of 20 more sent one by one.
    const ms = (node: string, messageId: string | undefined): number =>
      Number(mesh.node(node).decisions(messageId ?? '')[0]?.ms);
    const warm: Array<string | undefined> = [];
    for (let i = 0; i < 20; i += 1) {
      warm.push(await ria.send({ to: 'rik-bot' }));
      await rik.next(30_000);
    }
    const median = (node: string): number => {
      const sorted = warm.map((messageId) => ms(node, messageId)).sort((x, y) => x - y);
      return sorted[Math.floor(sorted.length / 2)] ?? NaN;
    };
    process.stdout.write(
      `# mesh route ms (first; median of 20): origin ${ms('node-a', id)}; ${median('node-a')}, ` +
        `relay ${ms('node-b', id)}; ${median('node-b')}, destination ${ms('node-c', id)}; ${median('node-c')}\n`,
    );
  });

  it('refuses at C a message whose sender B changed; the sender it names hears of it from C', async () => {
    const id = await sendTampered((message) => {
      message.properties.headers['dmr-sender'] = 'ria-desk';
      return message;
    });
    // Nothing the message claims is proved once its signature fails: the report goes to the client it names,
    // when that is a client of the origin it names (here the impersonated ria-desk).
    assertReportFromC(await desk.next(30_000), id, 'HOP_SIGNATURE_INVALID', /\(signature\)$/);
    assert.deepEqual(await rik.drain(500), []);
  });

  it('refuses at C a message whose origin entry B dropped (HOPS_INVALID origin), reported to the sender', async () => {
    const id = await sendTampered((message) => {
      const chain = JSON.parse(String(message.properties.headers['dmr-hops'])) as unknown[];
      message.properties.headers['dmr-hops'] = JSON.stringify(chain.slice(1));
      return message;
    });
    assertReportFromC(await ria.next(30_000), id, 'HOPS_INVALID', /\(origin\)$/);
    assert.deepEqual(await rik.drain(500), []);
  });

  it('refuses at C a message with one body byte flipped by B (HOP_SIGNATURE_INVALID), reported to the sender', async () => {
    const id = await sendTampered((message) => {
      const content = Buffer.from(message.content);
      content[0] = (content[0] ?? 0) ^ 0x01;
      return { ...message, content };
    }, '{"q":"intact?"}');
    assertReportFromC(await ria.next(30_000), id, 'HOP_SIGNATURE_INVALID', /\(signature\)$/);
    assert.deepEqual(await rik.drain(500), []);
    assert.equal(mesh.node('node-c').decisions(id ?? '')[0]?.reason, 'HOP_SIGNATURE_INVALID');
  });

  it('reports a message that expired in the link from B to C back to its sender: MESSAGE_EXPIRED from B', async () => {
    const link = mesh.link('node-b', 'node-c');
    await link.pause();
    try {
      const id = await ria.send({ to: 'rik-bot', expiration: '1500' });
      const report = await ria.next(30_000);
      assert.equal(report.properties.headers?.['dmr-origin'], 'node-b');
      const body = parseReport(report);
      assert.equal(body.messageId, id);
      assert.equal(body.status, 'dead-lettered');
      assert.equal(body.reason, 'MESSAGE_EXPIRED');
      assert.equal(body.node, 'node-b');
      assert.match(body.detail, /expired in the link to node node-c$/);
    } finally {
      await link.resume();
    }
    assert.deepEqual(await rik.drain(500), []);
  });

  /**
   * Sends ria-bot → rik-bot while C's routers are stopped (B tampering with it on the way when `tamper` is set):
   * the message waits in C's mesh ingress and expires there. Resolves with its id once C's dmr.rejected holds the
   * dead letter and C has a router again, which takes it from the dead-letter reports.
   */
  async function expireAtC(tamper?: Tamper): Promise<string> {
    const c = mesh.node('node-c');
    const id = randomUUID();
    if (tamper !== undefined) {
      mesh.link('node-b', 'node-c').tamper = (message) =>
        message.properties.messageId === id ? tamper(message) : message;
    }
    await c.stopRouters();
    try {
      // Long enough to cross both links under load, short enough to wait for.
      await ria.send({ to: 'rik-bot', messageId: id, expiration: '6000' });
      const copy = await c.awaitRejected(id, 30_000);
      const death = latestDeath(copy);
      assert.equal(death?.queue, 'dmr.mesh-ingress.0');
      assert.equal(death?.reason, 'expired');
    } finally {
      await c.startRouter();
    }
    return id;
  }

  it("reports a message that expired in C's mesh ingress before C's router took it: MESSAGE_EXPIRED from C", async () => {
    const id = await expireAtC();
    const report = await ria.next(30_000);
    assertReportFromC(report, id, 'MESSAGE_EXPIRED', /^expired in dmr\.mesh-ingress\.0 before a router took it$/);
    assert.equal(parseReport(report).status, 'dead-lettered');
    assert.deepEqual(await rik.drain(500), []);
    const records = (await mesh.node('node-c').auditRecords(300)).map(
      (bytes) => JSON.parse(bytes.toString('utf8')) as AuditRecord,
    );
    assert.deepEqual(
      records
        .filter((record) => record.messageId === id)
        .map((record) => [record.kind, record.result, record.reason, record.sender, record.hops]),
      [['dead-letter', 'reported', 'MESSAGE_EXPIRED', 'ria-bot', ['node-a', 'node-b']]],
    );
  });

  it("tells nobody about a message that expired in C's mesh ingress when its hop chain does not verify there", async () => {
    // B names another client of A as the sender: only the chain could prove who sent it, and it no longer does.
    const id = await expireAtC((message) => {
      message.properties.headers['dmr-sender'] = 'ria-desk';
      return message;
    });
    const c = mesh.node('node-c');
    const settled = (): Record<string, unknown> | undefined =>
      c.logLines.find((line) => line.messageId === id && line.msg === 'dead-letter');
    await waitFor('C settled the dead letter', () => settled() !== undefined, { timeoutMs: 30_000 });
    assert.match(String(settled()?.unreported), /^its hop chain does not verify: HOP_SIGNATURE_INVALID/);
    assert.equal(settled()?.report, undefined);
    const records = (await c.auditRecords(300)).map((bytes) => JSON.parse(bytes.toString('utf8')) as AuditRecord);
    assert.deepEqual(
      records
        .filter((record) => record.messageId === id)
        .map((record) => [record.kind, record.result, record.reason, record.sender]),
      [['dead-letter', 'rejected', 'MESSAGE_EXPIRED', null]],
    );
    assert.deepEqual(await desk.drain(1_000), [], 'not the client the forged claim names');
    assert.deepEqual(await ria.drain(500), []);
    assert.deepEqual(await rik.drain(500), []);
  });

  it('refuses a routing loop at the hop that would close it (HOP_LOOP), reported to the sender', async () => {
    const b = mesh.node('node-b');
    const routes = b.config.routes;
    // A misrouted B: node-c's clients back toward A, where the message came from.
    b.reconfigure((config) => {
      config.routes = config.routes.map((route) =>
        route.destination === 'node-c' ? { destination: 'node-c', reachable: true, nextHop: 'node-a', cost: 2 } : route,
      );
    });
    try {
      const id = await ria.send({ to: 'rik-bot' });
      const report = parseReport(await ria.next(30_000));
      assert.equal(report.messageId, id);
      assert.equal(report.reason, 'HOP_LOOP');
      assert.equal(report.node, 'node-b');
      assert.match(report.detail, /node-a, already handled the message \(loop\)$/);
    } finally {
      b.reconfigure((config) => {
        config.routes = routes;
      });
    }
    assert.deepEqual(await rik.drain(500), []);
  });

  it('refuses at C a message from an origin C denylists (ORIGIN_DENIED), with no report toward it', async () => {
    const c = mesh.node('node-c');
    c.reconfigure((config) => {
      config.denylist = [
        ...config.denylist,
        { id: 'node-a', kind: 'node', reason: 'test', since: '2026-01-01T00:00:00.000Z' },
      ];
    });
    try {
      const id = await ria.send({ to: 'rik-bot' });
      const decision = await waitFor('C to decide', () => c.decisions(id ?? '')[0]);
      assert.equal(decision.result, 'rejected');
      assert.equal(decision.reason, 'ORIGIN_DENIED');
      assert.deepEqual(await rik.drain(500), []);
      assert.deepEqual(await ria.drain(1_000), [], 'no report routed toward a denylisted node');
    } finally {
      c.reconfigure((config) => {
        config.denylist = config.denylist.filter((entry) => entry.id !== 'node-a');
      });
    }
  });

  it('refuses at C a message signed with a revoked origin certificate once C has the CRL, reported to the sender', async () => {
    const c = mesh.node('node-c');
    const issued = (await mesh.ca.listIssued()).find((record) => record.kind === 'node' && record.id === 'node-a');
    assert.ok(issued !== undefined);
    await mesh.ca.revoke(issued.serial, 'keyCompromise');
    const crl = await mesh.ca.createCrl();
    for (const { router } of c.routers) router.applyIdentity(c.nodeIdentity([crl]));
    try {
      const id = await ria.send({ to: 'rik-bot' });
      assertReportFromC(await ria.next(30_000), id, 'HOP_SIGNATURE_INVALID', /\(revoked\)$/);
      assert.deepEqual(await rik.drain(500), []);
    } finally {
      for (const { router } of c.routers) router.applyIdentity(c.nodeIdentity());
    }
  });
});
