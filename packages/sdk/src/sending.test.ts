/** Sending without a broker: confirms, negative confirms, re-sends after a reconnect, close(). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Options } from 'amqplib';
import { DmrError, isDmrError, parseTraceparent } from '@dmr/core';
import { zeroClientStats } from './client-types.js';
import type { ConnectionView, Session } from './connection.js';
import { NACK_RETRY_AFTER_SECONDS, Sending } from './sending.js';
import { INGRESS_EXCHANGE, RECIPIENT_HEADER, VERSION_HEADER } from './wire.js';

interface Publish {
  exchange: string;
  options: Options.Publish;
  settle: (error: unknown) => void;
}

/** A session whose publisher records each publish; the test confirms or nacks it. */
function fakeSession(seq: number): { session: Session; publishes: Publish[] } {
  const publishes: Publish[] = [];
  const publisher = {
    publish: (
      exchange: string,
      _routingKey: string,
      _content: Buffer,
      options: Options.Publish,
      settle: (error: unknown) => void,
    ) => {
      // amqplib keeps using the options object it was given: record a copy.
      publishes.push({ exchange, options: { ...options }, settle });
      return true;
    },
  };
  return { session: { seq, alive: true, publisher } as unknown as Session, publishes };
}

function setup(maxSendAttempts?: number) {
  const first = fakeSession(1);
  const connection: ConnectionView & { session: Session | undefined } = {
    id: 'ria-bot',
    node: 'node-a',
    userId: 'spiffe://dmr.test/client/ria-bot',
    state: 'open',
    session: first.session,
    checkCertificate: () => Promise.resolve(),
    ownKeys: () => [],
  };
  const counters = zeroClientStats();
  const sending = new Sending(
    connection,
    {
      url: 'amqps://127.0.0.1:5671',
      node: 'node-a',
      id: 'ria-bot',
      tls: { cert: '', key: '', ca: '' },
      ...(maxSendAttempts === undefined ? {} : { maxSendAttempts }),
    },
    counters,
    () => false,
  );
  return { sending, connection, first, counters };
}

function code(error: unknown): string | undefined {
  return isDmrError(error) ? error.code : undefined;
}

describe('Sending', () => {
  it('publishes to the ingress with the contract properties and resolves on the confirm', async (t) => {
    // A frozen clock: the expiration is the TTL minus the time since send(), which must be 0 here.
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const { sending, first, counters } = setup();
    const sent = sending.send({ to: 'rik-bot', type: 'ChatMessage', body: { text: 'tere' }, ttl: 60_000 });
    // Without protection nothing is awaited before the publish: it is on the wire when send() returns.
    const [publish] = first.publishes;
    assert.ok(publish !== undefined);
    assert.equal(publish.exchange, INGRESS_EXCHANGE);
    assert.equal(publish.options.userId, 'spiffe://dmr.test/client/ria-bot');
    assert.equal(publish.options.headers?.[RECIPIENT_HEADER], 'rik-bot');
    assert.equal(publish.options.headers?.[VERSION_HEADER], 1);
    assert.equal(publish.options.contentType, 'application/json');
    assert.equal(publish.options.expiration, '60000');
    assert.equal(sending.unconfirmed, 1);
    publish.settle(null);
    assert.equal(await sent, publish.options.messageId);
    assert.equal(sending.unconfirmed, 0);
    assert.equal(counters.confirmed, 1);
  });

  it('rejects on a negative confirm with MESSAGE_NOT_ACCEPTED: retryable, with a retry-after hint and the id', async () => {
    const { sending, first } = setup();
    const sent = sending.send({ to: 'rik-bot', type: 'ChatMessage', body: 'x' });
    const id = first.publishes[0]?.options.messageId;
    first.publishes[0]?.settle(new Error('message nacked'));
    await assert.rejects(sent, (error) => {
      assert.ok(error instanceof DmrError);
      assert.equal(error.code, 'MESSAGE_NOT_ACCEPTED');
      assert.equal(error.retryable, true);
      assert.deepEqual(error.details, { messageId: id, retryAfterSeconds: NACK_RETRY_AFTER_SECONDS });
      assert.match(error.hint ?? '', /same messageId/);
      return true;
    });
    assert.equal(sending.unconfirmed, 0, 'nothing left pending: the caller owns the retry');
  });

  it('publishes an unconfirmed send again on the next session with the same id, up to maxSendAttempts', async () => {
    const { sending, connection, first, counters } = setup(2);
    const sent = sending.send({ to: 'rik-bot', type: 'ChatMessage', body: 'x' });
    const id = first.publishes[0]?.options.messageId;
    assert.equal(typeof id, 'string');
    // The channel died before the confirm: amqplib settles with its close error; the send stays pending.
    first.publishes[0]?.settle(new Error('channel closed'));
    assert.equal(sending.unconfirmed, 1);

    const second = fakeSession(2);
    connection.session = second.session;
    sending.resend(second.session);
    assert.equal(second.publishes[0]?.options.messageId, id);
    assert.equal(counters.resent, 1);
    assert.equal(sending.wasResent(id as string, Date.now()), true);
    // A late confirm of the first publish is ignored: only the latest publish counts.
    first.publishes[0]?.settle(null);
    assert.equal(sending.unconfirmed, 1);

    const third = fakeSession(3);
    sending.resend(third.session);
    assert.equal(third.publishes.length, 0);
    await assert.rejects(sent, (error) => code(error) === 'MESSAGE_NOT_ACCEPTED');
  });

  it('refuses headers DMR or the SDK set', async () => {
    const { sending } = setup();
    for (const name of ['dmr-sender', RECIPIENT_HEADER, VERSION_HEADER]) {
      await assert.rejects(
        sending.send({ to: 'rik-bot', type: 'ChatMessage', body: 'x', headers: { [name]: 'x' } }),
        (error) => code(error) === 'INVALID_ARGUMENT',
      );
    }
  });

  it('refuses a traceparent that is not W3C version 00, and sends a valid one as given', async () => {
    const { sending, first } = setup();
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    for (const bad of ['tp', traceparent.toUpperCase(), `01${traceparent.slice(2)}`, 42]) {
      await assert.rejects(
        sending.send({ to: 'rik-bot', type: 'ChatMessage', body: 'x', headers: { traceparent: bad } }),
        (error) => code(error) === 'INVALID_ARGUMENT',
      );
    }
    assert.equal(first.publishes.length, 0);
    const sent = sending.send({ to: 'rik-bot', type: 'ChatMessage', body: 'x', headers: { traceparent } });
    // Without protection the publish is on the wire when send() returns.
    assert.equal(first.publishes[0]?.options.headers?.traceparent, traceparent);
    first.publishes[0]?.settle(null);
    await sent;
  });

  it('starts a new sampled trace when the message has none', async () => {
    const { sending, first } = setup();
    const plain = sending.send({ to: 'rik-bot', type: 'ChatMessage', body: 'x' });
    const started = parseTraceparent(first.publishes[0]?.options.headers?.traceparent);
    assert.ok(started !== undefined, 'a valid traceparent was created');
    assert.equal(started.flags, '01', 'sampled, so traced hops record it');
    first.publishes[0]?.settle(null);
    await plain;
    // Continuing the application's active span: edgeTraceContext's test in @dmr/core (tracing.test.ts).
  });

  it('drain() rejects what is still unconfirmed at the deadline with CLIENT_CLOSED', async () => {
    const { sending } = setup();
    const sent = sending.send({ to: 'rik-bot', type: 'ChatMessage', body: 'x' });
    const rejected = assert.rejects(sent, (error) => code(error) === 'CLIENT_CLOSED');
    await sending.drain(Date.now());
    await rejected;
    assert.equal(sending.unconfirmed, 0);
  });
});
