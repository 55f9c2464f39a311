import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { jaegerConfig, locateJaeger, tracingEnv } from './jaeger.js';

describe('Jaeger for dmr up --observability', () => {
  it('listens only on the loopback ports it was given: OTLP/HTTP in, query API and UI out, no metrics port', () => {
    const config = parse(jaegerConfig({ otlp: 52001, ui: 52301, queryGrpc: 52601 })) as {
      receivers: { otlp: { protocols: Record<string, { endpoint: string }> } };
      extensions: { jaeger_query: { http: { endpoint: string }; grpc: { endpoint: string } } };
      service: { telemetry: { metrics: { level: string } }; pipelines: { traces: { receivers: string[] } } };
    };
    assert.deepEqual(config.receivers.otlp.protocols, { http: { endpoint: '127.0.0.1:52001' } });
    assert.equal(config.extensions.jaeger_query.http.endpoint, '127.0.0.1:52301');
    assert.equal(config.extensions.jaeger_query.grpc.endpoint, '127.0.0.1:52601');
    assert.equal(config.service.telemetry.metrics.level, 'none');
    assert.deepEqual(config.service.pipelines.traces.receivers, ['otlp']);
  });

  it('finds the binary DMR_JAEGER names; every process then gets the standard OTel variables', () => {
    assert.equal(locateJaeger({ DMR_JAEGER: '/bin/true', PATH: '', HOME: '/nonexistent' }), '/bin/true');
    const env = tracingEnv('http://127.0.0.1:52001', { PATH: '/usr/bin', OTEL_SDK_DISABLED: 'true' });
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://127.0.0.1:52001');
    assert.equal(env.OTEL_SDK_DISABLED, 'false', 'a disabling variable from the shell would silently drop every span');
    assert.equal(env.PATH, '/usr/bin');
  });
});
