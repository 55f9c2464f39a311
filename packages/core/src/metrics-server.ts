/**
 * One small plain-HTTP listener for a process's Prometheus metrics and its
 * health: `GET /metrics` and `GET /healthz`, nothing else. The agent, each
 * router and CentOps serve their registries with it (docs/decisions/0033).
 * The registry is anything with prom-client's `metrics()` and
 * `contentType`, so core needs no metrics library.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What serves the exposition text: a prom-client Registry. */
export interface MetricsSource {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export interface HealthSource {
  /** Undefined while healthy; otherwise why not. */
  unhealthyReason(): string | undefined;
}

/** Serves /metrics and /healthz on `listen` (host:port); resolves with the bound address. */
export async function serveMetrics(
  listen: string,
  registry: MetricsSource,
  health: HealthSource,
): Promise<{ server: Server; url: string }> {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(colon + 1));
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method === 'GET' && path === '/metrics') {
      registry
        .metrics()
        .then((text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text))
        .catch((error: unknown) => response.writeHead(500).end(String(error)));
      return;
    }
    if (request.method === 'GET' && path === '/healthz') {
      const reason = health.unhealthyReason();
      response
        .writeHead(reason === undefined ? 200 : 503, { 'content-type': 'application/json' })
        .end(JSON.stringify(reason === undefined ? { status: 'ok' } : { status: 'unhealthy', reason }));
      return;
    }
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { server, url: `http://${shown}:${address.port}` };
}
