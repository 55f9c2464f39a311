import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { DmrError, type DmrEvent } from '@dmr/core';
import { waitFor } from '@dmr/core/testing';
import { pino } from 'pino';
import { AgentEvents, OUTBOX_MAX } from './events.js';
import { AgentMetrics } from './metrics.js';

const DAY = 86_400_000;
const NOW = new Date('2026-12-05T12:00:00.000Z');

function harness(post: (event: DmrEvent) => Promise<void> = async () => undefined) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  const metrics = new AgentMetrics();
  const posted: DmrEvent[] = [];
  let connected = true;
  const events = new AgentEvents({
    node: 'node-1',
    logger: pino({ level: 'debug' }, stream),
    metrics,
    backoff: { initialMs: 5, maxMs: 20 },
    post: () =>
      connected
        ? async (event) => {
            await post(event);
            posted.push(event);
          }
        : undefined,
    now: () => NOW,
  });
  const count = async (kind: string, reason: string) => {
    const metric = await metrics.events.get();
    return metric.values.find((value) => value.labels.kind === kind && value.labels.reason === reason)?.value ?? 0;
  };
  return {
    events,
    lines,
    posted,
    count,
    disconnect: () => (connected = false),
    connect: () => (connected = true),
  };
}

describe('the agent events', () => {
  it('announces an expiry threshold once per certificate and threshold, the nearest when several are crossed', async () => {
    const { events, lines, posted, count } = harness();
    const certificate = {
      serial: 'ab01',
      notBefore: new Date(NOW.getTime() - 80 * DAY),
      notAfter: new Date(NOW.getTime() + 10 * DAY),
    };
    await events.checkExpiry(certificate, NOW);
    assert.equal(posted.length, 0, 'ten days left: nothing');
    await events.checkExpiry(certificate, new Date(NOW.getTime() + 4 * DAY));
    await events.checkExpiry(certificate, new Date(NOW.getTime() + 4 * DAY + 3_600_000));
    await events.idle();
    assert.deepEqual(
      posted.map((event) => [event.kind, (event.fields as { threshold: string }).threshold]),
      [['certificate.expiring', '7d']],
      'crossing 7d once is one event, however many ticks follow',
    );
    await events.checkExpiry(certificate, new Date(NOW.getTime() + 9.5 * DAY));
    await events.idle();
    assert.equal(posted.length, 2);
    assert.equal((posted[1]?.fields as { threshold: string }).threshold, '1d');
    // A node that starts with 12 h left crosses both at once: one event, for 1d.
    const late = {
      serial: 'ab02',
      notBefore: new Date(NOW.getTime() - 89 * DAY),
      notAfter: new Date(NOW.getTime() + DAY / 2),
    };
    await events.checkExpiry(late, NOW);
    await events.checkExpiry(late, NOW);
    await events.idle();
    assert.equal(posted.length, 3);
    assert.equal(await count('certificate.expiring', '7d'), 1);
    assert.equal(await count('certificate.expiring', '1d'), 2);
    const line = lines.find((candidate) => candidate.event === 'certificate.expiring');
    assert.equal(line?.level, 40, 'a warning');
    assert.equal(line?.serial, 'ab01');
  });

  it('says nothing while the renewal is not yet due: a fresh 7-day certificate is not "expiring"', async () => {
    const { events, posted } = harness();
    const fresh = { serial: 'cd01', notBefore: NOW, notAfter: new Date(NOW.getTime() + 7 * DAY) };
    await events.checkExpiry(fresh, NOW);
    await events.checkExpiry(fresh, new Date(NOW.getTime() + 4 * DAY)); // the renewal is due at 4.67 d
    await events.idle();
    assert.equal(posted.length, 0);
    await events.checkExpiry(fresh, new Date(NOW.getTime() + 5 * DAY));
    await events.idle();
    assert.deepEqual(
      posted.map((event) => (event.fields as { threshold: string }).threshold),
      ['7d'],
    );
  });

  it('a refusal retried with back-off is one event; a new revision or code is another', async () => {
    const { events, posted, count, lines } = harness();
    await events.refused(5, 'CENTOPS_UNREACHABLE', { reason: 'bundle download failed' });
    await events.refused(5, 'CENTOPS_UNREACHABLE', { reason: 'bundle download failed' });
    await events.refused(5, 'CONFIG_INVALID', { reason: 'x' });
    await events.applied(6, {});
    await events.refused(6, 'CONFIG_INVALID', { reason: 'x' });
    await events.idle();
    assert.deepEqual(
      posted.map((event) => event.kind),
      ['config.refused', 'config.refused', 'config.applied', 'config.refused'],
    );
    assert.equal(await count('config.refused', 'CENTOPS_UNREACHABLE'), 1);
    assert.ok(lines.some((line) => line.msg === 'configuration refused again'));
    // The reason text is for the log line only: the audit record holds catalogue fields.
    assert.deepEqual(posted[0]?.fields, { node: 'node-1', revision: 5, code: 'CENTOPS_UNREACHABLE' });
  });

  it('keeps events while CentOps is out of reach and sends them in order once it answers', async () => {
    let down = true;
    const { events, posted, count } = harness(async () => {
      if (down) throw new DmrError('CENTOPS_UNREACHABLE', 'connection refused');
    });
    await events.applied(1, {});
    await events.applied(2, {});
    assert.equal(await count('config.applied', 'none'), 2, 'logged and counted at once, whatever CentOps does');
    assert.equal(events.pending, 2);
    down = false;
    await waitFor('the queue drained', () => events.pending === 0);
    assert.deepEqual(
      posted.map((event) => (event.fields as { revision: number }).revision),
      [1, 2],
    );
    events.stop();
  });

  it('drops an event CentOps refuses for what it is, and the oldest past the bound', async () => {
    const { events, posted, lines, disconnect, connect } = harness(async (event) => {
      if ((event.fields as { revision: number }).revision === 1) throw new DmrError('INVALID_ARGUMENT', 'no');
    });
    await events.applied(1, {});
    await events.applied(2, {});
    await events.idle();
    assert.deepEqual(
      posted.map((event) => (event.fields as { revision: number }).revision),
      [2],
    );
    assert.ok(lines.some((line) => line.msg === 'CentOps refused an event report' && line.code === 'INVALID_ARGUMENT'));
    disconnect();
    for (let revision = 10; revision < 10 + OUTBOX_MAX + 2; revision += 1) await events.applied(revision, {});
    assert.equal(events.pending, OUTBOX_MAX);
    assert.equal(lines.filter((line) => line.msg === 'event not reported to CentOps: the queue is full').length, 2);
    connect();
    events.flush();
    await waitFor('the queue drained', () => events.pending === 0);
    assert.equal((posted[1]?.fields as { revision: number }).revision, 12, 'the two oldest went');
  });
});
