/**
 * The scenario's traffic: a paced stream of messages from one client to
 * another, every id written into a Ledger when it is sent, accepted,
 * handled by the receiving application, or reported. Two kinds:
 *
 * - SdkTraffic: both ends are SDK clients (`@dmr/sdk`), the sender keeping
 *   every unconfirmed send pending across outages as the SDK does; the
 *   receiver's handler is "the application".
 * - BridgeTraffic (bridge-traffic.ts): a service POSTing to one `dmr bridge
 *   run` process and an HTTP endpoint behind another.
 *
 * Sending never waits for a send to finish: a stream does not stop because
 * one message is stuck, and an outage shows as sends pending, not as a
 * slower stream.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDmrError } from '@dmr/core';
import { DmrClient } from '@dmr/sdk';
import { Ledger } from './ledger.js';
import type { ClientFiles } from './world.js';

export interface Traffic {
  readonly ledger: Ledger;
  /** Starts sending `ratePerSecond` messages a second until stop(). */
  start(ratePerSecond: number): void;
  /** Stops sending and waits (up to `timeoutMs`) for the sends under way to settle. */
  stop(timeoutMs: number): Promise<void>;
  /** Sends in flight (neither accepted nor refused yet). */
  readonly inFlight: number;
  close(): Promise<void>;
}

/** A fixed-rate loop calling `send` with a fresh id, at most `maxInFlight` unsettled. */
export class Pacer {
  readonly #send: (id: string) => Promise<void>;
  readonly #maxInFlight: number;
  readonly #pending = new Set<Promise<void>>();
  #running = false;
  #loop: Promise<void> | undefined;

  constructor(send: (id: string) => Promise<void>, maxInFlight = 5_000) {
    this.#send = send;
    this.#maxInFlight = maxInFlight;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  start(ratePerSecond: number): void {
    if (this.#running) return;
    this.#running = true;
    const intervalMs = 1000 / ratePerSecond;
    this.#loop = (async () => {
      let next = performance.now();
      while (this.#running) {
        if (this.#pending.size < this.#maxInFlight) {
          const sending = this.#send(randomUUID()).finally(() => this.#pending.delete(sending));
          this.#pending.add(sending);
        }
        next += intervalMs;
        const wait = next - performance.now();
        // Behind schedule after a pause (a loaded machine): start again from now, not with a burst.
        if (wait < -1000) next = performance.now();
        if (wait > 0) await sleep(wait);
      }
    })();
  }

  async stop(timeoutMs: number): Promise<void> {
    this.#running = false;
    await this.#loop;
    await Promise.race([Promise.allSettled([...this.#pending]), sleep(timeoutMs)]);
  }
}

export interface SdkTrafficOptions {
  from: ClientFiles;
  to: ClientFiles;
  fromUrl: string;
  toUrl: string;
  /** The sender renews its certificate through CentOps at this URL (the SDK's `renew`), as a client in production does. */
  renewApiUrl?: string;
}

/** A renewal the sender made: when, and until when the new certificate is valid. */
export interface Renewal {
  at: number;
  notAfter: Date;
}

export class SdkTraffic implements Traffic {
  readonly ledger = new Ledger();
  /** The sender's certificate renewals, in order. */
  readonly renewals: Renewal[] = [];
  readonly #sender: DmrClient;
  readonly #receiver: DmrClient;
  readonly #pacer: Pacer;

  private constructor(sender: DmrClient, receiver: DmrClient, to: string) {
    this.#sender = sender;
    this.#receiver = receiver;
    this.#pacer = new Pacer(async (id) => {
      this.ledger.sent(id);
      try {
        await sender.send({ to, type: 'ChatMessage', body: { fault: 'probe' }, messageId: id });
        this.ledger.accepted(id);
      } catch (error) {
        this.ledger.notAccepted(id, isDmrError(error) ? error.code : String(error));
      }
    });
  }

  static async open(options: SdkTrafficOptions): Promise<SdkTraffic> {
    const connect = (files: ClientFiles, url: string, renewApiUrl?: string): Promise<DmrClient> =>
      DmrClient.connect({
        ...(renewApiUrl === undefined ? {} : { renew: { apiUrl: renewApiUrl } }),
        url,
        node: files.node,
        id: files.id,
        tls: { certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile },
        // Outages here are seconds to minutes: come back within 2 s of the node, and never give up a send.
        backoff: { initialMs: 100, maxMs: 2_000 },
        maxSendAttempts: 1_000,
      });
    const receiver = await connect(options.to, options.toUrl);
    const sender = await connect(options.from, options.fromUrl, options.renewApiUrl);
    const traffic = new SdkTraffic(sender, receiver, options.to.id);
    sender.on('renewed', (identity) => traffic.renewals.push({ at: Date.now(), notAfter: identity.notAfter }));
    // Background reconnect failures are the scenario's point, not errors of the run.
    for (const client of [sender, receiver]) client.on('error', () => undefined);
    sender.on('report', (report) => {
      if (report.messageId !== null) traffic.ledger.reported(report.messageId, report.reason);
    });
    await receiver.receive(async (message) => traffic.ledger.delivered(message.id));
    // Reports arrive on the sender's own queue: it must consume it (anything else there is ignored).
    await sender.receive(async () => undefined);
    return traffic;
  }

  get inFlight(): number {
    return this.#pacer.inFlight;
  }

  start(ratePerSecond: number): void {
    this.#pacer.start(ratePerSecond);
  }

  stop(timeoutMs: number): Promise<void> {
    return this.#pacer.stop(timeoutMs);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#sender.close(), this.#receiver.close()]);
  }
}

/**
 * Waits until every accepted message was delivered or reported and no send
 * is in flight, or until nothing changed for `quietMs` (then the rest is
 * what the table calls lost), or `maxMs` passed.
 */
export async function drain(
  traffic: Traffic,
  options: { quietMs: number; maxMs: number; onProgress?: (outstanding: number) => void },
): Promise<void> {
  const deadline = Date.now() + options.maxMs;
  let last = -1;
  let changedAt = Date.now();
  for (;;) {
    const outstanding = traffic.ledger.outstanding().length + traffic.inFlight;
    if (outstanding === 0) return;
    if (outstanding !== last) {
      last = outstanding;
      changedAt = Date.now();
      options.onProgress?.(outstanding);
    }
    if (Date.now() - changedAt > options.quietMs || Date.now() > deadline) return;
    await sleep(200);
  }
}
