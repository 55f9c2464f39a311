/**
 * Holding: messages the router keeps unacked because their destination is
 * full right now — a recipient's queue (`x-overflow: reject-publish` nacked
 * the router's publish) or a link's outbound queue — instead of refusing
 * them after the sender was told "accepted" (docs/decisions/0028).
 *
 * Messages are held per destination (a key: `recipient:<id>`, `link:<peer>`),
 * so one full queue holds only the messages for it and the shard keeps
 * routing everything else. While a key is held, new messages for it join
 * the hold without a publish; after a back-off the oldest held message is
 * tried again (the probe), and every other held message of the key is run
 * through its path again too, without publishing: that is how a held message
 * whose TTL ran out, whose recipient was removed or whose policy changed is
 * settled (refused with a report) while its destination is still full. When
 * the probe settles (delivered, or refused for a reason of its own), the key
 * opens: every held message is tried again at once.
 *
 * Bounded: past `maxMessages` or `maxBytes` held per shard, `full` turns
 * true and the router stops taking new messages from its inputs (it keeps
 * settling what it has), so the ingress queue fills to its own bound and
 * the broker refuses the senders' publishes (reject-publish: a nack, which
 * the SDK turns into a retryable error and the bridge into 503).
 *
 * Shared: one destination holds at most `maxPerKey` messages, so one stuck
 * recipient (or a sender that never reads its reports) cannot take the
 * whole bound. What comes for a crowded key is parked by the router instead
 * (parking.ts, docs/decisions/0039-parking.md); only when parking is not
 * possible is it held past that share, up to the shard's bound.
 *
 * Nothing here is a requeue: a requeue counts as a delivery on a quorum
 * queue and the ingress delivery limit would dead-letter a valid message
 * (RABBITMQ-FACTS.md). A lost connection hands every held message back to
 * the broker; clear() then forgets them.
 */
import { backoffDelay, type BackoffOptions } from '@dmr/core';

export interface HoldOptions {
  /** Most messages held per shard before the router stops taking new ones (default: half the prefetch). */
  maxMessages: number;
  /** Most body bytes held per shard before the router stops taking new ones (default 64 MiB). */
  maxBytes: number;
  /** Most messages held for one destination; more are parked (default an eighth of maxMessages, at least 1). */
  maxPerKey: number;
  /** Between tries of a key's probe (default 50 ms doubling to 2 s, half jitter). */
  backoff: Required<Pick<BackoffOptions, 'initialMs' | 'maxMs'>>;
}

export const DEFAULT_HOLD_MAX_BYTES = 64 * 1_048_576;
export const DEFAULT_HOLD_BACKOFF = { initialMs: 50, maxMs: 2_000 } as const;

interface Entry<D> {
  data: D;
  bytes: number;
  /** Dispatched and not back yet: neither held again nor settled. */
  running: boolean;
}

interface Key<M, D> {
  name: string;
  entries: Map<M, Entry<D>>;
  /** The message whose publish decides whether the key is still full; only it may publish while blocked. */
  probe: M | undefined;
  blocked: boolean;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

export interface HoldCallbacks<M, D> {
  /** Runs a held message through its path again (the router's own re-attempt, never a requeue). */
  retry: (message: M, data: D) => void;
  /** `full` changed: stop or resume taking new messages. */
  onFull: (full: boolean) => void;
  /** The number held changed (a gauge). */
  onCount?: (count: number) => void;
}

export class Holds<M extends object, D> {
  readonly #options: HoldOptions;
  readonly #callbacks: HoldCallbacks<M, D>;
  readonly #keys = new Map<string, Key<M, D>>();
  /** Which key holds a message, so settled() need not know it. */
  readonly #keyOf = new Map<M, Key<M, D>>();
  #bytes = 0;
  #full = false;

  constructor(options: HoldOptions, callbacks: HoldCallbacks<M, D>) {
    this.#options = options;
    this.#callbacks = callbacks;
  }

  /** Messages held (including those being tried again right now). */
  get count(): number {
    return this.#keyOf.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Past a bound: the router takes no new messages until enough held ones settle. */
  get full(): boolean {
    return this.#full;
  }

  /** Keys held now (for logs and tests). */
  get keys(): string[] {
    return [...this.#keys.keys()];
  }

  /** Whether `key` holds messages now (per message on the routed path: a lookup, no copy of `keys`). */
  holding(key: string): boolean {
    return this.#keys.has(key);
  }

  /** Whether `message` is held now (for any key). */
  has(message: M): boolean {
    return this.#keyOf.has(message);
  }

  /** Whether `key` holds its share: a new message for it is parked rather than held (parking.ts). */
  crowded(key: string): boolean {
    return (this.#keys.get(key)?.entries.size ?? 0) >= this.#options.maxPerKey;
  }

  /** Whether a message for `key` must be held without a publish: the key is blocked and `message` is not its probe. */
  blocks(key: string, message: M): boolean {
    const held = this.#keys.get(key);
    return held !== undefined && held.blocked && held.probe !== message;
  }

  /**
   * `message` could not reach the destination `key` now. A new message joins
   * the key's hold; the probe coming back means the destination is still
   * full: the next try waits longer.
   */
  hold(key: string, message: M, data: D, bytes: number): void {
    const previous = this.#keyOf.get(message);
    if (previous !== undefined && previous.name !== key) this.#detach(message, previous);
    let held = this.#keys.get(key);
    if (held === undefined) {
      held = { name: key, entries: new Map(), probe: undefined, blocked: true, failures: 0, timer: undefined };
      this.#keys.set(key, held);
    }
    const entry = held.entries.get(message);
    if (entry === undefined) {
      held.entries.set(message, { data, bytes, running: false });
      this.#keyOf.set(message, held);
      this.#bytes += bytes;
    } else entry.running = false;
    if (held.probe === message) {
      held.probe = undefined;
      held.failures += 1;
    }
    if (!held.blocked) {
      // An open key whose publish was nacked again: blocked anew, from the shortest wait.
      held.blocked = true;
      held.failures = 0;
    }
    this.#schedule(held);
    this.#checkFull();
  }

  /** `message` left the router's hands (delivered, refused, dead-lettered): the probe settling opens its key. */
  settled(message: M): void {
    const held = this.#keyOf.get(message);
    if (held === undefined) return;
    this.#remove(message, held);
    if (held.probe === message) {
      held.probe = undefined;
      held.blocked = false;
      held.failures = 0;
      clearTimeout(held.timer);
      held.timer = undefined;
      for (const [waiting, entry] of held.entries) this.#run(waiting, entry);
    }
    this.#checkFull();
  }

  /** Taken out of its key without opening it (a transient failure holds it elsewhere, router.ts #failed). */
  forget(message: M): void {
    const held = this.#keyOf.get(message);
    if (held === undefined) return;
    this.#detach(message, held);
    this.#checkFull();
  }

  /** Tries every blocked key now (a new configuration may settle held messages: removed recipient, new policy). */
  wake(): void {
    for (const held of this.#keys.values()) {
      if (held.blocked && held.probe === undefined) this.#tick(held);
    }
  }

  /** Drops every hold and its timer: the connection is gone and the broker has the messages back. */
  clear(): void {
    for (const held of this.#keys.values()) clearTimeout(held.timer);
    this.#keys.clear();
    this.#keyOf.clear();
    this.#bytes = 0;
    this.#checkFull();
  }

  #schedule(held: Key<M, D>): void {
    // One timer per key; while the probe is out, its answer schedules the next.
    if (held.timer !== undefined || held.probe !== undefined) return;
    const delay = backoffDelay(held.failures, this.#options.backoff);
    held.timer = setTimeout(() => {
      held.timer = undefined;
      this.#tick(held);
    }, delay);
  }

  /** The oldest held message probes; the others run their checks again (they are held again before publishing). */
  #tick(held: Key<M, D>): void {
    clearTimeout(held.timer);
    held.timer = undefined;
    if (this.#keys.get(held.name) !== held) return;
    const first = [...held.entries].find(([, entry]) => !entry.running);
    if (first === undefined) return;
    held.probe = first[0];
    for (const [message, entry] of held.entries) this.#run(message, entry);
  }

  #run(message: M, entry: Entry<D>): void {
    if (entry.running) return;
    entry.running = true;
    this.#callbacks.retry(message, entry.data);
  }

  /** Out of `held` without settling: a probe taken away leaves its key to probe again later. */
  #detach(message: M, held: Key<M, D>): void {
    this.#remove(message, held);
    if (held.probe !== message) return;
    held.probe = undefined;
    if (this.#keys.get(held.name) === held) this.#schedule(held);
  }

  #remove(message: M, held: Key<M, D>): void {
    const entry = held.entries.get(message);
    if (entry === undefined) return;
    held.entries.delete(message);
    this.#keyOf.delete(message);
    this.#bytes -= entry.bytes;
    if (held.entries.size === 0) {
      clearTimeout(held.timer);
      this.#keys.delete(held.name);
    }
  }

  #checkFull(): void {
    this.#callbacks.onCount?.(this.count);
    const full = this.count >= this.#options.maxMessages || this.#bytes >= this.#options.maxBytes;
    if (full === this.#full) return;
    this.#full = full;
    this.#callbacks.onFull(full);
  }
}
