/**
 * A token bucket per sender: `burst` messages at once, then `ratePerSecond`.
 * One router enforces it for the messages of its shard, so a node with n
 * shards lets a sender through at up to n × the rate (ids spread evenly).
 *
 * Memory: at most `maxSenders` buckets, least recently used first out. The
 * senders reaching this are clients of the node that passed the origin
 * checks, so the directory bounds them; the cap holds even if it does not.
 * Forgetting a bucket can only err towards letting a sender through (a
 * forgotten sender starts full), and a bucket idle long enough to refill is
 * identical to a new one, so it is dropped when met.
 */
import { reject, type Rejection } from '@dmr/contract';

export interface SenderRateLimitOptions {
  ratePerSecond: number;
  burst: number;
  /** Buckets kept at most (default 100 000). */
  maxSenders?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class SenderRateLimit {
  #ratePerMs: number;
  #burst: number;
  readonly maxSenders: number;
  /** Insertion order = least recently used first (a used bucket is re-inserted). */
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: SenderRateLimitOptions) {
    this.maxSenders = options.maxSenders ?? 100_000;
    if (!Number.isSafeInteger(this.maxSenders) || this.maxSenders <= 0) {
      throw new RangeError('maxSenders must be a positive integer');
    }
    this.#ratePerMs = 0;
    this.#burst = 0;
    this.configure(options.ratePerSecond, options.burst);
  }

  /** New limits (a configuration revision); buckets keep their tokens, capped at the new burst. */
  configure(ratePerSecond: number, burst: number): void {
    if (!(ratePerSecond > 0) || !Number.isSafeInteger(burst) || burst <= 0) {
      throw new RangeError('ratePerSecond and burst must be positive');
    }
    this.#ratePerMs = ratePerSecond / 1000;
    this.#burst = burst;
  }

  /** Buckets held (for tests and metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token of `sender` at `now` (ms), or refuses with SENDER_RATE_LIMITED. */
  take(sender: string, now: number): { ok: true } | Rejection {
    const bucket = this.#buckets.get(sender);
    // A clock stepping back never adds tokens.
    const elapsed = bucket === undefined ? 0 : Math.max(0, now - bucket.at);
    const tokens =
      bucket === undefined ? this.#burst : Math.min(this.#burst, bucket.tokens + elapsed * this.#ratePerMs);
    this.#buckets.delete(sender);
    if (tokens < 1) {
      this.#buckets.set(sender, { tokens, at: Math.max(now, bucket?.at ?? now) });
      return reject(
        'SENDER_RATE_LIMITED',
        `sender ${sender} is over ${this.#ratePerMs * 1000} messages/s (burst ${this.#burst}) on this router`,
      );
    }
    this.#buckets.set(sender, { tokens: tokens - 1, at: Math.max(now, bucket?.at ?? now) });
    this.#evict(now);
    return { ok: true };
  }

  #evict(now: number): void {
    for (const [sender, bucket] of this.#buckets) {
      const full = bucket.tokens + Math.max(0, now - bucket.at) * this.#ratePerMs >= this.#burst;
      if (!full && this.#buckets.size <= this.maxSenders) return;
      this.#buckets.delete(sender);
    }
  }
}
