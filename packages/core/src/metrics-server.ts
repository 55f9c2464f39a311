/**
 * One small plain-HTTP listener for a process's Prometheus metrics and its
 * health: `GET /metrics` and `GET /healthz`, nothing else. The agent, each
 * router and CentOps serve their registries with it (docs/decisions/0033).
 * The registry is anything with prom-client's `metrics()` and
 * `contentType`, so core needs no metrics library.
 *
 * Nothing authenticates a caller here, so what one can cost is bounded:
 * at most METRICS_MAX_CONNECTIONS connections, a request must arrive within
 * METRICS_REQUEST_TIMEOUT_MS, and scrapes that arrive while one is being
 * rendered share that rendering (a registry's collect may read a store:
 * CentOps' revision and policy gauges), so a flood of GETs costs one render
 * at a time. A failed render answers the catalogue code only, never the
 * error's text.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDmrError } from './errors.js';

/** Connections the listener holds at once; more are dropped (Prometheus and an operator need a few). */
export const METRICS_MAX_CONNECTIONS = 32;
/** A request's headers and body must have arrived by then. */
export const METRICS_REQUEST_TIMEOUT_MS = 10_000;

/** What serves the exposition text: a prom-client Registry. */
export interface MetricsSource {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export interface HealthSource {
  /** Undefined while healthy; otherwise why not. */
  unhealthyReason(): string | undefined;
}

export interface MetricsServer {
  server: Server;
  url: string;
  /** Drops open connections (scrapers keep them alive) and stops listening. */
  close(): Promise<void>;
}

/** Serves /metrics and /healthz on `listen` (host:port); resolves with the bound address. */
export async function serveMetrics(
  listen: string,
  registry: MetricsSource,
  health: HealthSource,
): Promise<MetricsServer> {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(colon + 1));
  let rendering: Promise<string> | undefined;
  const render = (): Promise<string> =>
    (rendering ??= registry.metrics().finally(() => {
      rendering = undefined;
    }));
  const server = createServer(
    { requestTimeout: METRICS_REQUEST_TIMEOUT_MS, headersTimeout: METRICS_REQUEST_TIMEOUT_MS },
    (request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      if (request.method === 'GET' && path === '/metrics') {
        render().then(
          (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (error: unknown) =>
            response
              .writeHead(500, { 'content-type': 'application/json' })
              .end(JSON.stringify({ status: 'error', code: isDmrError(error) ? error.code : 'INTERNAL' })),
        );
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
    },
  );
  server.maxConnections = METRICS_MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    server,
    url: `http://${shown}:${address.port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
