/**
 * Acknowledgements of one AMQP channel, batched per event-loop turn.
 *
 * Every `basic.ack` on a quorum queue is a Raft command the broker writes to
 * its log. A consumer that finishes several messages in one turn can say so
 * with one `basic.ack` (`multiple`) for the highest tag — but `multiple`
 * acknowledges EVERY outstanding delivery up to that tag, so it is only sent
 * over a run of deliveries that are all finished. The batcher therefore keeps
 * the channel's outstanding deliveries in tag order and, once per turn, acks
 * the finished run at the front with one frame and any other finished ones
 * one by one (a slow message must not hold back the acks of the messages
 * after it). Negative acknowledgements go out at once, one by one.
 *
 * Every delivery of the channel must be `track`ed when it arrives (in the
 * order the channel delivers them) and settled through the batcher only.
 */

export interface Delivery {
  fields: { deliveryTag: number };
}

/** The part of an amqplib channel the batcher settles with. */
export interface AckingChannel<M extends Delivery> {
  ack(message: M, allUpTo?: boolean): void;
  nack(message: M, allUpTo?: boolean, requeue?: boolean): void;
}

export class AckBatcher<M extends Delivery> {
  readonly #channel: AckingChannel<M>;
  /** Outstanding deliveries in tag order (a Map iterates in insertion order), and whether each is acked. */
  readonly #outstanding = new Map<number, { message: M; acked: boolean }>();
  #acked = 0;
  #scheduled = false;

  constructor(channel: AckingChannel<M>) {
    this.#channel = channel;
  }

  /** Deliveries not settled on the wire yet. */
  get outstanding(): number {
    return this.#outstanding.size;
  }

  /** Registers a delivery as it arrives; tags must increase. */
  track(message: M): void {
    this.#outstanding.set(message.fields.deliveryTag, { message, acked: false });
  }

  /** Acknowledges, at the end of this turn. */
  ack(message: M): void {
    const entry = this.#outstanding.get(message.fields.deliveryTag);
    if (entry === undefined || entry.acked) return;
    entry.acked = true;
    this.#acked += 1;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Negative acknowledgement, now (it must not be covered by a later multiple ack: it is sent before it). */
  nack(message: M, requeue: boolean): void {
    const entry = this.#outstanding.get(message.fields.deliveryTag);
    // Unknown, or already acked in this turn (the ack stands).
    if (entry === undefined || entry.acked) return;
    this.#outstanding.delete(message.fields.deliveryTag);
    this.#channel.nack(message, false, requeue);
  }

  /** Sends the acks of this turn now (also called by the scheduled turn). */
  flush(): void {
    this.#scheduled = false;
    if (this.#acked === 0) return;
    try {
      this.#sendAcks();
    } catch {
      // The channel closed under us: the broker requeues what it did not get an ack for.
      this.discard();
    }
  }

  #sendAcks(): void {
    let last: M | undefined;
    let run = 0;
    for (const [tag, entry] of this.#outstanding) {
      if (!entry.acked) break;
      this.#outstanding.delete(tag);
      last = entry.message;
      run += 1;
    }
    if (last !== undefined) {
      this.#channel.ack(last, run > 1);
    }
    this.#acked -= run;
    if (this.#acked === 0) return;
    for (const [tag, entry] of this.#outstanding) {
      if (!entry.acked) continue;
      this.#outstanding.delete(tag);
      this.#channel.ack(entry.message, false);
    }
    this.#acked = 0;
  }

  /** The channel is gone: the broker requeues whatever was outstanding; nothing more is sent. */
  discard(): void {
    this.#outstanding.clear();
    this.#acked = 0;
  }
}
