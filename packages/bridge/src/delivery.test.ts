import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DeliveryAborted, DeliveryFailed, EndpointDeliverer, displayUrl, type DeliveryOptions } from './delivery.js';
import { waitFor } from '@dmr/testkit';
import { startTracing } from '@dmr/core';
import { OtlpReceiver } from '@dmr/core/testing';

describe('EndpointDeliverer', () => {
  let server: Server;
  let url: string;
  /** Status per request, in order; 200 after the list runs out. */
  let script: number[] = [];
  let requests = 0;
  let lastAuthorization: string | undefined;
  /** Idempotency-Key of every request, in order. */
  let keys: Array<string | undefined> = [];
  let lastMessageId: string | undefined;
  /** traceparent of every request, in order. */
  let traceparents: Array<string | undefined> = [];

  before(async () => {
    server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        requests += 1;
        lastAuthorization = request.headers.authorization;
        keys.push(request.headers['idempotency-key'] as string | undefined);
        lastMessageId = request.headers['dmr-message-id'] as string | undefined;
        traceparents.push(request.headers.traceparent as string | undefined);
        const status = script.shift() ?? 200;
        response.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const options = (extra: Partial<DeliveryOptions> = {}): DeliveryOptions => ({
    url,
    timeoutMs: 1_000,
    maxAttempts: 4,
    initialDelayMs: 5,
    maxDelayMs: 20,
    deadLetterStatuses: [400, 422],
    ...extra,
  });

  it('with a tracer each POST is a CLIENT span, the child of the message’s traceparent, and the endpoint continues from it', async () => {
    const receiver = await OtlpReceiver.start();
    const tracing = await startTracing({ serviceName: 'dmr-bridge', endpoint: receiver.url, env: {} });
    try {
      script = [503, 200];
      traceparents = [];
      const message = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const deliverer = new EndpointDeliverer(options({ tracer: tracing.tracer }));
      assert.equal(await deliverer.deliver('{}', undefined, 'a-message-id', { traceparent: message }), 2);
      await deliverer.close();
      await tracing.shutdown();
      const spans = receiver.trace('4bf92f3577b34da6a3ce929d0e0e4736');
      assert.deepEqual(
        spans.map((span) => [span.name, span.kind, span.parentSpanId, span.attributes['http.response.status_code']]),
        [
          ['POST', 3, '00f067aa0ba902b7', '503'],
          ['POST', 3, '00f067aa0ba902b7', '200'],
        ],
      );
      assert.equal(spans[0]?.status, 2, 'a 503 is an error');
      assert.equal(spans[1]?.attributes['http.request.resend_count'], '1');
      // What the endpoint got: each attempt's own span as the parent, same trace.
      assert.deepEqual(
        traceparents,
        spans.map((span) => `00-4bf92f3577b34da6a3ce929d0e0e4736-${span.spanId}-01`),
      );
    } finally {
      await receiver.close();
    }
  });

  it('retries until a 2xx', async () => {
    script = [503, 500, 200];
    requests = 0;
    const deliverer = new EndpointDeliverer(options());
    assert.equal(await deliverer.deliver('{}'), 3);
    assert.equal(requests, 3);
    await deliverer.close();
  });

  it('gives up after maxAttempts, and at once on a dead-letter status', async () => {
    script = [503, 503, 503, 503, 503];
    requests = 0;
    const deliverer = new EndpointDeliverer(options());
    await assert.rejects(deliverer.deliver('{}'), (error: unknown) => {
      assert.ok(error instanceof DeliveryFailed);
      assert.equal(error.attempts, 4);
      assert.equal(error.permanent, false);
      return true;
    });
    assert.equal(requests, 4);
    script = [422];
    await assert.rejects(
      deliverer.deliver('{}'),
      (error: unknown) => error instanceof DeliveryFailed && error.permanent,
    );
    await deliverer.close();
  });

  it('stops waiting for the next retry when aborted (shutdown), without dead-lettering', async () => {
    script = [503, 503, 503];
    requests = 0;
    // A back-off far longer than the test: only the abort can end it.
    const deliverer = new EndpointDeliverer(options({ initialDelayMs: 600_000, maxDelayMs: 600_000 }));
    const controller = new AbortController();
    const delivery = deliverer.deliver('{}', controller.signal);
    await waitFor('the first attempt', () => requests >= 1);
    controller.abort();
    await assert.rejects(delivery, (error: unknown) => {
      assert.ok(error instanceof DeliveryAborted);
      assert.equal(error.attempts, 1);
      return true;
    });
    await assert.rejects(deliverer.deliver('{}', controller.signal), DeliveryAborted);
    assert.equal(requests, 1, 'no attempt starts after the abort');
    script = [];
    await deliverer.close();
  });

  it('sends the message id as Idempotency-Key (and dmr-message-id) on every attempt, the same on a retry', async () => {
    const deliverer = new EndpointDeliverer(options());
    const id = '0b5d3c1e-8f7a-4c2b-9d6e-1a2b3c4d5e6f';
    script = [503];
    keys = [];
    assert.equal(await deliverer.deliver('{}', undefined, id), 2);
    assert.deepEqual(keys, [`"${id}"`, `"${id}"`], 'a Structured Field string, as the IETF draft has it');
    assert.equal(lastMessageId, id);
    keys = [];
    assert.equal(await deliverer.deliver('{}'), 1);
    assert.deepEqual(keys, [undefined], 'no id, no key');
    await deliverer.close();
  });

  it('sends credentials of the endpoint URL as Basic auth, unless a header sets Authorization', async () => {
    const withUser = new EndpointDeliverer(options({ url: url.replace('http://', 'http://bot%40ria:s3cr%3At@') }));
    assert.equal(await withUser.deliver('{}'), 1);
    assert.equal(lastAuthorization, `Basic ${Buffer.from('bot@ria:s3cr:t').toString('base64')}`);
    await withUser.close();
    const withHeader = new EndpointDeliverer(
      options({ url: url.replace('http://', 'http://bot:pw@'), headers: { Authorization: 'Bearer abc' } }),
    );
    assert.equal(await withHeader.deliver('{}'), 1);
    assert.equal(lastAuthorization, 'Bearer abc');
    await withHeader.close();
    assert.equal(displayUrl('https://bot:s3cret@ria.example/in'), 'https://***:***@ria.example/in');
    assert.equal(displayUrl('https://t0ken@ria.example/in'), 'https://***@ria.example/in');
    assert.equal(
      displayUrl('https://ria.example/in?access_token=t0k&page=2&X-Amz-Signature=s1g'),
      'https://ria.example/in?access_token=***&page=2&X-Amz-Signature=***',
    );
    assert.equal(displayUrl('not a url s3cret'), '***');
    assert.equal(displayUrl('https://ria.example/in'), 'https://ria.example/in');
  });

  it('treats a refused connection as retryable', async () => {
    const deliverer = new EndpointDeliverer(options({ url: 'http://127.0.0.1:1/x', maxAttempts: 2 }));
    await assert.rejects(deliverer.deliver('{}'), (error: unknown) => {
      assert.ok(error instanceof DeliveryFailed);
      assert.equal(error.last.status, undefined);
      return true;
    });
    await deliverer.close();
  });

  it('backs off exponentially with jitter, capped, honouring Retry-After up to the cap', async () => {
    const low = new EndpointDeliverer(options({ initialDelayMs: 100, maxDelayMs: 1_000 }), undefined, () => 0);
    const high = new EndpointDeliverer(options({ initialDelayMs: 100, maxDelayMs: 1_000 }), undefined, () => 1);
    const none = { ok: false, status: 503, retryAfterSeconds: undefined };
    assert.deepEqual(
      [0, 1, 2, 3, 4, 10].map((retry) => low.delay(retry, none)),
      [50, 100, 200, 400, 500, 500],
    );
    assert.deepEqual(
      [0, 1, 2, 3, 4, 10].map((retry) => high.delay(retry, none)),
      [100, 200, 400, 800, 1_000, 1_000],
    );
    assert.equal(low.delay(0, { ...none, retryAfterSeconds: 0.3 }), 300);
    assert.equal(low.delay(0, { ...none, retryAfterSeconds: 3600 }), 1_000);
    await low.close();
    await high.close();
  });
});
