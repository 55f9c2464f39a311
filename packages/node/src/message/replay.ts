/**
 * "Message id not seen before within a documented window (replays refused)"
 * (issue 5): a time-windowed, bounded set of message ids.
 *
 * - Window: an id is remembered for `windowMs` after it was first seen
 *   (`limits.dedupWindowMs`, ≥ maxTtlMs + timestampSkewMs, so a message
 *   cannot outlive the memory of its id). At exactly `seenAt + windowMs` it
 *   is forgotten and the id is accepted again.
 * - Bound: at most `maxEntries` ids. Eviction rule: only expired ids are ever
 *   dropped. When the set is full of unexpired ids a new id is refused with
 *   REPLAY_WINDOW_FULL (the message goes to the rejected queue and its sender
 *   gets a report, i.e. the refusal is visible) rather than forgetting an id
 *   early, which would let a replay of it through silently.
 *
 * Memory: a Map in insertion order. With a monotonic clock that order is
 * expiry order, so expiring is popping from the front. If the clock steps
 * back, later entries may expire before earlier ones; the front-only sweep
 * then keeps some expired ids a little longer (memory, never safety), and
 * `check` still judges each id by its own expiry.
 */
import { reject, type Rejection } from './contract.js';

export interface ReplayGuardOptions {
  /** How long an id is remembered (ms): limits.dedupWindowMs. */
  windowMs: number;
  /** Most ids held at once. */
  maxEntries: number;
}

export type ReplayResult = { ok: true } | Rejection;

export class ReplayGuard {
  readonly windowMs: number;
  readonly maxEntries: number;
  /** id → when it expires (ms). */
  readonly #expiresAt = new Map<string, number>();

  constructor(options: ReplayGuardOptions) {
    if (!Number.isSafeInteger(options.windowMs) || options.windowMs <= 0) {
      throw new RangeError('windowMs must be a positive integer');
    }
    if (!Number.isSafeInteger(options.maxEntries) || options.maxEntries <= 0) {
      throw new RangeError('maxEntries must be a positive integer');
    }
    this.windowMs = options.windowMs;
    this.maxEntries = options.maxEntries;
  }

  /** Ids currently held (expired ones not yet swept included). */
  get size(): number {
    return this.#expiresAt.size;
  }

  /**
   * Records `id` as seen at `now` unless it is a replay or the set is full.
   * Pass the normalised (lowercase) id of ValidatedMessage.
   */
  check(id: string, now: number): ReplayResult {
    this.#sweep(now);
    const expiresAt = this.#expiresAt.get(id);
    if (expiresAt !== undefined) {
      if (expiresAt > now) return reject('MESSAGE_REPLAYED', `message_id ${id} was already seen`);
      // Expired but left behind by a clock step: forget it so it is re-inserted at the back.
      this.#expiresAt.delete(id);
    }
    if (this.#expiresAt.size >= this.maxEntries) {
      return reject('REPLAY_WINDOW_FULL', `the replay guard holds ${this.maxEntries} unexpired ids`);
    }
    this.#expiresAt.set(id, now + this.windowMs);
    return { ok: true };
  }

  /**
   * Forgets `id`: for a message the router accepted here but then handed
   * back to the broker for redelivery (nack with requeue), whose next
   * delivery is the same message, not a replay.
   */
  release(id: string): void {
    this.#expiresAt.delete(id);
  }

  #sweep(now: number): void {
    for (const [id, expiresAt] of this.#expiresAt) {
      if (expiresAt > now) return;
      this.#expiresAt.delete(id);
    }
  }
}
