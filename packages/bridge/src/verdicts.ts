/**
 * Unknown recipients (docs/bridge.md "Unknown recipients"). The bridge does
 * not hold the CentOps directory (clients cannot read it); the node refuses a
 * message to an unknown recipient asynchronously, with a delivery report to
 * the sender's queue, and there is no positive signal for a message the
 * router accepted. So:
 *
 * - the first message to a recipient waits after the broker's confirm up to
 *   `waitMs` for a report about its id; a refusal becomes the HTTP answer
 *   (RECIPIENT_UNKNOWN → 422, POLICY_DENIED → 403, …), silence means the node
 *   took it, and the recipient is trusted for `cacheMs`;
 * - a message to a trusted recipient is answered right after the confirm;
 *   should the node still refuse it (the recipient was removed meanwhile),
 *   the report is logged and counted and the recipient is no longer trusted,
 *   so the next message to it waits for the verdict again.
 */
import type { ReceivedDeliveryReport as DeliveryReport } from '@dmr/contract';

export interface VerdictOptions {
  waitMs: number;
  cacheMs: number;
  /** Sent ids remembered so a late report can be tied to its recipient (default 10 000). */
  maxRemembered?: number;
}

interface Waiter {
  resolve: (report: DeliveryReport | undefined) => void;
}

/** How long a sent id is remembered for a late report; reports normally arrive within milliseconds. */
const REMEMBER_MS = 120_000;

export class Verdicts {
  readonly #options: VerdictOptions;
  readonly #trusted = new Map<string, number>();
  readonly #waiters = new Map<string, Waiter>();
  /** message id → [recipient, when sent]; insertion order = age order. */
  readonly #sent = new Map<string, [string, number]>();

  constructor(options: VerdictOptions) {
    this.#options = options;
  }

  /** Whether a message to `recipient` must wait for the node's verdict. */
  mustWait(recipient: string, now = Date.now()): boolean {
    if (this.#options.waitMs <= 0) return false;
    const until = this.#trusted.get(recipient);
    return until === undefined || until <= now;
  }

  /** Records a message about to be sent (before publishing: a report may beat the confirm). */
  sent(messageId: string, recipient: string, now = Date.now()): void {
    this.#sent.delete(messageId);
    this.#sent.set(messageId, [recipient, now]);
    const max = this.#options.maxRemembered ?? 10_000;
    for (const [id, [, at]] of this.#sent) {
      if (this.#sent.size <= max && at > now - REMEMBER_MS) break;
      this.#sent.delete(id);
    }
  }

  /**
   * Waits up to `waitMs` for a report about `messageId`; resolves with it, or
   * undefined when none came (the recipient is then trusted). Call `listen`
   * before publishing and `wait` after the confirm.
   */
  listen(messageId: string): { wait: () => Promise<DeliveryReport | undefined>; cancel: () => void } {
    let early: DeliveryReport | undefined;
    let resolveWaiter: ((report: DeliveryReport | undefined) => void) | undefined;
    const waiter: Waiter = {
      resolve: (report) => {
        if (resolveWaiter === undefined) early = report;
        else resolveWaiter(report);
      },
    };
    this.#waiters.set(messageId, waiter);
    const cancel = (): void => {
      if (this.#waiters.get(messageId) === waiter) this.#waiters.delete(messageId);
    };
    const wait = (): Promise<DeliveryReport | undefined> => {
      if (early !== undefined) {
        cancel();
        return Promise.resolve(early);
      }
      return new Promise<DeliveryReport | undefined>((resolve) => {
        const timer = setTimeout(() => {
          cancel();
          const recipient = this.#sent.get(messageId)?.[0];
          if (recipient !== undefined) this.#trusted.set(recipient, Date.now() + this.#options.cacheMs);
          resolve(undefined);
        }, this.#options.waitMs);
        resolveWaiter = (report) => {
          clearTimeout(timer);
          cancel();
          resolve(report);
        };
      });
    };
    return { wait, cancel };
  }

  /** A report from the node; returns the recipient it was about (when remembered) and whether a request waited. */
  onReport(report: DeliveryReport): { recipient: string | undefined; awaited: boolean } {
    const id = report.messageId;
    if (id === null) return { recipient: undefined, awaited: false };
    const recipient = this.#sent.get(id)?.[0];
    // A replay means the node already took this id: nothing to say against the recipient.
    if (recipient !== undefined && report.reason !== 'MESSAGE_REPLAYED' && report.status === 'rejected') {
      this.#trusted.delete(recipient);
    }
    const waiter = this.#waiters.get(id);
    if (waiter === undefined) return { recipient, awaited: false };
    this.#waiters.delete(id);
    waiter.resolve(report);
    return { recipient, awaited: true };
  }

  /** Trusted recipients right now (for tests and the health page). */
  get trustedCount(): number {
    return this.#trusted.size;
  }
}
