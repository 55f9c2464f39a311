import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { DmrError } from './errors.js';
import { METRICS_MAX_CONNECTIONS, serveMetrics } from './metrics-server.js';

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

describe('serveMetrics bounds what an unauthenticated caller can cost', () => {
  it('renders once for scrapes that arrive while a rendering is under way', async () => {
    let renders = 0;
    let finish: (text: string) => void = () => undefined;
    const served = await serveMetrics(
      '127.0.0.1:0',
      {
        metrics: () => {
          renders += 1;
          return new Promise<string>((resolve) => (finish = resolve));
        },
        contentType: 'text/plain',
      },
      { unhealthyReason: () => undefined },
    );
    try {
      let arrived = 0;
      const allArrived = new Promise<void>((resolve) =>
        served.server.on('request', () => {
          arrived += 1;
          if (arrived === 3) resolve();
        }),
      );
      const scrapes = [1, 2, 3].map(() => fetch(`${served.url}/metrics`).then((response) => response.text()));
      await allArrived;
      finish('dmr_x 1\n');
      assert.deepEqual(await Promise.all(scrapes), ['dmr_x 1\n', 'dmr_x 1\n', 'dmr_x 1\n']);
      assert.equal(renders, 1);
      // Once answered, the next scrape renders afresh.
      const next = fetch(`${served.url}/metrics`).then((response) => response.text());
      await new Promise<void>((resolve) => served.server.once('request', () => resolve()));
      finish('dmr_x 2\n');
      assert.equal(await next, 'dmr_x 2\n');
      assert.equal(renders, 2);
    } finally {
      await served.close();
    }
  });

  it('answers a failed rendering with the catalogue code only, never the error text', async () => {
    let failure: Error = new Error('connect postgres://dmr:hunter2@db.internal/dmr failed');
    const served = await serveMetrics(
      '127.0.0.1:0',
      { metrics: () => Promise.reject(failure), contentType: 'text/plain' },
      { unhealthyReason: () => undefined },
    );
    try {
      const response = await fetch(`${served.url}/metrics`);
      assert.equal(response.status, 500);
      const text = await response.text();
      assert.doesNotMatch(text, /hunter2|postgres/);
      assert.deepEqual(JSON.parse(text), { status: 'error', code: 'INTERNAL' });
      failure = new DmrError('STORE_UNAVAILABLE', 'the store at db.internal does not answer');
      assert.deepEqual(await (await fetch(`${served.url}/metrics`)).json(), {
        status: 'error',
        code: 'STORE_UNAVAILABLE',
      });
    } finally {
      await served.close();
    }
  });

  it(`drops connections beyond ${METRICS_MAX_CONNECTIONS}`, { timeout: 30_000 }, async () => {
    const served = await serveMetrics(
      '127.0.0.1:0',
      { metrics: () => Promise.resolve(''), contentType: 'text/plain' },
      { unhealthyReason: () => undefined },
    );
    const port = (served.server.address() as AddressInfo).port;
    const sockets: Socket[] = [];
    try {
      let accepted = 0;
      const allAccepted = new Promise<void>((resolve) =>
        served.server.on('connection', () => {
          accepted += 1;
          if (accepted === METRICS_MAX_CONNECTIONS) resolve();
        }),
      );
      for (let index = 0; index < METRICS_MAX_CONNECTIONS; index += 1) sockets.push(connect(port, '127.0.0.1'));
      await allAccepted;
      const dropped = once(served.server, 'drop');
      const extra = connect(port, '127.0.0.1');
      sockets.push(extra);
      extra.on('error', () => undefined);
      await dropped;
      await once(extra, 'close');
      assert.ok(sockets.slice(0, METRICS_MAX_CONNECTIONS).every((socket) => !socket.destroyed));
    } finally {
      for (const socket of sockets) socket.destroy();
      await served.close();
    }
  });
});
