/**
 * Reconnect timing. Exponential with jitter so that many clients which lost
 * the same node at the same moment do not reconnect in lock-step; the delay
 * keeps a floor of half the ceiling so a flapping node is not hammered at ≈0 ms.
 */
export interface BackoffOptions {
  /** First delay ceiling (default 100 ms). */
  initialMs?: number;
  /** Largest delay ceiling (default 30 s). */
  maxMs?: number;
  /** Multiplier per failed attempt (default 2). */
  factor?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = { initialMs: 100, maxMs: 30_000, factor: 2 };

/** The delay before attempt `attempt` (0-based): uniform in [ceiling/2, ceiling]. */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const { initialMs, maxMs, factor } = { ...DEFAULT_BACKOFF, ...options };
  const ceiling = Math.min(maxMs, initialMs * factor ** Math.min(Math.max(0, attempt), 60));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
