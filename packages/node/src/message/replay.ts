/**
 * "Message id not seen before within a documented window (replays refused)",
 * one of the per-message checks of docs/contract.md: a time-windowed,
 * bounded set of message ids.
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
 * - Share: at most `maxPerSender` of those ids belong to one sender. A
 *   sender over its share is refused with SENDER_QUOTA_EXCEEDED, so one
 *   flooding client fills its own share, not the window of everyone else on
 *   the shard. The per-sender counts live only while the sender holds ids,
 *   so their memory is bounded by `maxEntries` whatever the directory says.
 *
 * - Parked: an id whose message the router handed back to itself for later
 *   (held for a full destination, or parked in `dmr.parking.<n>`,
 *   docs/decisions/0039-parking.md) stays held, marked parked: a client's
 *   replay of it is still refused, and the router's own copy coming back
 *   (`check(…, own)`) is taken once and the id is seen again; a second copy
 *   of it (a duplicate dead letter) then meets a seen id. On disk it is
 *   marked parked too, so a restarted router keeps refusing a client's
 *   replay of it and still takes its own copy back once.
 *
 * - Durable: with a journal (replay-journal.ts) every id remembered or
 *   released is also written to the shard's segment files, and restore()
 *   loads them into a new guard after a restart: a restarted router still
 *   refuses the ids its shard saw within the window.
 *
 * Memory: a Map in insertion order. With a monotonic clock that order is
 * expiry order, so expiring is popping from the front. If the clock steps
 * back, later entries may expire before earlier ones; the front-only sweep
 * then keeps some expired ids a little longer (memory, never safety), and
 * `check` still judges each id by its own expiry.
 */
import { reject, type Rejection } from '@dmr/contract';
import type { RememberedId, ReplayMemorySink } from './replay-journal.js';

export interface ReplayGuardOptions {
  /** How long an id is remembered (ms): limits.dedupWindowMs. */
  windowMs: number;
  /** Most ids held at once. */
  maxEntries: number;
  /** Most ids one sender holds at once (default: maxEntries, i.e. no share). */
  maxPerSender?: number;
  /** Where every remembered and released id is also written (the shard's ReplayJournal); none: memory only. */
  journal?: ReplayMemorySink;
}

interface Entry {
  expiresAt: number;
  sender: string;
  /** Handed back by the router for a later attempt of its own (park()). */
  parked?: true;
}

export type ReplayResult = { ok: true } | Rejection;

export class ReplayGuard {
  /** Changed in place by the router when a configuration changes limits.dedupWindowMs: ids already held keep their expiry. */
  windowMs: number;
  readonly maxEntries: number;
  /** Changed in place by the router when a configuration changes limits.maxIdsPerSender. */
  maxPerSender: number;
  /** id → when it expires (ms) and whose it is. */
  readonly #entries = new Map<string, Entry>();
  /** sender → ids it holds; a sender without ids has no entry. */
  readonly #perSender = new Map<string, number>();
  readonly #journal: ReplayMemorySink | undefined;

  constructor(options: ReplayGuardOptions) {
    if (!Number.isSafeInteger(options.windowMs) || options.windowMs <= 0) {
      throw new RangeError('windowMs must be a positive integer');
    }
    if (!Number.isSafeInteger(options.maxEntries) || options.maxEntries <= 0) {
      throw new RangeError('maxEntries must be a positive integer');
    }
    if (
      options.maxPerSender !== undefined &&
      (!Number.isSafeInteger(options.maxPerSender) || options.maxPerSender <= 0)
    ) {
      throw new RangeError('maxPerSender must be a positive integer');
    }
    this.windowMs = options.windowMs;
    this.maxEntries = options.maxEntries;
    this.maxPerSender = options.maxPerSender ?? options.maxEntries;
    this.#journal = options.journal;
  }

  /**
   * Takes back ids a previous router of this shard held (ReplayJournal.open),
   * without writing them again. Expired ones are skipped; past maxEntries the
   * rest are dropped and counted, never held over the bound. Returns how many
   * were taken.
   */
  restore(entries: Iterable<RememberedId>, now: number): number {
    let taken = 0;
    for (const { id, expiresAt, sender, parked } of entries) {
      if (expiresAt <= now || this.#entries.has(id)) continue;
      if (this.#entries.size >= this.maxEntries) break;
      this.#entries.set(id, parked === true ? { expiresAt, sender, parked } : { expiresAt, sender });
      this.#perSender.set(sender, this.heldBy(sender) + 1);
      taken += 1;
    }
    return taken;
  }

  /** Ids currently held (expired ones not yet swept included). */
  get size(): number {
    return this.#entries.size;
  }

  /** Ids `sender` holds now (expired ones not yet swept included). */
  heldBy(sender: string): number {
    return this.#perSender.get(sender) ?? 0;
  }

  /**
   * Records `id` of `sender` as seen at `now` unless it is a replay, the
   * sender holds its share, or the set is full. Pass the normalised
   * (lowercase) id and the sender of ValidatedMessage. `own`: the router's
   * own later attempt at a message it parked (park()), which takes a parked
   * id back as seen instead of refusing it.
   */
  check(id: string, now: number, sender = '', own = false): ReplayResult {
    this.#sweep(now);
    const entry = this.#entries.get(id);
    if (entry !== undefined) {
      if (entry.expiresAt > now) {
        if (own && entry.parked === true) {
          delete entry.parked;
          this.#journal?.remembered(id, entry.expiresAt, entry.sender);
          return { ok: true };
        }
        return reject('MESSAGE_REPLAYED', `message_id ${id} was already seen`);
      }
      // Expired but left behind by a clock step: forget it so it is re-inserted at the back.
      this.#forget(id, entry);
    }
    if (this.#entries.size >= this.maxEntries) {
      return reject('REPLAY_WINDOW_FULL', `the replay guard holds ${this.maxEntries} unexpired ids`);
    }
    if (this.heldBy(sender) >= this.maxPerSender) {
      return reject(
        'SENDER_QUOTA_EXCEEDED',
        `sender ${sender} holds its share of ${this.maxPerSender} unexpired ids in the replay window`,
      );
    }
    const expiresAt = now + this.windowMs;
    this.#entries.set(id, { expiresAt, sender });
    this.#perSender.set(sender, this.heldBy(sender) + 1);
    this.#journal?.remembered(id, expiresAt, sender);
    return { ok: true };
  }

  /**
   * Forgets `id`: for a message the router accepted here but then handed
   * back to the broker for redelivery (nack with requeue), whose next
   * delivery is the same message, not a replay.
   */
  release(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    this.#forget(id, entry);
    this.#journal?.forgotten(id, entry.expiresAt);
  }

  /**
   * `id`, accepted by check(), is handed back for a later attempt of the
   * router's own (held, or parked in `dmr.parking.<n>`): a client's replay
   * of it is still refused, the own attempt (check(…, own)) takes it. The
   * mark is on disk too: a restarted router goes on refusing a client's
   * replay of a parked id while its copy waits in `dmr.parking.<n>`, and
   * takes that copy once when it comes back.
   */
  park(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.parked === true) return;
    entry.parked = true;
    this.#journal?.parked(id, entry.expiresAt, entry.sender);
  }

  #forget(id: string, entry: Entry): void {
    this.#entries.delete(id);
    const held = this.heldBy(entry.sender) - 1;
    if (held > 0) this.#perSender.set(entry.sender, held);
    else this.#perSender.delete(entry.sender);
  }

  #sweep(now: number): void {
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt > now) return;
      this.#forget(id, entry);
    }
  }
}
