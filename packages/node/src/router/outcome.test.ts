import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AckBatcher } from '@dmr/core';
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { AuditEvent, AuditSink } from './audit.js';
import type { Refusal } from './envelope.js';
import { RouterMetrics } from './metrics.js';
import { DEFAULT_HOLD_BACKOFF, DEFAULT_HOLD_MAX_BYTES, Holds } from './hold.js';
import { Outcomes, Transient, recipientKey, type HeldDelivery, type RouteDecision, type Session } from './outcome.js';

/** A settled audit append the test resolves or rejects by hand. */
class HeldAudit implements AuditSink {
  readonly appended: AuditEvent[] = [];
  readonly #waiting: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];

  append(event: AuditEvent): Promise<void> {
    this.appended.push(event);
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  confirm(): void {
    this.#waiting.shift()?.resolve();
  }

  fail(): void {
    this.#waiting.shift()?.reject(new Error('stream unavailable'));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A session whose channel only records acks: sendAndSettle touches nothing else of it. */
function session(): { session: Session; acked: number[] } {
  const acked: number[] = [];
  const channel = {
    ack: (message: ConsumeMessage) => acked.push(message.fields.deliveryTag),
    nack: () => undefined,
  };
  const acks = new AckBatcher<ConsumeMessage>(channel);
  return {
    acked,
    session: {
      connection: {} as ChannelModel,
      channel: channel as unknown as ConfirmChannel,
      acks,
      alive: true,
      closed: new Promise<void>(() => undefined),
      ingressTag: undefined,
      reportsTag: undefined,
      meshTag: undefined,
      inflightIds: new Set(),
      returned: new Set(),
      held: [],
      paused: false,
      // Nothing is ever retried here: a test that holds a key clears it.
      holds: new Holds<ConsumeMessage, HeldDelivery>(
        { maxMessages: 128, maxBytes: DEFAULT_HOLD_MAX_BYTES, maxPerKey: 16, backoff: DEFAULT_HOLD_BACKOFF },
        { retry: () => undefined, onFull: () => undefined },
      ),
      gate: Promise.resolve(),
      parkingRefused: 0,
    },
  };
}

function delivery(tag: number): ConsumeMessage {
  return { fields: { deliveryTag: tag }, properties: { headers: {} }, content: Buffer.alloc(0) } as ConsumeMessage;
}

const TO = recipientKey('rik-bot');

const DECISION: RouteDecision & { result: 'routed' } = {
  messageId: '0f8fad5b-d9cb-469f-a165-70867728950e',
  sender: 'ria-bot',
  recipient: 'rik-bot',
  result: 'routed',
  reason: null,
  policyRevision: '1',
  policyReasons: ['GRANT'],
  configRevision: 1,
  at: '2026-01-01T00:00:00.000Z',
};

/** Lets every settled promise's continuation and the ack batcher's turn run. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function outcomes(audit: AuditSink): Outcomes {
  return new Outcomes({
    nodeId: 'node-a',
    now: Date.now,
    logger: pino({ level: 'silent' }),
    metrics: new RouterMetrics(new Registry()),
    audit,
  });
}

describe('sendAndSettle: the publish and its audit record in one round trip', () => {
  it('publishes while the record is written, and acks only once both are confirmed', async () => {
    const audit = new HeldAudit();
    const { session: s, acked } = session();
    const message = delivery(1);
    s.acks.track(message);
    let sent: (value: Refusal | undefined) => void = () => undefined;
    let sendCalled = false;
    const settled = outcomes(audit).sendAndSettle(s, message, performance.now(), DECISION, TO, () => {
      sendCalled = true;
      return new Promise((resolve) => (sent = resolve));
    });
    await turn();
    assert.ok(sendCalled, 'the publish does not wait for the record');
    assert.equal(audit.appended.length, 1, 'the record does not wait for the publish');
    assert.equal(audit.appended[0]?.result, 'routed');
    audit.confirm();
    await turn();
    assert.deepEqual(acked, [], 'no ack before the publish is confirmed');
    sent(undefined);
    assert.equal(await settled, undefined);
    await turn();
    assert.deepEqual(acked, [1]);
  });

  it('waits for the record after the publish is confirmed, and holds the message when the record fails', async () => {
    const audit = new HeldAudit();
    const { session: s, acked } = session();
    const message = delivery(2);
    s.acks.track(message);
    const settled = outcomes(audit).sendAndSettle(s, message, performance.now(), DECISION, TO, () =>
      Promise.resolve(undefined),
    );
    await turn();
    assert.deepEqual(acked, [], 'no ack before the record is confirmed');
    audit.fail();
    await assert.rejects(settled, (error: unknown) => error instanceof Transient && error.reason === 'audit');
    await turn();
    assert.deepEqual(acked, []);
  });

  it('returns a refused publish unacked, and a publish that failed outright is the error', async () => {
    const audit = new HeldAudit();
    const { session: s, acked } = session();
    const refusal: Refusal = { reason: 'RECIPIENT_UNREACHABLE', detail: 'no queue for rik-bot on node node-a' };
    const refused = outcomes(audit).sendAndSettle(s, delivery(3), performance.now(), DECISION, TO, () =>
      Promise.resolve(refusal),
    );
    audit.confirm();
    assert.deepEqual(await refused, refusal);
    const lost = new Transient('broker', 'the channel closed before the confirm');
    const failed = outcomes(audit).sendAndSettle(s, delivery(4), performance.now(), DECISION, TO, () =>
      Promise.reject(lost),
    );
    // The record failing too does not hide why the publish failed.
    audit.fail();
    await assert.rejects(failed, (error: unknown) => error === lost);
    await turn();
    assert.deepEqual(acked, []);
  });

  it('while the destination is held, writes the record only after the publish is confirmed', async () => {
    const audit = new HeldAudit();
    const { session: s, acked } = session();
    // Another message waits for rik-bot's full queue: this one's publish will likely be Held too.
    s.holds.hold(TO, delivery(9), { handler: 'route', takenAt: 0 }, 0);
    const message = delivery(5);
    s.acks.track(message);
    let sent: (value: Refusal | undefined) => void = () => undefined;
    const settled = outcomes(audit).sendAndSettle(
      s,
      message,
      performance.now(),
      DECISION,
      TO,
      () => new Promise((resolve) => (sent = resolve)),
    );
    await turn();
    assert.equal(audit.appended.length, 0, 'no record for a publish that may be held again');
    sent(undefined);
    await turn();
    assert.equal(audit.appended.length, 1);
    audit.confirm();
    assert.equal(await settled, undefined);
    await turn();
    assert.deepEqual(acked, [5]);
    s.holds.clear();
  });
});
