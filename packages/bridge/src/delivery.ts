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
 *
 * The POSTs go through one undici Pool of up to `concurrency` kept-alive
 * connections (docs/decisions/0029-receiving-bridge-throughput.md): about
 * half the CPU per request of node:http's Agent, and it closes an idle
 * connection before the endpoint's own keep-alive timeout runs out (it reads
 * the `Keep-Alive: timeout=` hint), where the Agent could reuse a socket the
 * server was closing and lose the attempt to a reset. No pipelining: a POST
 * is not idempotent, and one slow answer would hold up the ones behind it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import { backoffDelay, startClientSpan, type Tracing } from '@dmr/core';
import type { BridgeMetrics } from './metrics.js';

export interface DeliveryOptions {
  url: string;
  /** Longest wait for the endpoint's answer (its headers, then each part of its body). */
  timeoutMs: number;
  /** Connections to the endpoint at most: the deliveries under way (delivery.concurrency); default 16. */
  connections?: number;
  headers?: Record<string, string>;
  maxAttempts: number;
  initialDelayMs: number;
  maxDelayMs: number;
  /** Statuses that dead-letter at once: the endpoint refuses this message, a retry cannot change that. */
  deadLetterStatuses: readonly number[];
  /**
   * With tracing on: each POST is a CLIENT span, the child of the message's
   * `traceparent`, and the endpoint is sent the span's own traceparent, so its
   * work continues the message's trace from this delivery.
   */
  tracer?: Tracing['tracer'];
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

function retryAfter(headers: Dispatcher.ResponseData['headers']): number | undefined {
  const value = headers['retry-after'];
  if (typeof value !== 'string') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

/** Query parameters that carry a credential by their name (`?access_token=`, `?api_key=`, `?sig=`…). */
const SECRET_PARAMETER = /token|key|secret|sig|auth|pass|credential/i;

/**
 * A URL for logs and printouts: its userinfo (a password, or a token sent
 * as the user name) and the values of credential-like query parameters are
 * replaced by `***`.
 */
export function displayUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not a URL (the schema refuses it before anything prints): nothing in it can be shown safely.
    return '***';
  }
  const secretNames = [...new Set(parsed.searchParams.keys())].filter((name) => SECRET_PARAMETER.test(name));
  if (parsed.username === '' && parsed.password === '' && secretNames.length === 0) return url;
  if (parsed.username !== '') parsed.username = '***';
  if (parsed.password !== '') parsed.password = '***';
  for (const name of secretNames) parsed.searchParams.set(name, '***');
  return parsed.href;
}

/** A short name for a failed attempt: `timeout`, or the network error's code. */
function failureName(error: unknown): string {
  if (error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError) {
    return 'timeout';
  }
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
}

/** The header an endpoint dedups on (the IETF Idempotency-Key draft's name), and DMR's own name for the same id. */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const MESSAGE_ID_HEADER = 'dmr-message-id';

/** The message id as a quoted string: the draft's header is a Structured Field string ("…"); a UUID needs no escape. */
function idempotencyHeaders(messageId: string): Record<string, string> {
  return { [IDEMPOTENCY_KEY_HEADER]: `"${messageId}"`, [MESSAGE_ID_HEADER]: messageId };
}

function outcomeLabel(result: AttemptResult): string {
  if (result.ok) return '2xx';
  if (result.status !== undefined) return `${Math.floor(result.status / 100)}xx`;
  return result.error === 'timeout' ? 'timeout' : 'network';
}

export class EndpointDeliverer {
  readonly #options: DeliveryOptions;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #pool: Pool;
  readonly #metrics: BridgeMetrics | undefined;
  readonly #random: () => number;
  /** Span attributes of every POST: where it goes (scheme, host and port; the path may carry a credential). */
  readonly #target: Record<string, string | number>;

  constructor(options: DeliveryOptions, metrics?: BridgeMetrics, random: () => number = Math.random) {
    this.#options = options;
    const url = new URL(options.url);
    this.#path = `${url.pathname}${url.search}`;
    this.#target = {
      'http.request.method': 'POST',
      'server.address': url.hostname,
      'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    };
    this.#headers = { ...options.headers, 'content-type': 'application/json' };
    // A Pool takes an origin only: credentials in the URL (as node:http honoured them) become Basic auth here.
    if (url.username !== '' && !Object.keys(this.#headers).some((name) => name.toLowerCase() === 'authorization')) {
      const userinfo = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
      this.#headers.authorization = `Basic ${Buffer.from(userinfo, 'utf8').toString('base64')}`;
    }
    this.#pool = new Pool(url.origin, {
      connections: options.connections ?? 16,
      pipelining: 1,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
    this.#metrics = metrics;
    this.#random = random;
  }

  /**
   * One POST; never throws. `messageId` goes along as `Idempotency-Key` (and `dmr-message-id`): delivery to the
   * endpoint is at least once (an answer lost to a timeout or a bridge killed before its ack means a second POST
   * of the same message), and only the endpoint can tell a repeat from a new message. `extraHeaders` (the
   * message's `traceparent`) never override the configured ones; with a
   * tracer, the traceparent sent is this attempt's CLIENT span (`resend`: the
   * attempts before it).
   */
  async attempt(
    body: string,
    messageId?: string,
    extraHeaders: Record<string, string> = {},
    resend = 0,
  ): Promise<AttemptResult> {
    const span = startClientSpan(this.#options.tracer, 'POST', extraHeaders.traceparent, {
      ...this.#target,
      ...(resend > 0 ? { 'http.request.resend_count': resend } : {}),
      ...(messageId === undefined ? {} : { 'messaging.message.id': messageId }),
    });
    const result = await this.#post(
      body,
      messageId,
      span === undefined ? extraHeaders : { ...extraHeaders, traceparent: span.traceparent },
    );
    span?.end(
      result.status,
      result.status === undefined ? (result.error === 'timeout' ? 'timeout' : 'network') : undefined,
    );
    return result;
  }

  async #post(
    body: string,
    messageId: string | undefined,
    extraHeaders: Record<string, string>,
  ): Promise<AttemptResult> {
    try {
      const response = await this.#pool.request({
        path: this.#path,
        method: 'POST',
        headers: {
          ...extraHeaders,
          ...this.#headers,
          ...(messageId === undefined ? {} : idempotencyHeaders(messageId)),
        },
        body,
      });
      // The body is not used, but it must be read for the connection to be reused.
      await response.body.dump();
      const status = response.statusCode;
      return { ok: status >= 200 && status < 300, status, retryAfterSeconds: retryAfter(response.headers) };
    } catch (error) {
      return { ok: false, status: undefined, retryAfterSeconds: undefined, error: failureName(error) };
    }
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
  async deliver(
    body: string,
    signal?: AbortSignal,
    messageId?: string,
    extraHeaders: Record<string, string> = {},
  ): Promise<number> {
    const { maxAttempts, deadLetterStatuses } = this.#options;
    for (let attempt = 1; ; attempt += 1) {
      if (signal?.aborted === true) throw new DeliveryAborted(attempt - 1);
      const result = await this.attempt(body, messageId, extraHeaders, attempt - 1);
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

  /** Closes the connections to the endpoint (attempts under way fail as network errors). */
  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
