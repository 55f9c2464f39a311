/**
 * Timing decisions of the agent, pure so they are unit-tested: the retry
 * back-off (exponential with full jitter, so a fleet of nodes that lost
 * CentOps at the same moment does not reconnect in lock-step) and when to
 * renew a certificate (re-exported from @dmr/pki; the CRL refresh is @dmr/broker's crlRefreshDelayMs).
 */

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Multiplier per failure (default 2). */
  factor?: number;
  /** [0,1) source; injectable for tests. */
  random?: () => number;
}

export class Backoff {
  readonly #options: Required<BackoffOptions>;
  #attempt = 0;

  constructor(options: BackoffOptions) {
    this.#options = { factor: 2, random: Math.random, ...options };
  }

  get attempt(): number {
    return this.#attempt;
  }

  /** The ceiling for the current attempt (before jitter). */
  ceilingMs(): number {
    const { initialMs, maxMs, factor } = this.#options;
    return Math.min(maxMs, initialMs * factor ** Math.min(this.#attempt, 30));
  }

  /**
   * The delay before the next try: uniformly in [ceiling/2, ceiling] (half
   * jitter keeps a floor, so a flapping peer is not hammered at ~0 ms).
   */
  next(): number {
    const ceiling = this.ceilingMs();
    this.#attempt += 1;
    return Math.round(ceiling / 2 + (this.#options.random() * ceiling) / 2);
  }

  reset(): void {
    this.#attempt = 0;
  }
}

// When to renew a certificate: @dmr/pki's schedule, the one the SDK uses too (re-exported for the agent's callers).
export { renewalDelayMs } from '@dmr/pki';
