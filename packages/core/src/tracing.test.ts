import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { context, createTraceState, propagation, trace, ROOT_CONTEXT } from '@opentelemetry/api';
import { OtlpReceiver } from './otlp-receiver.js';
import { DmrError } from './errors.js';
import { tracerProvider } from './tracing-sdk.js';
import {
  amqpHeaderGetter,
  amqpHeaderSetter,
  edgeTraceContext,
  inServerSpan,
  inSpan,
  newTraceparent,
  parseTraceparent,
  startTracing,
  traceIdOf,
  tracesEndpoint,
  validTraceparent,
} from './tracing.js';

describe('tracesEndpoint', () => {
  it('is off with nothing configured, or when the standard variables turn the SDK or the exporter off', () => {
    assert.equal(tracesEndpoint(undefined, {}), undefined);
    assert.equal(tracesEndpoint('', { OTEL_EXPORTER_OTLP_ENDPOINT: ' ' }), undefined);
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };
    assert.equal(tracesEndpoint(undefined, { ...on, OTEL_SDK_DISABLED: 'TRUE' }), undefined);
    assert.equal(tracesEndpoint(undefined, { ...on, OTEL_TRACES_EXPORTER: 'none' }), undefined);
  });

  it('appends /v1/traces to a base URL, keeps a full one, and the explicit endpoint wins over the environment', () => {
    assert.equal(
      tracesEndpoint(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318/' }),
      'http://127.0.0.1:4318/v1/traces',
    );
    assert.equal(
      tracesEndpoint(undefined, {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:1',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://b:2/custom',
      }),
      'https://b:2/custom',
    );
    assert.equal(
      tracesEndpoint('http://c:3', { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://b:2/custom' }),
      'http://c:3/v1/traces',
    );
    assert.equal(tracesEndpoint('http://c:3/v1/traces', {}), 'http://c:3/v1/traces');
  });

  it('refuses what is not an http(s) URL, or one with credentials in it, naming where it came from', () => {
    assert.throws(() => tracesEndpoint('localhost:4318', {}), {
      code: 'INVALID_ARGUMENT',
      message: /not a URL|http or https/,
    });
    assert.throws(() => tracesEndpoint(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://x:4317' }), {
      code: 'INVALID_ARGUMENT',
      message: /OTEL_EXPORTER_OTLP_ENDPOINT must be http or https/,
    });
    assert.throws(
      () => tracesEndpoint('http://user:secret@x:4318', {}),
      (error: Error) => {
        assert.doesNotMatch(error.message, /secret/);
        return /credentials/.test(error.message);
      },
    );
  });
});

describe('parseTraceparent', () => {
  const valid = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

  it('reads the fields of a W3C version 00 traceparent', () => {
    assert.deepEqual(parseTraceparent(valid), {
      version: '00',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      flags: '01',
    });
    assert.equal(validTraceparent(valid), valid);
    assert.equal(traceIdOf(valid), '4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('refuses everything else: other versions, zero ids, case, length, extra fields, non-strings', () => {
    for (const bad of [
      undefined,
      null,
      42,
      Buffer.from(valid),
      '',
      'tp',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g',
      '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00',
      ` ${valid}`,
      `${valid}\n`,
    ]) {
      assert.equal(parseTraceparent(bad), undefined, JSON.stringify(String(bad)));
      assert.equal(validTraceparent(bad), undefined, JSON.stringify(String(bad)));
      assert.equal(traceIdOf(bad), undefined, JSON.stringify(String(bad)));
    }
  });

  it('the AMQP header getter hands the propagator a valid traceparent only', () => {
    assert.equal(amqpHeaderGetter.get({ traceparent: valid }, 'traceparent'), valid);
    assert.equal(amqpHeaderGetter.get({ traceparent: valid.replace(/^00/, '01') }, 'traceparent'), undefined);
    assert.equal(amqpHeaderGetter.get({ tracestate: 'a=b' }, 'tracestate'), 'a=b');
  });
});

describe('startTracing', () => {
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await OtlpReceiver.start();
  });
  after(() => receiver.close());

  it('is off without an endpoint: no tracer', async () => {
    const tracing = await startTracing({ serviceName: 'dmr-test', env: {} });
    assert.equal(tracing.tracer, undefined);
    await tracing.shutdown();
  });

  it('exports batched spans over OTLP/HTTP with the service name, and carries context through AMQP headers', async () => {
    const tracing = await startTracing({
      serviceName: 'dmr-test',
      attributes: { 'dmr.node': 'node-a' },
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url },
    });
    assert.equal(tracing.endpoint, `${receiver.url}/v1/traces`);
    const tracer = tracing.tracer;
    assert.ok(tracer !== undefined);
    const parent = tracer.startSpan('parent');
    const headers: Record<string, unknown> = { 'dmr-recipient': 'rik-bot' };
    propagation.inject(trace.setSpan(ROOT_CONTEXT, parent), headers, amqpHeaderSetter);
    assert.equal(traceIdOf(headers.traceparent), parent.spanContext().traceId);
    const extracted = propagation.extract(ROOT_CONTEXT, headers, amqpHeaderGetter);
    const child = tracer.startSpan('child', {}, extracted);
    context.with(trace.setSpan(extracted, child), () => trace.getActiveSpan()?.addEvent('inside'));
    child.end();
    parent.end();
    await tracing.shutdown();

    assert.deepEqual(receiver.refused, []);
    const spans = receiver.trace(parent.spanContext().traceId);
    assert.deepEqual(spans.map((span) => span.name).sort(), ['child', 'parent']);
    const received = spans.find((span) => span.name === 'child');
    assert.equal(received?.parentSpanId, parent.spanContext().spanId);
    assert.equal(received?.service, 'dmr-test');
    assert.equal(received?.attributes['dmr.node'], 'node-a');
    assert.deepEqual(received?.events, ['inside']);
  });
});

describe('inSpan', () => {
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await OtlpReceiver.start();
  });
  after(() => receiver.close());

  it('just runs the work without a tracer', async () => {
    assert.equal(await inSpan(undefined, 'x', {}, (span) => Promise.resolve(span === undefined)), true);
  });

  it('ends the span with the work; a failure marks it an error by its code, never its message', async () => {
    const provider = tracerProvider({ serviceName: 'dmr-test', url: `${receiver.url}/v1/traces` });
    assert.equal(await inSpan(provider.tracer, 'ok', { 'dmr.node': 'node-a' }, () => Promise.resolve(7)), 7);
    await assert.rejects(
      inSpan(provider.tracer, 'failed', {}, () => Promise.reject(new DmrError('CONFIG_INVALID', 'secret detail'))),
      { code: 'CONFIG_INVALID' },
    );
    await provider.shutdown();
    const ok = receiver.spans.find((span) => span.name === 'ok');
    const failed = receiver.spans.find((span) => span.name === 'failed');
    assert.equal(ok?.status, 0);
    assert.equal(ok?.attributes['dmr.node'], 'node-a');
    assert.equal(failed?.status, 2);
    assert.ok(!JSON.stringify(receiver.spans).includes('secret detail'));
  });
});

describe('edgeTraceContext', () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const given = `00-${traceId}-00f067aa0ba902b7-01`;

  it('keeps a valid traceparent with its tracestate', () => {
    assert.deepEqual(edgeTraceContext({ traceparent: given, tracestate: 'vendor=1' }), {
      traceparent: given,
      tracestate: 'vendor=1',
      source: 'given',
      replaced: false,
    });
  });

  it('replaces a malformed one with a new trace and drops its tracestate: garbage is never passed on', () => {
    for (const bad of ['garbage', given.toUpperCase(), `ff${given.slice(2)}`, `${given}-extra`, 7]) {
      const edge = edgeTraceContext({ traceparent: bad, tracestate: 'vendor=1' });
      assert.equal(edge.replaced, true, String(bad));
      assert.equal(edge.source, 'new');
      assert.equal(edge.tracestate, undefined);
      assert.notEqual(parseTraceparent(edge.traceparent), undefined);
      assert.notEqual(traceIdOf(edge.traceparent), traceId);
    }
  });

  it('continues the active span of the calling code, else starts a new sampled trace', () => {
    const active = trace.setSpanContext(ROOT_CONTEXT, {
      traceId,
      spanId: 'b7ad6b7169203331',
      traceFlags: 1,
      traceState: createTraceState('app=2'),
    });
    assert.deepEqual(edgeTraceContext({}, active), {
      traceparent: `00-${traceId}-b7ad6b7169203331-01`,
      tracestate: 'app=2',
      source: 'active-span',
      replaced: false,
    });
    const fresh = edgeTraceContext({}, ROOT_CONTEXT);
    assert.equal(fresh.source, 'new');
    assert.equal(parseTraceparent(fresh.traceparent)?.flags, '01');
    assert.notEqual(edgeTraceContext({}, ROOT_CONTEXT).traceparent, fresh.traceparent);
  });
});

describe('newTraceparent', () => {
  it('never hands out the same ids twice, across refills of its randomness pool', () => {
    // 1,000 traces span several refills of the 170-trace pool: a slice used twice, or a pool not refilled,
    // repeats an id.
    const traceIds = new Set<string>();
    const spanIds = new Set<string>();
    for (let i = 0; i < 1_000; i += 1) {
      const parsed = parseTraceparent(newTraceparent());
      assert.notEqual(parsed, undefined);
      assert.equal(parsed?.flags, '01');
      traceIds.add(parsed?.traceId ?? '');
      spanIds.add(parsed?.spanId ?? '');
    }
    assert.equal(traceIds.size, 1_000);
    assert.equal(spanIds.size, 1_000);
  });
});

describe('inServerSpan', () => {
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await OtlpReceiver.start();
  });
  after(() => receiver.close());

  it('a SERVER span per request, the child of a valid traceparent, a new trace for a malformed one, status recorded', async () => {
    const provider = tracerProvider({ serviceName: 'dmr-test', url: `${receiver.url}/v1/traces` });
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    let inner: string | undefined;
    await inServerSpan(
      provider.tracer,
      'GET /v1/nodes/:id',
      { traceparent: parent },
      {},
      async () => {
        inner = trace.getActiveSpan()?.spanContext().traceId;
        return Promise.resolve();
      },
      () => 200,
    );
    await inServerSpan(
      provider.tracer,
      'POST /v1/x',
      { traceparent: 'garbage' },
      {},
      () => Promise.resolve(),
      () => 503,
    );
    assert.equal(
      await inServerSpan(
        undefined,
        'n',
        {},
        {},
        () => Promise.resolve(3),
        () => 200,
      ),
      3,
    );
    await provider.shutdown();
    assert.equal(inner, '4bf92f3577b34da6a3ce929d0e0e4736', 'the handler runs inside the span');
    const get = receiver.spans.find((span) => span.name === 'GET /v1/nodes/:id');
    const post = receiver.spans.find((span) => span.name === 'POST /v1/x');
    assert.equal(get?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(get?.parentSpanId, '00f067aa0ba902b7');
    assert.equal(get?.attributes['http.response.status_code'], '200');
    assert.equal(post?.parentSpanId, undefined);
    assert.equal(post?.status, 2);
  });
});
