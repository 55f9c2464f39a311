/**
 * The load generator and the final consumer of one row, both in the bench
 * process (the relay and the router under test run in their own processes).
 *
 * Every message carries its sequence number in the SEQ_HEADER header (never
 * in the body: the DMR path must see an opaque payload). Latency is
 * performance.now() (monotonic, hrtime-based) at the consumer minus the same
 * clock at the publish call, so both ends read one clock in one process.
 *
 * A point = warm-up (unmeasured) + measured window, then a drain:
 *   - fixed rate (open loop): a 1 ms timer publishes what the schedule says is
 *     due. A path that falls behind builds a backlog; past `backlogCap`
 *     messages in flight the slots are skipped (and reported), so a slow path
 *     shows a lower achieved rate instead of an unbounded queue.
 *   - max (closed loop): at most `window` messages in flight. In flight means
 *     published and not yet BOTH confirmed and delivered: a window over
 *     confirms alone does not bound anything on a relay path, because quorum
 *     queues confirm at once and never push back (RABBITMQ-FACTS), so the
 *     first queue's backlog — and the latency — would grow for as long as the
 *     point lasts and spill into the next one.
 * Throughput = deliveries at the final consumer during the measured window /
 * its length. Latency = every message published during the measured window.
 */
import { performance } from 'node:perf_hooks';
import type { Channel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import type { Load } from './options.js';
import type { PointResult } from './report.js';
import { summarize } from '@dmr/core';

/** An `app-*` header: the only client headers besides DMR's own that a router delivers (packages/node README). */
export const SEQ_HEADER = 'app-bench-seq';

const CONFIRMED = 1;
const ARRIVED = 2;
const NACKED = 4;
/** Given up on by abandonInFlight(): no longer in flight, whatever happens to it later. */
const ABANDONED = 8;
const DONE = CONFIRMED | ARRIVED;

function settled(flags: number): boolean {
  return (flags & DONE) === DONE || (flags & (NACKED | ABANDONED)) !== 0;
}

export interface ProbeTarget {
  exchange: string;
  routingKey: string;
  /** Properties of message `seq`; SEQ_HEADER is added to its headers. */
  properties(seq: number): Options.Publish;
}

export interface ProbeOptions {
  publisher: ConfirmChannel;
  consumer: Channel;
  /** The queue the final consumer reads. */
  queue: string;
  target: ProbeTarget;
  body: Buffer;
  /** Unacknowledged deliveries the final consumer may hold. */
  prefetch?: number;
  /**
   * The clock in milliseconds (default performance.now). Tests pass the test runner's mocked Date.now, so
   * that the schedule, the timers and the latencies all run on one clock they control.
   */
  now?: () => number;
}

export interface PointOptions {
  load: Load;
  warmupMs: number;
  measureMs: number;
  /** In-flight limit of 'max' points. */
  window: number;
  /** In-flight limit of fixed-rate points before slots are skipped (default 50,000). */
  backlogCap?: number;
  /** Give up waiting for the measured messages after this long without a delivery (default 10 s). */
  drainIdleMs?: number;
  /** Called as the measured window opens; what it returns is called as it closes (CPU sampling). */
  onWindow?: () => () => void;
}

/** The sequence number in a delivery's headers, or undefined when absent or not a whole number. */
export function seqOf(message: Pick<ConsumeMessage, 'properties'>): number | undefined {
  const value: unknown = message.properties.headers?.[SEQ_HEADER];
  const seq = typeof value === 'bigint' ? Number(value) : value;
  return typeof seq === 'number' && Number.isInteger(seq) && seq >= 0 ? seq : undefined;
}

/** How many publishes a fixed-rate schedule has due `elapsedMs` into it. */
export function dueByNow(elapsedMs: number, ratePerS: number): number {
  return elapsedMs <= 0 ? 0 : Math.floor((elapsedMs * ratePerS) / 1000);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class Probe {
  readonly #options: ProbeOptions;
  readonly #now: () => number;
  #sentAt = new Float64Array(1 << 16);
  #arrivedAt = new Float64Array(1 << 16);
  #flags = new Uint8Array(1 << 16);
  #nextSeq = 0;
  #inFlight = 0;
  /** Deliveries that were not one of ours or were a second copy (at-least-once allows duplicates). */
  #strays = 0;
  #lastDeliveryAt = 0;
  #blocked = false;
  #wake: (() => void) | undefined;
  #consumerTag: string | undefined;
  #window: { start: number; end: number; received: number } | undefined;

  constructor(options: ProbeOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
  }

  get strays(): number {
    return this.#strays;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  async start(): Promise<void> {
    const { consumer, queue, publisher } = this.#options;
    await consumer.prefetch(this.#options.prefetch ?? 500);
    publisher.on('drain', () => {
      this.#blocked = false;
      this.#poke();
    });
    const { consumerTag } = await consumer.consume(queue, (message) => this.#onDelivery(message), { noAck: false });
    this.#consumerTag = consumerTag;
  }

  async stop(): Promise<void> {
    if (this.#consumerTag !== undefined) await this.#options.consumer.cancel(this.#consumerTag).catch(() => undefined);
  }

  #grow(seq: number): void {
    if (seq < this.#flags.length) return;
    let size = this.#flags.length;
    while (size <= seq) size *= 2;
    const sentAt = new Float64Array(size);
    sentAt.set(this.#sentAt);
    const arrivedAt = new Float64Array(size);
    arrivedAt.set(this.#arrivedAt);
    const flags = new Uint8Array(size);
    flags.set(this.#flags);
    this.#sentAt = sentAt;
    this.#arrivedAt = arrivedAt;
    this.#flags = flags;
  }

  #mark(seq: number, flag: number): void {
    const before = this.#flags[seq] ?? 0;
    const after = before | flag;
    this.#flags[seq] = after;
    if (!settled(before) && settled(after)) {
      this.#inFlight -= 1;
      this.#poke();
    }
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #onDelivery(message: ConsumeMessage | null): void {
    if (message === null) return; // consumer cancelled by the broker
    const now = this.#now();
    this.#options.consumer.ack(message);
    this.#lastDeliveryAt = now;
    const seq = seqOf(message);
    if (seq === undefined || seq >= this.#nextSeq || ((this.#flags[seq] ?? 0) & ARRIVED) !== 0) {
      this.#strays += 1;
      return;
    }
    this.#arrivedAt[seq] = now;
    const window = this.#window;
    if (window !== undefined && now >= window.start && now < window.end) window.received += 1;
    this.#mark(seq, ARRIVED);
  }

  /** Publishes one message; sets #blocked when the channel asks to wait for 'drain'. */
  #publishOne(): void {
    const seq = this.#nextSeq++;
    this.#grow(seq);
    const { target, publisher, body } = this.#options;
    const properties = target.properties(seq);
    const options: Options.Publish = {
      ...properties,
      persistent: true,
      headers: { ...properties.headers, [SEQ_HEADER]: seq },
    };
    this.#inFlight += 1;
    this.#sentAt[seq] = this.#now();
    const writable = publisher.publish(target.exchange, target.routingKey, body, options, (error) =>
      this.#mark(seq, error === null || error === undefined ? CONFIRMED : NACKED),
    );
    if (!writable) this.#blocked = true;
  }

  /** Waits until poked (a confirm, a delivery, 'drain') or `ms` passed. */
  #waitForEvent(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  async runPoint(options: PointOptions): Promise<PointResult> {
    const backlogCap = options.backlogCap ?? 50_000;
    const t0 = this.#now();
    const start = t0 + options.warmupMs;
    const end = start + options.measureMs;
    const window = { start, end, received: 0 };
    this.#window = window;
    let firstSeq: number | undefined;
    let skipped = 0;
    let slots = 0;
    let closeWindow: (() => void) | undefined;
    for (;;) {
      const now = this.#now();
      if (now >= end) break;
      if (firstSeq === undefined && now >= start) {
        firstSeq = this.#nextSeq;
        closeWindow = options.onWindow?.();
      }
      if (options.load === 'max') {
        while (!this.#blocked && this.#inFlight < options.window) this.#publishOne();
        await this.#waitForEvent(Math.max(1, Math.min(50, end - now)));
      } else {
        const due = dueByNow(now - t0, options.load);
        while (slots < due && !this.#blocked) {
          slots += 1;
          if (this.#inFlight >= backlogCap) {
            if (now >= start) skipped += 1;
            continue;
          }
          this.#publishOne();
        }
        await sleep(1);
      }
    }
    closeWindow?.();
    const lastSeq = this.#nextSeq;
    const first = firstSeq ?? lastSeq;
    // Wait for the measured messages (and anything before them) while deliveries keep coming.
    const drainIdleMs = options.drainIdleMs ?? 10_000;
    this.#lastDeliveryAt = Math.max(this.#lastDeliveryAt, this.#now());
    while (this.#inFlight > 0 && this.#now() - this.#lastDeliveryAt < drainIdleMs) {
      await this.#waitForEvent(100);
    }
    this.#window = undefined;
    const latencies: number[] = [];
    let nacked = 0;
    let missing = 0;
    for (let seq = first; seq < lastSeq; seq++) {
      const flags = this.#flags[seq] ?? 0;
      if ((flags & ARRIVED) !== 0) latencies.push((this.#arrivedAt[seq] ?? 0) - (this.#sentAt[seq] ?? 0));
      else if ((flags & NACKED) !== 0) nacked += 1;
      else missing += 1;
    }
    const measuredMs = options.measureMs;
    return {
      load: options.load,
      offered: options.load === 'max' ? null : options.load,
      sent: lastSeq - first,
      received: window.received,
      achieved: (window.received * 1000) / measuredMs,
      latencyMs: summarize(latencies),
      nacked,
      missing,
      skipped,
      measuredMs,
    };
  }

  /**
   * Forgets messages that never arrived (after a point gave up on them), so
   * the next point starts with an empty window.
   */
  abandonInFlight(): number {
    const abandoned = this.#inFlight;
    this.#inFlight = 0;
    for (let seq = 0; seq < this.#nextSeq; seq++) {
      const flags = this.#flags[seq] ?? 0;
      if (!settled(flags)) this.#flags[seq] = flags | ABANDONED;
    }
    return abandoned;
  }
}
