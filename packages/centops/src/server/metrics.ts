/**
 * CentOps' Prometheus metrics (`dmr_centops_*`), on a registry of its own.
 * Counters move with what CentOps does (requests, certificates, tokens);
 * the revision, the active policy version and the feed's subscribers are
 * read from the store and the hub when scraped, so every replica shows the
 * shared truth. Served on a plain-HTTP listener apart from the mutual-TLS
 * API (`metricsListen`, docs/decisions/0033-metrics-exposure.md).
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { EVENTS_COUNTER, latencyBuckets, type PrincipalKind } from '@dmr/core';
import type { CertificateEvents, IssuedVia } from './certificates.js';

/** What the scrape-time gauges read. */
export interface CentOpsMetricsSources {
  revision(): Promise<number>;
  policyVersion(): Promise<number | undefined>;
  feedSubscribers(): number;
  /** CentOps' own audit log no longer matches its checkpoint (witness.ts). */
  auditLogBroken(): boolean;
}

const LATENCY_BUCKETS = latencyBuckets(0.001, 30);

export class CentOpsMetrics implements CertificateEvents {
  readonly registry: Registry;
  readonly requestSeconds: Histogram<'listener' | 'method' | 'route' | 'status'>;
  readonly certificatesIssued: Counter<'kind' | 'via'>;
  readonly tokensUsed: Counter<'kind'>;
  /** dmr_events_total: what EventRecorder counts (docs/events.md). */
  readonly events: Counter<'kind' | 'reason'>;
  #sources: CentOpsMetricsSources | undefined;

  constructor(registry: Registry = new Registry(), options: { defaultMetrics?: boolean } = {}) {
    this.registry = registry;
    const registers = [registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'dmr_centops_' });
    this.requestSeconds = new Histogram({
      name: 'dmr_centops_http_request_duration_seconds',
      help: 'CentOps HTTP requests from arrival to the end of the answer, by listener (api, enrol), method, route template and status class (2xx, 4xx, 5xx; a feed stream counts when it ends)',
      labelNames: ['listener', 'method', 'route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.certificatesIssued = new Counter({
      name: 'dmr_centops_certificates_issued_total',
      help: 'Certificates the CA issued, by kind (node, client, operator) and how (enrol, renew, operator)',
      labelNames: ['kind', 'via'],
      registers,
    });
    this.tokensUsed = new Counter({
      name: 'dmr_centops_enrolment_tokens_used_total',
      help: 'One-time enrolment tokens spent on an enrolment, by the kind of principal they enrolled',
      labelNames: ['kind'],
      registers,
    });
    this.events = new Counter({ ...EVENTS_COUNTER, labelNames: [...EVENTS_COUNTER.labelNames], registers });
    const sources = () => this.#sources;
    new Gauge({
      name: 'dmr_centops_revision',
      help: "The registry's current configuration revision",
      registers,
      async collect() {
        const source = sources();
        if (source !== undefined) this.set(await source.revision());
      },
    });
    new Gauge({
      name: 'dmr_centops_policy_version',
      help: 'The active policy version (0: none stored yet); versions are numbered 1, 2, … so it is also their count',
      registers,
      async collect() {
        const source = sources();
        if (source !== undefined) this.set((await source.policyVersion()) ?? 0);
      },
    });
    new Gauge({
      name: 'dmr_centops_audit_log_broken',
      help: "1 once CentOps' own audit table no longer matches its signed checkpoint (an entry edited or deleted); no further checkpoint is signed",
      registers,
      collect() {
        const source = sources();
        if (source !== undefined) this.set(source.auditLogBroken() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'dmr_centops_feed_subscribers',
      help: 'Configuration streams and long-polls open now (each waits for the next revision)',
      registers,
      collect() {
        const source = sources();
        if (source !== undefined) this.set(source.feedSubscribers());
      },
    });
  }

  /** What the gauges read when scraped (the server's store, policies and hub). */
  watch(sources: CentOpsMetricsSources): void {
    this.#sources = sources;
  }

  issued(kind: PrincipalKind | 'operator', via: IssuedVia): void {
    this.certificatesIssued.inc({ kind, via });
  }

  tokenUsed(kind: PrincipalKind): void {
    this.tokensUsed.inc({ kind });
  }

  /**
   * Times every request of `app`. Every label is bounded whatever a caller
   * sends: the route is fastify's template (`unmatched` for any URL no route
   * takes), never the URL; the method one of the methods CentOps serves, else
   * `other`; the status its class (`2xx`…`5xx`).
   */
  instrument(app: FastifyInstance, listener: 'api' | 'enrol'): void {
    app.addHook('onResponse', (request, reply, done) => {
      this.requestSeconds.observe(
        {
          listener,
          method: SERVED_METHODS.has(request.method) ? request.method : 'other',
          route: request.routeOptions.url ?? 'unmatched',
          status: statusClass(reply.statusCode),
        },
        reply.elapsedTime / 1000,
      );
      done();
    });
  }
}

/** The methods CentOps' routes use (HEAD with GET); anything else a caller sends is labelled `other`. */
const SERVED_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** `2xx`, `4xx`…: a bounded label, enough for error rates (the route says which call). */
function statusClass(code: number): string {
  return code >= 100 && code <= 599 ? `${Math.floor(code / 100)}xx` : 'other';
}
