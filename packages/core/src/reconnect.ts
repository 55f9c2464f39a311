/**
 * The one reconnect loop: open a session, wait until it is lost, back off,
 * open again, until the signal aborts. The SDK client and the router each
 * keep an AMQP connection up this way; the loop knows nothing of AMQP, so it
 * lives here and each caller says what a session is and what to report.
 *
 * Back-off (see backoff.ts): the failure count grows with every failed open
 * and every lost session, and resets once a session opens. A pause comes
 * even before the first retry after a loss: a peer that just closed us is
 * likely not back yet.
 */
import { backoffDelay, type BackoffOptions } from './backoff.js';

export interface ReconnectLoopOptions<S> {
  /** Opens one session; a rejection counts as a failure and is retried. */
  open(): Promise<S>;
  /** Resolves once the session is lost (never rejects). */
  closed(session: S): Promise<void>;
  /** Releases a session: after it was lost, or when stop came while it was opening. */
  drop(session: S): void;
  /** Aborting it ends the loop, including a pause or an open in progress. */
  signal: AbortSignal;
  backoff?: BackoffOptions;
  /** A session the caller already opened (e.g. to report the first failure to its own caller). */
  first?: S;
  /** Before each open. */
  onConnecting?(): void;
  /** A session is open; `reconnected` is false for the first one the loop has seen. */
  onOpen?(session: S, reconnected: boolean): void;
  onOpenFailed?(error: unknown): void;
  /** The session was lost (not on stop); the pause follows. */
  onLost?(session: S): void;
  /** Before each pause. */
  onPause?(delayMs: number): void;
  /** Injectable for tests; must reject when `signal` aborts (default: the global setTimeout, see sleepFor). */
  sleep?(ms: number, signal: AbortSignal): Promise<void>;
}

/** Runs until `signal` aborts; resolves then (never rejects). */
export async function reconnectLoop<S>(options: ReconnectLoopOptions<S>): Promise<void> {
  const { signal } = options;
  const sleep = options.sleep ?? sleepFor;
  let failures = 0;
  let opened = false;
  let session = options.first;
  const pause = async (): Promise<boolean> => {
    const delay = backoffDelay(failures++, options.backoff);
    options.onPause?.(delay);
    try {
      await sleep(delay, signal);
      return true;
    } catch {
      return false; // stopped
    }
  };
  while (!signal.aborted) {
    if (session === undefined) {
      options.onConnecting?.();
      try {
        session = await options.open();
      } catch (error) {
        options.onOpenFailed?.(error);
        if (signal.aborted || !(await pause())) break;
        continue;
      }
      // Stop may have come while opening, before it could see this session.
      if (signal.aborted) {
        options.drop(session);
        break;
      }
    }
    failures = 0;
    options.onOpen?.(session, opened);
    opened = true;
    await options.closed(session);
    options.drop(session);
    const lost = session;
    session = undefined;
    if (signal.aborted) break;
    options.onLost?.(lost);
    if (!(await pause())) break;
  }
}

/**
 * An abortable sleep on the global setTimeout rather than node:timers/promises: the test runner's mocked
 * timers (`mock.timers.enable({ apis: ['setTimeout'] })`) move it in Node 20, so back-off tests need no wall clock.
 */
export function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
