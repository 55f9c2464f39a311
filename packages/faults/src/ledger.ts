/**
 * The books of one scenario: every message id the traffic sent, when DMR
 * accepted it (the broker's confirm, or the bridge's 202), when the receiving
 * application first handled it, how often it handled it, and whether a
 * delivery report came back for it. The table's numbers are read from here
 * and nowhere else, so "lost" means one thing in every row:
 *
 *   lost = accepted by DMR, never handled by the receiving application,
 *          and no delivery report about it.
 *
 * Duplicates are counted at the application: a second call of the receiving
 * handler (or a second handling by the bridge's endpoint) of an id it already
 * handled. Redeliveries are every arrival of an id after its first, whether
 * the application handled it again (a duplicate) or dropped it by its own
 * dedup (the endpoint's `Idempotency-Key`): delivery to an HTTP endpoint is
 * at least once, so these are expected; duplicates are not. Ids the ledger
 * did not send (the demo's, a report) are ignored.
 */

export interface LedgerEntry {
  sentAt: number;
  acceptedAt?: number;
  /** Why DMR did not accept it (the send rejected, the bridge answered non-2xx). */
  notAccepted?: string;
  deliveredAt?: number;
  deliveries: number;
  /** Arrivals the application dropped as repeats (its own dedup). */
  repeats: number;
  /** The reason of the first delivery report about it. */
  reported?: string;
}

export interface LedgerCounts {
  sent: number;
  /** Accepted by DMR: confirmed by the broker, or 202 from the bridge. */
  confirmed: number;
  /** Distinct ids the receiving application handled. */
  delivered: number;
  /** Accepted, not delivered, but a delivery report says why (a refusal, not a loss). */
  reported: number;
  lost: number;
  /** Handlings beyond the first, summed over ids. */
  duplicates: number;
  /** Arrivals beyond the first, handled again or dropped by the application's dedup, summed over ids. */
  redeliveries: number;
  /** Sent, never accepted (the sender was told: no 202, a rejected send). */
  notAccepted: number;
}

/** Counts of no traffic: a ledger's start, and the row of a scenario that failed before it sent. */
export function zeroCounts(): LedgerCounts {
  return { sent: 0, confirmed: 0, delivered: 0, reported: 0, lost: 0, duplicates: 0, redeliveries: 0, notAccepted: 0 };
}

export class Ledger {
  readonly #entries = new Map<string, LedgerEntry>();
  readonly #reasons = new Map<string, number>();
  readonly #now: () => number;
  /** Deliveries of ids this ledger never sent: counted, not judged. */
  foreign = 0;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  sent(id: string): void {
    if (!this.#entries.has(id)) this.#entries.set(id, { sentAt: this.#now(), deliveries: 0, repeats: 0 });
  }

  accepted(id: string): void {
    const entry = this.#entries.get(id);
    if (entry !== undefined && entry.acceptedAt === undefined) entry.acceptedAt = this.#now();
  }

  notAccepted(id: string, reason: string): void {
    const entry = this.#entries.get(id);
    if (entry !== undefined && entry.acceptedAt === undefined) entry.notAccepted ??= reason;
  }

  /** The receiving application handled `id` (once per call). */
  delivered(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) {
      this.foreign++;
      return;
    }
    entry.deliveries++;
    entry.deliveredAt ??= this.#now();
  }

  /** `id` arrived again and the application dropped it as a repeat (its dedup on the idempotency key). */
  repeated(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) {
      this.foreign++;
      return;
    }
    entry.repeats++;
  }

  reported(id: string, reason: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    if (entry.reported === undefined) {
      entry.reported = reason;
      this.#reasons.set(reason, (this.#reasons.get(reason) ?? 0) + 1);
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Ids accepted and neither delivered nor reported yet: what the drain waits for. */
  outstanding(): string[] {
    const ids: string[] = [];
    for (const [id, entry] of this.#entries) {
      if (entry.acceptedAt !== undefined && entry.deliveredAt === undefined && entry.reported === undefined) {
        ids.push(id);
      }
    }
    return ids;
  }

  counts(): LedgerCounts {
    const counts: LedgerCounts = { ...zeroCounts(), sent: this.#entries.size };
    for (const entry of this.#entries.values()) {
      if (entry.acceptedAt !== undefined) counts.confirmed++;
      else if (entry.notAccepted !== undefined) counts.notAccepted++;
      if (entry.deliveredAt !== undefined) counts.delivered++;
      counts.duplicates += Math.max(0, entry.deliveries - 1);
      counts.redeliveries += Math.max(0, entry.deliveries - 1) + entry.repeats;
      if (entry.acceptedAt !== undefined && entry.deliveredAt === undefined) {
        if (entry.reported === undefined) counts.lost++;
        else counts.reported++;
      }
    }
    return counts;
  }

  /** Report reasons and how many ids each covered, most frequent first. */
  reportReasons(): Array<[string, number]> {
    return [...this.#reasons].sort((a, b) => b[1] - a[1]);
  }

  /** Reasons sends were not accepted, most frequent first. */
  notAcceptedReasons(): Array<[string, number]> {
    const reasons = new Map<string, number>();
    for (const entry of this.#entries.values()) {
      if (entry.acceptedAt === undefined && entry.notAccepted !== undefined) {
        reasons.set(entry.notAccepted, (reasons.get(entry.notAccepted) ?? 0) + 1);
      }
    }
    return [...reasons].sort((a, b) => b[1] - a[1]);
  }

  /**
   * How long after `healedAt` (the fault's end: the kill of a process that
   * heals itself, the restart or the clear of an outage) the stream was whole
   * again: every id accepted until then delivered or reported, and the first
   * id sent after it delivered. Undefined when that never happened (a loss,
   * or nothing was sent after the fault).
   */
  recoveryMs(healedAt: number): number | undefined {
    let settled = healedAt;
    let firstAfter: number | undefined;
    let firstAfterSent = Number.POSITIVE_INFINITY;
    for (const entry of this.#entries.values()) {
      const accepted = entry.acceptedAt;
      if (accepted !== undefined && accepted <= healedAt) {
        if (entry.deliveredAt !== undefined) settled = Math.max(settled, entry.deliveredAt);
        else if (entry.reported === undefined) return undefined;
      }
      if (entry.sentAt > healedAt && entry.sentAt < firstAfterSent) {
        firstAfterSent = entry.sentAt;
        firstAfter = entry.deliveredAt;
        if (firstAfter === undefined && entry.reported !== undefined) firstAfter = entry.sentAt;
      }
    }
    if (firstAfter === undefined) return undefined;
    return Math.max(settled, firstAfter) - healedAt;
  }
}
