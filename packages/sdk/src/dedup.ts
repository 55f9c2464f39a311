/**
 * The receive side's "exactly once as seen by the application" (docs/contract.md
 * "Message contract"): DMR delivers at least once, so the SDK remembers the
 * ids it has handed to the application and acks a later copy without calling
 * the handler again.
 *
 * Bounds: an id is remembered for `windowMs` from when its handler succeeded
 * (default: the node's `limits.dedupWindowMs` default, 24 h 5 min, so the
 * SDK remembers at least as long as the node's replay guard) and at most
 * `maxEntries` ids are kept (default 100 000). Unlike the node's replay guard,
 * which refuses new messages when full, a full SDK window forgets its oldest
 * id: a receiver must keep receiving, and a forgotten id can only matter for
 * a duplicate older than everything else remembered. The memory is per
 * process: an application that must survive restarts without duplicates
 * dedups in its own store by `ReceivedMessage.id`.
 */
export interface DedupOptions {
  /** How long an id is remembered (default 24 h 5 min = 86 700 000 ms). */
  windowMs?: number;
  /** Most ids remembered (default 100 000); the oldest is forgotten first. */
  maxEntries?: number;
}

export const DEFAULT_DEDUP_WINDOW_MS = 24 * 3_600_000 + 5 * 60_000;
export const DEFAULT_DEDUP_MAX_ENTRIES = 100_000;

export class DedupWindow {
  readonly windowMs: number;
  readonly maxEntries: number;
  /** id → when it was recorded. Insertion order is time order (ids are only ever appended), so the head is the oldest. */
  readonly #seen = new Map<string, number>();

  constructor(options: DedupOptions = {}) {
    this.windowMs = options.windowMs ?? DEFAULT_DEDUP_WINDOW_MS;
    this.maxEntries = options.maxEntries ?? DEFAULT_DEDUP_MAX_ENTRIES;
    if (!(this.windowMs > 0) || !Number.isInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new RangeError('dedup windowMs must be > 0 and maxEntries a positive integer');
    }
  }

  get size(): number {
    return this.#seen.size;
  }

  /** Whether `id` was recorded within the window before `now`. */
  has(id: string, now: number): boolean {
    this.#expire(now);
    const at = this.#seen.get(id);
    return at !== undefined && now - at < this.windowMs;
  }

  /** Remembers `id` as handled at `now`. */
  record(id: string, now: number): void {
    this.#expire(now);
    // Re-recording moves the id to the tail so the map stays in time order.
    this.#seen.delete(id);
    this.#seen.set(id, now);
    while (this.#seen.size > this.maxEntries) {
      const oldest = this.#seen.keys().next();
      if (oldest.done === true) break;
      this.#seen.delete(oldest.value);
    }
  }

  #expire(now: number): void {
    for (const [id, at] of this.#seen) {
      if (now - at < this.windowMs) break;
      this.#seen.delete(id);
    }
  }
}
