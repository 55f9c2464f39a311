import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { serveMetrics } from './metrics-server.js';

describe('serveMetrics', async () => {
  let reason: string | undefined;
  const served = await serveMetrics(
    '127.0.0.1:0',
    { metrics: () => Promise.resolve('dmr_x 1\n'), contentType: 'text/plain; version=0.0.4' },
    { unhealthyReason: () => reason },
  );
  after(() => new Promise<void>((resolve) => served.server.close(() => resolve())));

  it('serves the exposition text on GET /metrics with the registry content type', async () => {
    const response = await fetch(`${served.url}/metrics`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4');
    assert.equal(await response.text(), 'dmr_x 1\n');
  });

  it('answers /healthz 200 while healthy and 503 with the reason otherwise', async () => {
    assert.equal((await fetch(`${served.url}/healthz`)).status, 200);
    reason = 'no configuration yet';
    const response = await fetch(`${served.url}/healthz`);
    assert.equal(response.status, 503);
    assert.deepEqual(await response.json(), { status: 'unhealthy', reason: 'no configuration yet' });
  });

  it('serves nothing else', async () => {
    assert.equal((await fetch(`${served.url}/v1/anything`)).status, 404);
    assert.equal((await fetch(`${served.url}/metrics`, { method: 'POST' })).status, 404);
  });
});
