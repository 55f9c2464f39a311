/**
 * CentOps' request spans (decision 0032) over a real server (SQLite, real
 * TLS): one SERVER span per API request named by the route template, the
 * child of the caller's valid traceparent, a new trace for a malformed one;
 * no URL ids, query or principal in it. The exporter is the real one,
 * against the OTLP/HTTP receiver of the test kit.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OtlpReceiver, waitFor } from '@dmr/core/testing';
import { tracerProvider } from '@dmr/core/tracing-sdk';
import { startEmptyCentOps, type EmptyCentOps } from './test-support/empty-centops.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = `00-${TRACE}-00f067aa0ba902b7-01`;

describe('CentOps request spans', () => {
  let receiver: OtlpReceiver;
  let provider: ReturnType<typeof tracerProvider>;
  let centops: EmptyCentOps;
  before(async () => {
    receiver = await OtlpReceiver.start();
    provider = tracerProvider({ serviceName: 'dmr-centops', url: `${receiver.url}/v1/traces` });
    centops = await startEmptyCentOps({ label: 'centops-tracing', server: { tracer: provider.tracer } });
  });
  after(async () => {
    await centops?.close();
    await provider?.shutdown();
    await receiver?.close();
  });

  it('a span per request by route template, continuing a valid traceparent, a new trace for garbage', async () => {
    assert.equal(
      (await centops.api('/v1/clients/secret-looking-id', { headers: { traceparent: PARENT } })).status,
      404,
    );
    assert.equal((await centops.api('/v1/organisations', { headers: { traceparent: 'garbage' } })).status, 200);
    const spans = await waitFor('both request spans exported', async () => {
      await provider.flush();
      const get = receiver.spans.find((span) => span.name === 'GET /v1/clients/:id');
      const list = receiver.spans.find((span) => span.name === 'GET /v1/organisations');
      return get !== undefined && list !== undefined ? { get, list } : undefined;
    });
    assert.equal(spans.get.traceId, TRACE);
    assert.equal(spans.get.parentSpanId, '00f067aa0ba902b7');
    assert.equal(spans.get.service, 'dmr-centops');
    assert.equal(spans.get.attributes['http.response.status_code'], '404');
    assert.equal(spans.get.attributes['dmr.listener'], 'api');
    assert.notEqual(spans.list.traceId, TRACE);
    assert.equal(spans.list.parentSpanId, undefined, 'a malformed traceparent starts a new trace');
    assert.ok(!JSON.stringify(receiver.spans).includes('secret-looking-id'), 'no URL ids in spans');
  });
});
