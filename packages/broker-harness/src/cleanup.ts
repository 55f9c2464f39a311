/**
 * Process hooks for harnesses tied to their process, so that a test that
 * fails, throws or is interrupted does not leave brokers running:
 *  - on 'exit' (nothing async runs any more): SIGKILL what is left;
 *  - on SIGINT/SIGTERM/SIGHUP: a graceful stop, then the signal's default
 *    effect (unless the program has its own handlers); a second signal
 *    during that stop kills at once.
 * The watchdog covers the cases where even these do not run (SIGKILL).
 */

export interface Cleanable {
  /** Graceful stop; must settle. */
  stopForSignal(): Promise<void>;
  /** Synchronous last resort. */
  killNowSync(reason: string): void;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
type HandledSignal = (typeof SIGNALS)[number];
const SIGNAL_EXIT_CODES: Record<HandledSignal, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };
const GRACEFUL_LIMIT_MS = 60_000;

const onExitSet = new Set<Cleanable>();
const onSignalSet = new Set<Cleanable>();
let stoppingForSignal = false;

function onExit(): void {
  for (const harness of onExitSet) harness.killNowSync('the process exited without stopping its brokers');
  onExitSet.clear();
}

function onSignal(signal: HandledSignal): void {
  if (stoppingForSignal) {
    for (const harness of onExitSet) harness.killNowSync(`second ${signal} while stopping`);
    process.exit(SIGNAL_EXIT_CODES[signal]);
  }
  stoppingForSignal = true;
  const harnesses = [...onSignalSet];
  const limit = new Promise<void>((resolve) => setTimeout(resolve, GRACEFUL_LIMIT_MS).unref());
  void Promise.race([Promise.allSettled(harnesses.map((harness) => harness.stopForSignal())), limit]).then(() => {
    for (const harness of harnesses) harness.killNowSync(`${signal}: graceful stop did not finish`);
    uninstallSignalHandlers();
    stoppingForSignal = false;
    // Keep the signal's usual meaning: terminate, unless the program handles it itself.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

const handlers = new Map<HandledSignal, () => void>();

function installSignalHandlers(): void {
  if (handlers.size > 0) return;
  for (const signal of SIGNALS) {
    const handler = (): void => onSignal(signal);
    handlers.set(signal, handler);
    process.on(signal, handler);
  }
}

function uninstallSignalHandlers(): void {
  for (const [signal, handler] of handlers) process.off(signal, handler);
  handlers.clear();
}

export function registerCleanup(harness: Cleanable, options: { signals: boolean }): void {
  if (onExitSet.size === 0) process.on('exit', onExit);
  onExitSet.add(harness);
  if (options.signals) {
    onSignalSet.add(harness);
    installSignalHandlers();
  }
}

export function unregisterCleanup(harness: Cleanable): void {
  onExitSet.delete(harness);
  onSignalSet.delete(harness);
  if (onExitSet.size === 0) process.off('exit', onExit);
  if (onSignalSet.size === 0 && !stoppingForSignal) uninstallSignalHandlers();
}
