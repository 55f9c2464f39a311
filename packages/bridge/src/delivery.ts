/**
 * Delivery of received messages to the organisation's endpoint: one POST of
 * the v1 JSON per attempt; 2xx is delivered. Anything else is retried after
 * an exponential back-off with jitter (@dmr/core's backoffDelay: uniform in
 * [ceiling/2, ceiling], ceiling doubling to maxDelayMs; an endpoint's
 * Retry-After is honoured up to that cap) until maxAttempts, then the caller
 * dead-letters the message.
 *
 * Retries happen inside the consumer's handler, so the message stays unacked
 * and the broker hands out no more than `concurrency` (the prefetch) at a
 * time: with the endpoint down, at most `concurrency` POSTs per back-off
 * interval reach it, never a redelivery storm.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { backoffDelay } from '@dmr/core';
import type { BridgeMetrics } from './metrics.js';

export interface DeliveryOptions {
  url: string;
  timeoutMs: number;
  headers?: Record<string, string>;
  maxAttempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  /** Statuses that dead-letter at once: the endpoint refuses this message, a retry cannot change that. */
  deadLetterStatuses: readonly number[];
}

export interface AttemptResult {
  ok: boolean;
  /** HTTP status, or undefined for a timeout or network failure. */
  status: number | undefined;
  /** Seconds from the endpoint's Retry-After header. */
  retryAfterSeconds: number | undefined;
  error?: string;
}

export class DeliveryFailed extends Error {
  readonly attempts: number;
  readonly last: AttemptResult;
  readonly permanent: boolean;
  constructor(message: string, attempts: number, last: AttemptResult, permanent: boolean) {
    super(message);
    this.name = 'DeliveryFailed';
    this.attempts = attempts;
    this.last = last;
    this.permanent = permanent;
  }
}

/** Delivery stopped because the bridge is shutting down: the message goes back to its queue, not to the DLQ. */
export class DeliveryAborted extends Error {
  readonly attempts: number;
  constructor(attempts: number) {
    super(`delivery stopped after ${attempts} attempt(s): the bridge is shutting down`);
    this.name = 'DeliveryAborted';
    this.attempts = attempts;
  }
}

function retryAfter(response: IncomingMessage): number | undefined {
  const value = response.headers['retry-after'];
  if (typeof value !== 'string') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

function outcomeLabel(result: AttemptResult): string {
  if (result.ok) return '2xx';
  if (result.status !== undefined) return `${Math.floor(result.status / 100)}xx`;
  return result.error === 'timeout' ? 'timeout' : 'network';
}

export class EndpointDeliverer {
  readonly #options: DeliveryOptions;
  readonly #url: URL;
  readonly #agent: HttpAgent | HttpsAgent;
  readonly #metrics: BridgeMetrics | undefined;
  readonly #random: () => number;

  constructor(options: DeliveryOptions, metrics?: BridgeMetrics, random: () => number = Math.random) {
    this.#options = options;
    this.#url = new URL(options.url);
    // Keep-alive: a POST per message must not pay a TCP (and TLS) handshake each time.
    const agentOptions = { keepAlive: true, maxSockets: 256 };
    this.#agent = this.#url.protocol === 'https:' ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
    this.#metrics = metrics;
    this.#random = random;
  }

  /** One POST; never throws. */
  attempt(body: string): Promise<AttemptResult> {
    const send = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve) => {
      let settled = false;
      const done = (result: AttemptResult): void => {
        if (settled) return;
        settled = true;
        resolve(result);
      };
      const request = send(
        this.#url,
        {
          method: 'POST',
          agent: this.#agent,
          headers: {
            ...this.#options.headers,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (response) => {
          // The body is not used, but it must be read for the socket to be reused.
          response.resume();
          response.on('end', () => {
            const status = response.statusCode ?? 0;
            done({ ok: status >= 200 && status < 300, status, retryAfterSeconds: retryAfter(response) });
          });
          response.on('error', (error: Error) =>
            done({ ok: false, status: undefined, retryAfterSeconds: undefined, error: error.message }),
          );
        },
      );
      // Small JSON requests: Nagle's algorithm would hold the body back behind the headers.
      request.setNoDelay(true);
      request.setTimeout(this.#options.timeoutMs, () => {
        request.destroy(new Error('timeout'));
      });
      request.on('error', (error: Error) =>
        done({
          ok: false,
          status: undefined,
          retryAfterSeconds: undefined,
          error: error.message === 'timeout' ? 'timeout' : ((error as NodeJS.ErrnoException).code ?? error.message),
        }),
      );
      request.end(body);
    });
  }

  /** The delay before retry number `retry` (0-based), honouring Retry-After up to the cap. */
  delay(retry: number, last: AttemptResult): number {
    const { initialDelayMs, maxDelayMs } = this.#options;
    const backoff = backoffDelay(retry, { initialMs: initialDelayMs, maxMs: maxDelayMs, factor: 2 }, this.#random);
    if (last.retryAfterSeconds === undefined) return backoff;
    return Math.min(maxDelayMs, Math.max(backoff, last.retryAfterSeconds * 1000));
  }

  /**
   * Delivers with retries; resolves with the number of attempts, or throws
   * DeliveryFailed (dead-letter it) or, once `signal` aborts, DeliveryAborted
   * (hand it back). An attempt under way when it aborts still finishes (it is
   * bounded by timeoutMs): cutting it off could not tell whether the endpoint
   * took the message.
   */
  async deliver(body: string, signal?: AbortSignal): Promise<number> {
    const { maxAttempts, deadLetterStatuses } = this.#options;
    for (let attempt = 1; ; attempt += 1) {
      if (signal?.aborted === true) throw new DeliveryAborted(attempt - 1);
      const result = await this.attempt(body);
      this.#metrics?.deliveryAttempts.inc({ outcome: outcomeLabel(result) });
      if (result.ok) return attempt;
      const what = result.status === undefined ? (result.error ?? 'no answer') : `HTTP ${result.status}`;
      if (result.status !== undefined && deadLetterStatuses.includes(result.status)) {
        throw new DeliveryFailed(`the endpoint refused the message (${what})`, attempt, result, true);
      }
      if (attempt >= maxAttempts) {
        throw new DeliveryFailed(
          `no 2xx from the endpoint in ${attempt} attempts (last: ${what})`,
          attempt,
          result,
          false,
        );
      }
      try {
        await sleep(this.delay(attempt - 1, result), undefined, signal === undefined ? undefined : { signal });
      } catch {
        throw new DeliveryAborted(attempt);
      }
    }
  }

  close(): void {
    this.#agent.destroy();
  }
}
