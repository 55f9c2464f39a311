/**
 * Late refusals reach the caller (docs/bridge.md "Delivery reports"): a
 * delivery report about a message the bridge already answered with 202 (a
 * refusal by a later check, an expiry, a dead letter) is POSTed as JSON to
 * the configured `reports.url`, with bounded retries and back-off. The
 * document names the message by id and says why; it never carries the
 * message's payload (reports have none, and the bridge keeps none).
 *
 * Bounded: at most `maxPending` reports wait or retry at once (past that a
 * report is dropped, logged and counted, never queued without end), each
 * gets `maxAttempts` tries of `timeoutMs`, and close() ends the waits.
 * Written on fetch: one small JSON POST at a time needs no pool, and a retry
 * loop around it is the few lines below (core's backoffDelay).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from '@dmr/core';
import type { DeliveryReport } from '@dmr/sdk';
import type { Logger } from 'pino';
import type { BridgeMetrics } from './metrics.js';

export interface ReportsTarget {
  url: string;
  timeoutMs: number;
  maxAttempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  maxPending: number;
  headers: Record<string, string>;
}

/** What the reports URL receives (docs/bridge.md): the report and whom it is about, never the payload. */
export interface ReportDocument {
  /** The v1 id of the message the report is about (lowercase UUID), or null when the node saw no valid id. */
  id: string | null;
  /** The bridge's own client id: the sender of the message. */
  senderId: string;
  /** The recipient the message was sent to, when this bridge still remembers it. */
  recipientId: string | null;
  /** `rejected` (refused by a node) or `dead-lettered` (expired, or refused too often by the recipient). */
  status: DeliveryReport['status'];
  /** A catalogue code (packages/core/src/errors.ts), e.g. MESSAGE_EXPIRED, POLICY_DENIED. */
  reason: string;
  detail: string;
  /** The node that wrote the report. */
  node: string;
  /** When the node wrote it (ISO 8601). */
  at: string;
  policy?: { revision: string | undefined; reasons: string[] };
}

export function reportDocument(
  report: DeliveryReport,
  senderId: string,
  recipientId: string | undefined,
): ReportDocument {
  return {
    id: report.messageId,
    senderId,
    recipientId: recipientId ?? null,
    status: report.status,
    reason: report.reason,
    detail: report.detail,
    node: report.node,
    at: report.at.toISOString(),
    ...(report.policy === undefined ? {} : { policy: report.policy }),
  };
}

/** Statuses that retrying cannot change (the receiver refuses the document itself). */
function final(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

export class ReportPoster {
  readonly #target: ReportsTarget;
  readonly #metrics: BridgeMetrics;
  readonly #logger: Logger;
  readonly #stopping = new AbortController();
  readonly #pending = new Set<Promise<void>>();

  constructor(target: ReportsTarget, metrics: BridgeMetrics, logger: Logger) {
    this.#target = target;
    this.#metrics = metrics;
    this.#logger = logger;
  }

  /** Reports waiting or being posted. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Posts `document` in the background; past maxPending it is dropped (logged, counted). */
  post(document: ReportDocument): void {
    if (this.#stopping.signal.aborted || this.#pending.size >= this.#target.maxPending) {
      this.#metrics.reportPosts.inc({ result: 'dropped' });
      this.#logger.warn(
        { messageId: document.id, reason: document.reason, pending: this.#pending.size },
        'delivery report not posted: too many reports pending for reports.url',
      );
      return;
    }
    const task = this.#deliver(document).finally(() => this.#pending.delete(task));
    this.#pending.add(task);
  }

  /** Stops the waits between attempts; an attempt under way finishes (bounded by timeoutMs). */
  async close(): Promise<void> {
    this.#stopping.abort();
    await Promise.allSettled([...this.#pending]);
  }

  async #deliver(document: ReportDocument): Promise<void> {
    const body = JSON.stringify(document);
    const { maxAttempts, initialDelayMs, maxDelayMs } = this.#target;
    let last = '';
    for (let attempt = 1; attempt <= maxAttempts; attempt += 1) {
      const status = await this.#attempt(body);
      if (typeof status === 'number' && status >= 200 && status < 300) {
        this.#metrics.reportPosts.inc({ result: 'delivered' });
        return;
      }
      last = typeof status === 'number' ? `HTTP ${status}` : status;
      if (typeof status === 'number' && final(status)) break;
      if (attempt === maxAttempts) break;
      try {
        await sleep(backoffDelay(attempt - 1, { initialMs: initialDelayMs, maxMs: maxDelayMs }), undefined, {
          signal: this.#stopping.signal,
        });
      } catch {
        break; // closing
      }
    }
    this.#metrics.reportPosts.inc({ result: 'failed' });
    this.#logger.warn(
      { messageId: document.id, reason: document.reason, last },
      'delivery report not accepted by reports.url; given up',
    );
  }

  /** One POST: the status, or what failed (never the URL's credentials). */
  async #attempt(body: string): Promise<number | string> {
    try {
      const response = await fetch(this.#target.url, {
        method: 'POST',
        headers: { ...this.#target.headers, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.#target.timeoutMs),
      });
      await response.body?.cancel().catch(() => undefined);
      return response.status;
    } catch (error) {
      const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : undefined;
      return cause ?? (error instanceof Error ? error.name : 'failed');
    }
  }
}
