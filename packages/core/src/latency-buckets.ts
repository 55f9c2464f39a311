/**
 * The histogram buckets of every DMR latency metric (router, bridge,
 * CentOps): one ladder, so that the same `le` means the same thing on every
 * dashboard and two histograms can be compared or summed. Each metric takes
 * the stretch of the ladder its latencies fall in.
 */

/** Seconds: 1-2.5-5 steps from 50 µs to 10 s, then 30 s and 60 s (feeds, links and retries are slower). */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
]);

/** The buckets of LATENCY_BUCKETS_SECONDS from `min` to `max` seconds (both included, both on the ladder). */
export function latencyBuckets(min: number, max: number): number[] {
  const buckets = LATENCY_BUCKETS_SECONDS.filter((bucket) => bucket >= min && bucket <= max);
  if (buckets[0] !== min || buckets.at(-1) !== max) {
    throw new RangeError(`latency buckets must start and end on the ladder: ${min}..${max}`);
  }
  return buckets;
}
