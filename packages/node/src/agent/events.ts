/**
 * The agent's events (docs/events.md): configuration applied or refused,
 * its certificate installed after a renewal, its certificate expiring. Each
 * is one log line and one `dmr_events_total` increment here, through core's
 * EventRecorder, and one audit record in CentOps' audit log: only routers
 * may write `dmr.audit`, so the agent reports each event to CentOps over its
 * mutual-TLS identity (POST /v1/nodes/:id/events, decision 0035).
 *
 * Reporting never holds up what the agent does: the audit sink queues the
 * event and a single sender drains the queue in order. CentOps out of reach
 * (or answering 429/5xx) keeps the event queued and tries again with
 * back-off; an event CentOps refuses for what it is (4xx) is logged and
 * dropped, as it would be refused again. The queue is bounded: past
 * OUTBOX_MAX the oldest events go (logged), so a long outage costs bounded
 * memory. Events queued when the agent stops are lost; their log lines
 * remain.
 */
import { EventRecorder, isDmrError, type DmrEvent, type EventFields } from '@dmr/core';
import type { Logger } from 'pino';
import { Backoff } from './backoff.js';
import type { AgentMetrics } from './metrics.js';

export const OUTBOX_MAX = 256;

/** The thresholds `certificate.expiring` fires at, most distant first (EVENT_CATALOGUE). */
export const EXPIRY_THRESHOLDS = [
  { name: '7d', ms: 7 * 86_400_000 },
  { name: '1d', ms: 86_400_000 },
] as const;

export interface AgentEventsOptions {
  node: string;
  logger: Logger;
  metrics: AgentMetrics;
  /** Posts one event to CentOps; undefined while the agent has no client (before enrolment). */
  post: () => ((event: DmrEvent) => Promise<void>) | undefined;
  backoff: { initialMs: number; maxMs: number };
  now?: () => Date;
}

export class AgentEvents {
  readonly #options: AgentEventsOptions;
  readonly #recorder: EventRecorder;
  readonly #outbox: DmrEvent[] = [];
  readonly #backoff: Backoff;
  #sending: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;
  /** `<serial>/<threshold>` already announced: once per certificate and threshold, not every check. */
  readonly #expiring = new Set<string>();
  /** The last refusal announced: a transient refusal retried with back-off is one event, not one per retry. */
  #lastRefusal: string | undefined;

  constructor(options: AgentEventsOptions) {
    this.#options = options;
    this.#backoff = new Backoff(options.backoff);
    this.#recorder = new EventRecorder({
      logger: options.logger,
      counter: options.metrics.events,
      audit: async (event) => this.#enqueue(event),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  }

  /** Events waiting for CentOps (tests, status). */
  get pending(): number {
    return this.#outbox.length;
  }

  async applied(revision: number, context: Record<string, unknown>): Promise<void> {
    this.#lastRefusal = undefined;
    await this.#safe(() =>
      this.#recorder.emit('config.applied', { node: this.#options.node, revision }, context, 'configuration applied'),
    );
  }

  async refused(
    revision: number,
    code: EventFields<'config.refused'>['code'],
    context: Record<string, unknown>,
  ): Promise<void> {
    const key = `${revision}/${code}`;
    if (this.#lastRefusal === key) {
      this.#options.logger.warn({ revision, code, ...context }, 'configuration refused again');
      return;
    }
    this.#lastRefusal = key;
    await this.#safe(() =>
      this.#recorder.emit(
        'config.refused',
        { node: this.#options.node, revision, code },
        context,
        'configuration refused',
      ),
    );
  }

  async installed(serial: string, notAfter: Date, context: Record<string, unknown>): Promise<void> {
    await this.#safe(() =>
      this.#recorder.emit(
        'certificate.installed',
        { node: this.#options.node, serial, notAfter: notAfter.toISOString() },
        context,
        'certificate renewed',
      ),
    );
  }

  /**
   * Announces the nearest expiry threshold `identity` has crossed, once per
   * certificate and threshold (a renewed certificate starts afresh). Crossing
   * several at once (a node started late in its certificate's life) is one
   * event, for the nearest; the farther ones count as announced.
   *
   * Only once the agent's own renewal is overdue: it renews at two thirds of
   * the lifetime, and certificates are short-lived (7 days by default), so a
   * fresh one is "within 7 days" from birth. A threshold counts when the time
   * left is below it and below a third of the lifetime: then the renewal that
   * should have happened did not, which is what an operator must hear of.
   */
  async checkExpiry(identity: { serial: string; notBefore: Date; notAfter: Date }, now: Date): Promise<void> {
    const left = identity.notAfter.getTime() - now.getTime();
    const overdue = left < (identity.notAfter.getTime() - identity.notBefore.getTime()) / 3;
    if (!overdue) return;
    const crossed = EXPIRY_THRESHOLDS.filter((threshold) => left <= threshold.ms);
    const nearest = crossed.at(-1);
    if (nearest === undefined) return;
    const key = (name: string) => `${identity.serial}/${name}`;
    if (this.#expiring.has(key(nearest.name))) return;
    for (const threshold of crossed) this.#expiring.add(key(threshold.name));
    await this.#safe(() =>
      this.#recorder.emit(
        'certificate.expiring',
        {
          node: this.#options.node,
          serial: identity.serial,
          notAfter: identity.notAfter.toISOString(),
          threshold: nearest.name,
        },
        { leftSeconds: Math.max(0, Math.floor(left / 1000)) },
      ),
    );
  }

  /**
   * An event that does not fit the catalogue is a bug here; it must not
   * turn a configuration refusal or a renewal into a crash: logged instead.
   */
  async #safe(emit: () => Promise<unknown>): Promise<void> {
    try {
      await emit();
    } catch (error) {
      this.#options.logger.error({ err: error instanceof Error ? error.message : String(error) }, 'event not recorded');
    }
  }

  /** Tries the queue now (the agent got a client, or CentOps answered again). */
  flush(): void {
    if (this.#stopped || this.#sending !== undefined || this.#outbox.length === 0) return;
    if (this.#retry !== undefined) {
      clearTimeout(this.#retry);
      this.#retry = undefined;
    }
    this.#sending = this.#drain().finally(() => {
      this.#sending = undefined;
    });
  }

  /** Resolves once nothing is being sent (tests). */
  async idle(): Promise<void> {
    await this.#sending;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  #enqueue(event: DmrEvent): void {
    if (this.#outbox.length >= OUTBOX_MAX) {
      const dropped = this.#outbox.shift();
      this.#options.logger.warn(
        { event: dropped?.kind, at: dropped?.at, queued: OUTBOX_MAX },
        'event not reported to CentOps: the queue is full',
      );
    }
    this.#outbox.push(event);
    this.flush();
  }

  async #drain(): Promise<void> {
    while (!this.#stopped && this.#outbox.length > 0) {
      const post = this.#options.post();
      if (post === undefined) return; // no identity yet: flushed again once there is one
      const event = this.#outbox[0] as DmrEvent;
      try {
        await post(event);
        this.#outbox.shift();
        this.#backoff.reset();
      } catch (error) {
        const status = isDmrError(error) ? error.httpStatus : 503;
        const code = isDmrError(error) ? error.code : 'CENTOPS_UNREACHABLE';
        if (status >= 400 && status < 500 && status !== 429 && code !== 'CENTOPS_UNREACHABLE') {
          this.#outbox.shift();
          this.#options.logger.warn({ event: event.kind, at: event.at, code }, 'CentOps refused an event report');
          continue;
        }
        const delay = this.#backoff.next();
        this.#options.logger.debug({ event: event.kind, code, retryInMs: delay }, 'event report failed; retrying');
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          this.flush();
        }, delay);
        this.#retry.unref();
        return;
      }
    }
  }
}
