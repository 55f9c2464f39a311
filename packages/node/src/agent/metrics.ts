/**
 * The agent's Prometheus metrics and its health endpoint, on one small HTTP
 * listener (`metrics.listen`): `GET /metrics` and `GET /healthz`. Health is
 * "serving a configuration", not "connected to CentOps": a node on its last
 * good document while CentOps is down is healthy by design.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';

export class AgentMetrics {
  readonly registry: Registry;
  readonly configRevision: Gauge;
  readonly refusals: Counter<'reason'>;
  readonly certificateExpiry: Gauge;
  readonly centopsConnected: Gauge;
  readonly routerRestarts: Counter;
  readonly linkUp: Gauge<'peer'>;
  readonly linkBacklog: Gauge<'peer'>;
  #linkPeers = new Set<string>();

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    this.configRevision = new Gauge({
      name: 'dmr_node_config_revision',
      help: 'Revision of the configuration the node runs (-1: none yet)',
      registers: [registry],
    });
    this.configRevision.set(-1);
    this.refusals = new Counter({
      name: 'dmr_node_config_refusals_total',
      help: 'Configuration documents refused, by error code',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.certificateExpiry = new Gauge({
      name: 'dmr_node_certificate_expiry_seconds',
      help: "Unix time at which the node's certificate expires",
      registers: [registry],
    });
    this.centopsConnected = new Gauge({
      name: 'dmr_node_centops_connected',
      help: '1 while the configuration feed is connected to CentOps',
      registers: [registry],
    });
    this.centopsConnected.set(0);
    this.routerRestarts = new Counter({
      name: 'dmr_node_router_restarts_total',
      help: 'Router child processes restarted after an unexpected exit',
      registers: [registry],
    });
    this.linkUp = new Gauge({
      name: 'dmr_link_up',
      help: "1 while the link's shovel to the peer runs; 0 while it starts, failed or drains",
      labelNames: ['peer'],
      registers: [registry],
    });
    this.linkBacklog = new Gauge({
      name: 'dmr_link_backlog_messages',
      help: 'Messages waiting in dmr.outbound.<peer> (the broker statistics, up to a few seconds old)',
      labelNames: ['peer'],
      registers: [registry],
    });
  }

  /** Shows exactly `links`: a peer no longer linked loses its series. */
  setLinks(links: ReadonlyArray<{ peer: string; state: string; messages: number }>): void {
    const peers = new Set(links.map((link) => link.peer));
    for (const peer of this.#linkPeers) {
      if (peers.has(peer)) continue;
      this.linkUp.remove({ peer });
      this.linkBacklog.remove({ peer });
    }
    this.#linkPeers = peers;
    for (const link of links) {
      this.linkUp.set({ peer: link.peer }, link.state === 'running' ? 1 : 0);
      this.linkBacklog.set({ peer: link.peer }, link.messages);
    }
  }
}

export interface HealthSource {
  /** Undefined while healthy; otherwise why not. */
  unhealthyReason(): string | undefined;
}

/** Serves /metrics and /healthz on `listen` (host:port); resolves with the bound address. */
export async function serveMetrics(
  listen: string,
  registry: Registry,
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
