/** Prometheus metrics of the bridge (`dmr_bridge_*`), on their own registry so tests and embedders stay isolated. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { latencyBuckets } from '@dmr/core';

const LATENCY_BUCKETS = latencyBuckets(0.001, 30);

export class BridgeMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'status'>;
  /** POST /v1/messages: from the request to the answer, by result. */
  readonly sendDuration: Histogram<'result'>;
  readonly deliveries: Counter<'result'>;
  readonly deliveryAttempts: Counter<'outcome'>;
  readonly deliveryDuration: Histogram;
  readonly deliveriesInFlight: Gauge;
  readonly sendsInFlight: Gauge;
  readonly reports: Counter<'reason'>;
  readonly reportPosts: Counter<'result'>;
  readonly brokerConnected: Gauge;
  readonly certificateExpiry: Gauge;

  constructor(registry: Registry = new Registry(), options: { defaultMetrics?: boolean } = {}) {
    this.registry = registry;
    const registers = [registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'dmr_bridge_' });
    this.requests = new Counter({
      name: 'dmr_bridge_http_requests_total',
      help: 'HTTP requests answered, by route and status code',
      labelNames: ['route', 'status'],
      registers,
    });
    this.sendDuration = new Histogram({
      name: 'dmr_bridge_send_duration_seconds',
      help: 'POST /v1/messages from request to answer (after the broker confirm), by result',
      labelNames: ['result'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.deliveries = new Counter({
      name: 'dmr_bridge_deliveries_total',
      help: 'Received messages by final outcome: delivered to the endpoint, dead_lettered or invalid',
      labelNames: ['result'],
      registers,
    });
    this.deliveryAttempts = new Counter({
      name: 'dmr_bridge_delivery_attempts_total',
      help: 'POSTs to the endpoint, by outcome (2xx, status class, timeout, network)',
      labelNames: ['outcome'],
      registers,
    });
    this.deliveryDuration = new Histogram({
      name: 'dmr_bridge_delivery_duration_seconds',
      help: 'From receipt of a message to its final outcome at the endpoint (retries included)',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.deliveriesInFlight = new Gauge({
      name: 'dmr_bridge_deliveries_in_flight',
      help: 'Messages being delivered or waiting for a retry (at most delivery.concurrency)',
      registers,
    });
    this.sendsInFlight = new Gauge({
      name: 'dmr_bridge_sends_in_flight',
      help: 'POST /v1/messages waiting for the node’s confirm or verdict (at most send.maxInFlight)',
      registers,
    });
    this.reports = new Counter({
      name: 'dmr_bridge_reports_total',
      help: 'Delivery reports from the node about messages this bridge sent, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.reportPosts = new Counter({
      name: 'dmr_bridge_report_posts_total',
      help: 'Late delivery reports POSTed to reports.url, by result (delivered, failed after retries, dropped past reports.maxPending)',
      labelNames: ['result'],
      registers,
    });
    this.brokerConnected = new Gauge({
      name: 'dmr_bridge_broker_connected',
      help: '1 while the connection to the DMR node is open',
      registers,
    });
    this.certificateExpiry = new Gauge({
      name: 'dmr_bridge_certificate_expiry_seconds',
      help: 'Seconds until the client certificate expires',
      registers,
    });
  }
}
