/**
 * The one retry back-off of DMR: every reconnect, re-poll and renewal retry
 * waits this long, so there is one behaviour to reason about.
 *
 * Exponential with half jitter: the ceiling for failure n (0-based) is
 * `min(maxMs, initialMs · factor^n)` and the delay is uniform in
 * [ceiling/2, ceiling]. The jitter keeps a fleet that lost the same peer at
 * the same moment from coming back in lock-step; the floor of half the
 * ceiling keeps a flapping peer from being hammered at ≈0 ms (full jitter,
 * uniform in [0, ceiling], would allow that). The counter resets when the
 * caller reports success (a session opened, a request answered).
 */

export interface BackoffOptions {
  /** First ceiling (default 100 ms). */
  initialMs?: number;
  /** Largest ceiling (default 30 s). */
  maxMs?: number;
  /** Multiplier per failure (default 2). */
  factor?: number;
  /** [0,1) source, injectable so tests can pin the jitter (default Math.random). */
  random?: () => number;
}

export const DEFAULT_BACKOFF: Readonly<Required<Omit<BackoffOptions, 'random'>>> = {
  initialMs: 100,
  maxMs: 30_000,
  factor: 2,
};

/** The ceiling (before jitter) after `failures` failures in a row. */
export function backoffCeiling(failures: number, options: BackoffOptions = {}): number {
  const { initialMs, maxMs, factor } = { ...DEFAULT_BACKOFF, ...withoutUndefined(options) };
  // The exponent is capped so that a long outage neither overflows nor reaches Infinity.
  return Math.min(maxMs, initialMs * factor ** Math.min(Math.max(0, failures), 60));
}

/** The delay before the try after `failures` failures in a row: uniform in [ceiling/2, ceiling]. */
export function backoffDelay(
  failures: number,
  options: BackoffOptions = {},
  random: () => number = options.random ?? Math.random,
): number {
  const ceiling = backoffCeiling(failures, options);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** backoffDelay with its failure count kept: next() after each failure, reset() after a success. */
export class Backoff {
  readonly #options: BackoffOptions;
  #failures = 0;

  constructor(options: BackoffOptions = {}) {
    this.#options = options;
  }

  /** Failures since the last reset. */
  get attempt(): number {
    return this.#failures;
  }

  /** The ceiling for the next delay (before jitter). */
  ceilingMs(): number {
    return backoffCeiling(this.#failures, this.#options);
  }

  /** The delay to wait now; counts one more failure. */
  next(): number {
    const delay = backoffDelay(this.#failures, this.#options);
    this.#failures += 1;
    return delay;
  }

  reset(): void {
    this.#failures = 0;
  }
}

function withoutUndefined(options: BackoffOptions): BackoffOptions {
  // With exactOptionalPropertyTypes off in callers' configs, { maxMs: undefined } must not erase the default.
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as BackoffOptions;
}
