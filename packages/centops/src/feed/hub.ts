/**
 * RevisionHub: tells the feed's waiting requests and open streams that the
 * registry revision moved.
 *
 * Two sources of news, because CentOps may run as several replicas over one
 * PostgreSQL database:
 * - `publish(revision)`: the server calls it after every write it accepted,
 *   so changes made through this process reach subscribers at once;
 * - polling: while anyone is listening, the hub reads `store.revision()`
 *   every `pollIntervalMs` (default 1 s). That is one indexed one-row read,
 *   and it is how a change made through another replica (or `dmr ctl`
 *   against another process, or SQLite written by another process) is seen
 *   within a second. PostgreSQL LISTEN/NOTIFY would cut that delay but
 *   needs a dedicated connection per replica and a NOTIFY in the write
 *   transaction; polling is enough for the p99 ≤ 1 s goal and works on
 *   SQLite as well. Without listeners the hub does not poll at all.
 *
 * Revisions only move forward: an older or equal number is ignored, so a
 * late publish from a slow request cannot make anyone go back.
 */

export interface RevisionSource {
  revision(): Promise<number>;
}

export interface RevisionHubOptions {
  /** Where to poll the revision from; without it the hub only knows what is published. */
  store?: RevisionSource;
  /** Poll interval while someone listens (ms); 0 turns polling off. Default 1000. */
  pollIntervalMs?: number;
  /** Told about poll failures (the database may be briefly away); polling goes on. */
  onPollError?: (error: unknown) => void;
}

export type RevisionListener = (revision: number) => void;

export class RevisionHub {
  readonly #listeners = new Set<RevisionListener>();
  readonly #store: RevisionSource | undefined;
  readonly #pollIntervalMs: number;
  readonly #onPollError: (error: unknown) => void;
  #revision = -1;
  #timer: NodeJS.Timeout | undefined;
  #polling = false;
  #closed = false;

  constructor(options: RevisionHubOptions = {}) {
    this.#store = options.store;
    this.#pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.#onPollError = options.onPollError ?? (() => undefined);
  }

  /** The newest revision the hub knows of (-1 before any). */
  get revision(): number {
    return this.#revision;
  }

  /** How many listeners and waiters are registered: for tests and metrics, and to prove nothing leaks. */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** Announces `revision`; listeners hear it once, and only if it is newer than any before. */
  publish(revision: number): void {
    if (!Number.isSafeInteger(revision) || revision <= this.#revision || this.#closed) return;
    this.#revision = revision;
    // A copy: a listener may unsubscribe (or subscribe) while we iterate.
    for (const listener of [...this.#listeners]) {
      try {
        listener(revision);
      } catch {
        // One broken subscriber must not keep the others from hearing the news.
      }
    }
  }

  /** Calls `listener` for every newer revision until the returned function is called. */
  subscribe(listener: RevisionListener): () => void {
    if (this.#closed) return () => undefined;
    this.#listeners.add(listener);
    this.#schedulePoll();
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stopPolling();
    };
  }

  /**
   * Resolves with the first revision newer than `after`, or `undefined` when
   * `timeoutMs` passes or `signal` aborts first (a long-poll whose client went
   * away). Resolves at once if a newer revision is already known.
   */
  waitForNewer(after: number, timeoutMs: number, signal?: AbortSignal): Promise<number | undefined> {
    if (this.#revision > after) return Promise.resolve(this.#revision);
    if (this.#closed || signal?.aborted === true || timeoutMs <= 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const finish = (value: number | undefined) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        unsubscribe();
        resolve(value);
      };
      const onAbort = () => finish(undefined);
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      const unsubscribe = this.subscribe((revision) => {
        if (revision > after) finish(revision);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Reads the store's revision now and publishes it; what the poll timer does. */
  async refresh(): Promise<number> {
    if (this.#store !== undefined) this.publish(await this.#store.revision());
    return this.#revision;
  }

  /** Stops polling and drops every listener (waiters resolve when their timers fire or their signals abort). */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#stopPolling();
  }

  #schedulePoll(): void {
    if (this.#store === undefined || this.#pollIntervalMs <= 0 || this.#timer !== undefined || this.#closed) return;
    if (this.#listeners.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#poll();
    }, this.#pollIntervalMs);
    // The timer must never keep a process alive that is otherwise done.
    this.#timer.unref();
  }

  async #poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      await this.refresh();
    } catch (error) {
      this.#onPollError(error);
    } finally {
      this.#polling = false;
      this.#schedulePoll();
    }
  }

  #stopPolling(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
