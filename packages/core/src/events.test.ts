import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  EVENT_CATALOGUE,
  EVENT_KINDS,
  EventRecorder,
  eventProblems,
  eventReason,
  parseEvent,
  type DmrEvent,
  type EventLogger,
} from './events.js';

interface Line {
  level: string;
  fields: Record<string, unknown>;
  message: string;
}

function sinks() {
  const lines: Line[] = [];
  const counts: string[] = [];
  const audited: DmrEvent[] = [];
  const logger: EventLogger = {
    info: (fields, message) => lines.push({ level: 'info', fields: fields as Record<string, unknown>, message }),
    warn: (fields, message) => lines.push({ level: 'warn', fields: fields as Record<string, unknown>, message }),
    error: (fields, message) => lines.push({ level: 'error', fields: fields as Record<string, unknown>, message }),
  };
  const counter = { inc: (labels: { kind: string; reason: string }) => counts.push(`${labels.kind}/${labels.reason}`) };
  return { lines, counts, audited, logger, counter };
}

const SERIAL = '4f1c2a';
const AT = new Date('2026-12-05T10:00:00.000Z');

describe('event catalogue', () => {
  it('gives every kind a level, an origin, a summary, fields and a label that is one of its bounded fields', () => {
    for (const kind of EVENT_KINDS) {
      const spec = EVENT_CATALOGUE[kind] as (typeof EVENT_CATALOGUE)[keyof typeof EVENT_CATALOGUE] & { label?: string };
      assert.match(kind, /^[a-z]+\.[a-z]+$/);
      assert.ok(['info', 'warn', 'error'].includes(spec.level), kind);
      assert.ok(['centops', 'node', 'router', 'bridge'].includes(spec.origin), kind);
      assert.ok(spec.summary.length > 20, kind);
      if (spec.label !== undefined) {
        const field = (spec.fields as Record<string, { type: string }>)[spec.label];
        // The counter's reason label must stay low-cardinality: an enum or a catalogue code, never an id or a time.
        assert.ok(field !== undefined && ['enum', 'code'].includes(field.type), `${kind}: label ${spec.label}`);
      }
    }
  });

  it('names every issue-15 event: configuration, certificates, policy and denylist, failed deliveries', () => {
    for (const kind of [
      'config.published',
      'config.applied',
      'config.refused',
      'certificate.issued',
      'certificate.renewed',
      'certificate.revoked',
      'certificate.installed',
      'certificate.expiring',
      'policy.changed',
      'denylist.changed',
      'delivery.failed',
    ]) {
      assert.ok(EVENT_KINDS.includes(kind as (typeof EVENT_KINDS)[number]), kind);
    }
  });

  it('refuses unknown fields, missing fields and values of the wrong shape, naming each', () => {
    assert.deepEqual(eventProblems('config.applied', { node: 'node-1', revision: 3 }), []);
    assert.deepEqual(eventProblems('config.applied', { node: 'node-1', revision: 3, reason: 'x' }), [
      'config.applied: unknown field "reason"',
    ]);
    assert.deepEqual(eventProblems('config.applied', { node: 'node-1' }), [
      'config.applied: field "revision" is required',
    ]);
    assert.deepEqual(eventProblems('config.refused', { node: 'Node 1', revision: -1, code: 'NOPE' }), [
      'config.refused: field "node" is not a valid id',
      'config.refused: field "revision" is not a valid revision',
      'config.refused: field "code" is not a valid code',
    ]);
    assert.deepEqual(
      eventProblems('certificate.expiring', { node: 'n1', serial: 'XYZ', notAfter: 'tomorrow', threshold: '3d' }),
      [
        'certificate.expiring: field "serial" is not a valid serial',
        'certificate.expiring: field "notAfter" is not a valid time',
        'certificate.expiring: field "threshold" is not a valid enum',
      ],
    );
    assert.deepEqual(
      eventProblems('delivery.failed', { reason: 'POLICY_DENIED' }),
      [],
      'optional fields may be absent',
    );
    assert.deepEqual(eventProblems('delivery.failed', null), ['fields must be an object']);
  });

  it('parses a reported event and refuses anything else with INVALID_ARGUMENT and every problem', () => {
    const event = { kind: 'config.applied', at: AT.toISOString(), fields: { node: 'node-1', revision: 4 } };
    assert.deepEqual(parseEvent(event), event);
    assert.throws(
      () => parseEvent({ kind: 'config.secret', at: 'now', fields: {}, extra: 1 }),
      (error: Error & { code?: string; details?: { problems: string[] } }) => {
        assert.equal(error.code, 'INVALID_ARGUMENT');
        assert.equal(error.details?.problems.length, 3);
        return true;
      },
    );
    // A message body smuggled into a field is not an id, so it never reaches a log line or an audit record.
    assert.throws(() => parseEvent({ ...event, fields: { node: 'node-1', revision: 4, body: 'hello' } }));
  });
});

describe('EventRecorder', () => {
  it('emit appends the audit record, then writes one log line and one counter increment', async () => {
    const { lines, counts, audited, logger, counter } = sinks();
    const order: string[] = [];
    const recorder = new EventRecorder({
      logger: { ...logger, warn: (fields, message) => (order.push('log'), logger.warn(fields, message)) },
      counter,
      audit: async (event) => {
        order.push('audit');
        audited.push(event);
      },
      now: () => AT,
    });
    const event = await recorder.emit(
      'config.refused',
      { node: 'node-1', revision: 7, code: 'CONFIG_SIGNATURE_INVALID' },
      { reason: 'bad signature' },
      'configuration refused',
    );
    assert.deepEqual(order, ['audit', 'log']);
    assert.deepEqual(audited, [event]);
    assert.deepEqual(event, {
      kind: 'config.refused',
      at: AT.toISOString(),
      fields: { node: 'node-1', revision: 7, code: 'CONFIG_SIGNATURE_INVALID' },
    });
    assert.deepEqual(lines, [
      {
        level: 'warn',
        message: 'configuration refused',
        fields: {
          reason: 'bad signature',
          event: 'config.refused',
          node: 'node-1',
          revision: 7,
          code: 'CONFIG_SIGNATURE_INVALID',
        },
      },
    ]);
    assert.deepEqual(counts, ['config.refused/CONFIG_SIGNATURE_INVALID']);
  });

  it('a failed audit append neither logs nor counts: no event is announced that has no record', async () => {
    const { lines, counts, logger, counter } = sinks();
    const recorder = new EventRecorder({
      logger,
      counter,
      audit: () => Promise.reject(new Error('CentOps down')),
    });
    await assert.rejects(recorder.emit('config.applied', { node: 'node-1', revision: 1 }), /CentOps down/);
    assert.deepEqual(lines, []);
    assert.deepEqual(counts, []);
  });

  it('recorded logs and counts an event whose record was written with the change; context never overrides fields', () => {
    const { lines, counts, logger, counter } = sinks();
    const recorder = new EventRecorder({ logger, counter });
    recorder.recorded(
      'delivery.failed',
      { messageId: '6f0e7a3c-1d2b-4c5d-8e9f-0a1b2c3d4e5f', reason: 'POLICY_DENIED', sender: 'bot-a' },
      { reason: 'spoofed', hops: ['node-1'], ms: 1.5 },
      'route',
    );
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.message, 'route');
    assert.equal(lines[0]?.fields.reason, 'POLICY_DENIED');
    assert.deepEqual(lines[0]?.fields.hops, ['node-1']);
    assert.deepEqual(counts, ['delivery.failed/POLICY_DENIED']);
  });

  it('counts kinds without a label as reason "none", and with one by its bounded value', () => {
    const at = AT.toISOString();
    assert.equal(eventReason({ kind: 'config.published', at, fields: { revision: 2 } }), 'none');
    assert.equal(
      eventReason({
        kind: 'denylist.changed',
        at,
        fields: { op: 'remove', principal: 'client', id: 'bot-a', revision: 3 },
      }),
      'remove',
    );
    const { counts, logger, counter } = sinks();
    const recorder = new EventRecorder({ logger, counter });
    recorder.recorded('certificate.revoked', {
      principal: 'node',
      id: 'node-2',
      serial: SERIAL,
      reason: 'keyCompromise',
    });
    assert.deepEqual(counts, ['certificate.revoked/keyCompromise']);
  });

  it('throws on an event that breaks the catalogue, before anything is logged, counted or audited', async () => {
    const { lines, counts, audited, logger, counter } = sinks();
    const recorder = new EventRecorder({ logger, counter, audit: async (event) => void audited.push(event) });
    assert.throws(() =>
      recorder.recorded('certificate.issued', {
        principal: 'client',
        id: 'bot-a',
        serial: SERIAL,
        notAfter: AT.toISOString(),
        via: 'renew' as 'enrol',
      }),
    );
    await assert.rejects(recorder.emit('config.applied', { node: 'node-1', revision: 1.5 }));
    assert.deepEqual([lines, counts, audited], [[], [], []]);
  });
});
