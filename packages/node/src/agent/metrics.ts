/**
 * The agent's Prometheus metrics, served with its health endpoint on one
 * small HTTP listener (`metrics.listen`, core's serveMetrics): `GET /metrics`
 * and `GET /healthz`. Health is "serving a configuration", not "connected to
 * CentOps": a node on its last good document while CentOps is down is
 * healthy by design.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { REJECTED_QUEUE } from '@dmr/contract';
import { EVENTS_COUNTER } from '@dmr/core';

/** `dmr.client.<id>.dlq` (contract layout.ts deadLetterQueueName). */
const DEAD_LETTER_QUEUE = /^dmr\.client\.(.+)\.dlq$/;

export class AgentMetrics {
  readonly registry: Registry;
  readonly configRevision: Gauge;
  readonly refusals: Counter<'reason'>;
  readonly certificateExpiry: Gauge;
  readonly centopsConnected: Gauge;
  readonly routerRestarts: Counter;
  readonly linkUp: Gauge<'peer'>;
  readonly linkBacklog: Gauge<'peer'>;
  readonly configRefused: Gauge;
  readonly deadLetters: Gauge<'client'>;
  readonly rejectedQueue: Gauge;
  /** dmr_events_total: what the agent's EventRecorder counts (docs/events.md). */
  readonly events: Counter<'kind' | 'reason'>;
  #linkPeers = new Set<string>();
  #deadLetterClients = new Set<string>();

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    this.configRevision = new Gauge({
      name: 'dmr_node_config_revision',
      help: 'Revision of the configuration the node runs (-1: none yet)',
      registers: [registry],
    });
    this.configRevision.set(-1);
    this.configRefused = new Gauge({
      name: 'dmr_node_config_refused',
      help: 'Set to 1 when the newest configuration document was refused (the node runs its last good one), 0 once one applies',
      registers: [registry],
    });
    this.configRefused.set(0);
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
    this.deadLetters = new Gauge({
      name: 'dmr_node_dead_letter_messages',
      help: "Messages in a local client's dead-letter queue dmr.client.<id>.dlq (broker statistics, read with the links)",
      labelNames: ['client'],
      registers: [registry],
    });
    this.events = new Counter({ ...EVENTS_COUNTER, labelNames: [...EVENTS_COUNTER.labelNames], registers: [registry] });
    // Shown at 0 from the start: the DmrCertificateRenewalOverdue alert's increase() then sees the first event
    // (a series that appears at 1 has no increase).
    for (const reason of ['7d', '1d']) this.events.inc({ kind: 'certificate.expiring', reason }, 0);
    this.rejectedQueue = new Gauge({
      name: 'dmr_node_rejected_messages',
      help: 'Messages in dmr.rejected, the refused messages kept for operators (broker statistics, read with the links)',
      registers: [registry],
    });
  }

  /** The dead-letter and rejected queues' depths from one listing of the vhost; a queue gone loses its series. */
  setQueueDepths(queues: ReadonlyArray<{ name: string; messages: number | undefined }>): void {
    const clients = new Set<string>();
    for (const queue of queues) {
      if (queue.name === REJECTED_QUEUE) {
        if (queue.messages !== undefined) this.rejectedQueue.set(queue.messages);
        continue;
      }
      const client = DEAD_LETTER_QUEUE.exec(queue.name)?.[1];
      if (client === undefined) continue;
      clients.add(client);
      // Before the broker's first statistics the depth is unknown, not zero: keep the last value.
      if (queue.messages !== undefined) this.deadLetters.set({ client }, queue.messages);
    }
    for (const client of this.#deadLetterClients) if (!clients.has(client)) this.deadLetters.remove({ client });
    this.#deadLetterClients = clients;
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

export { serveMetrics, type HealthSource } from '@dmr/core';
