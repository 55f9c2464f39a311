/**
 * A dead letter of a router input (docs/decisions/0042-input-dead-letters.md):
 * a message that died in `dmr.ingress.<n>` or `dmr.mesh-ingress.<n>` before a
 * router settled it — its `expiration` ran out while it waited, or the
 * routers took it more than `ingressDeliveryLimit` times without a settle —
 * and which the inputs dead-letter to `dmr.dead-letter` under their own name.
 * Pure: which input it died in, how, and the properties it had there, from
 * which the dead-letter path derives whom to report to.
 *
 * What can be trusted in such a dead letter. `x-death[0]` is the broker's: it
 * prepends (or, for an entry with the same queue, reason and exchange, counts
 * and moves to the front) the entry of the death that brought the message
 * here, so its `queue`, `reason` and `exchange` are what happened, whatever
 * `x-death` a client put on its publish (parking's own entries are removed on
 * return, parking.ts). Its `exchange` says how the message came into the
 * input: `dmr.ingress` (a client, which may write nothing else), or
 * `dmr.mesh-ingress` (a peer's link), or `''` (a parked copy the parking
 * queue's TTL brought back: only the broker's dead-lettering and the router
 * publish there). Nothing else in it was checked by a router: the sender of
 * a client's message is its `user_id`, which RabbitMQ checked against the
 * publisher's login; a peer's message proves its sender only through its hop
 * chain, verified again by the dead-letter path.
 */
import type { ConsumeMessage } from 'amqplib';
import { INGRESS_QUEUE_PREFIX } from '@dmr/contract';
import { senderFromUserId } from '../message/validate.js';
import { latestDeath } from './envelope.js';
import { parkedProperties } from './parking.js';

/** How a message died in its input (the x-death reasons of RabbitMQ 3.10's quorum queues). */
export type InputDeathReason = 'expired' | 'delivery_limit' | 'rejected';

export interface InputDeath {
  /** `ingress`: a client's message; `mesh`: a peer node's. */
  input: 'ingress' | 'mesh';
  /** The input queue, `dmr.ingress.<n>` or `dmr.mesh-ingress.<n>`. */
  queue: string;
  /**
   * `rejected` is a router's own dead-letter after an internal error, which it
   * audited before the nack (router.ts #deadLetter); anything else RabbitMQ
   * may write is not an input death.
   */
  reason: InputDeathReason;
  /** The message came back from parking into the input (the exchange `''`): its user_id and expiration are in headers. */
  parked: boolean;
  /**
   * The properties the message had in its input, as it was published (or parked) there: dead-lettering removes
   * `expiration` (keeping it in the x-death entry as `original-expiration`), and a parked copy carries both
   * `user_id` and `expiration` as router headers. The hop signature covers `expiration`.
   */
  userId: string | undefined;
  expiration: string | undefined;
}

const INPUT = /^(dmr\.ingress|dmr\.mesh-ingress)\.(0|[1-9][0-9]?)$/;
const REASONS: ReadonlySet<string> = new Set<InputDeathReason>(['expired', 'delivery_limit', 'rejected']);

/** The input death of `message` (a delivery from `dmr.dead-letter-reports`), or undefined for any other dead letter. */
export function inputDeathOf(message: Pick<ConsumeMessage, 'properties'>): InputDeath | undefined {
  const headers = message.properties.headers;
  const death = latestDeath(headers);
  const queue = death?.queue;
  const reason = death?.reason;
  if (typeof queue !== 'string' || !INPUT.test(queue) || typeof reason !== 'string' || !REASONS.has(reason)) {
    return undefined;
  }
  const input = queue.startsWith(INGRESS_QUEUE_PREFIX) ? 'ingress' : 'mesh';
  const parked = death?.exchange === '';
  const stored = parked ? parkedProperties(headers) : undefined;
  const original = death?.['original-expiration'];
  const property = message.properties.expiration as unknown;
  return {
    input,
    queue,
    reason: reason as InputDeathReason,
    parked,
    // A parked dead letter that came back to the reports queue was unparked already (properties restored,
    // headers gone): the property then holds what the header held.
    userId: stored?.userId ?? (typeof message.properties.userId === 'string' ? message.properties.userId : undefined),
    expiration:
      stored?.expiration ??
      (typeof original === 'string' ? original : typeof property === 'string' ? property : undefined),
  };
}

/**
 * The client that published an ingress dead letter: the id in its `user_id`
 * (`spiffe://<trustDomain>/client/<id>`), which RabbitMQ checked against the
 * publishing connection's login — never `dmr-sender`, which only a router
 * sets and this message never met one. Undefined without one (a publish
 * without `user_id`, or a user that is not a client's certificate).
 */
export function ingressSender(death: InputDeath, trustDomain: string): string | undefined {
  if (death.input !== 'ingress') return undefined;
  return senderFromUserId(death.userId, trustDomain);
}

/**
 * The message as it was in its mesh input, for the hop-chain verifier: the
 * broker-checked `user_id` of the previous hop and the signed `expiration`
 * put back where dead-lettering (or parking) took them from.
 */
export function asInInput<T extends Pick<ConsumeMessage, 'properties' | 'content'>>(message: T, death: InputDeath): T {
  // What the input had, and nothing else: absent stays absent (the signature covers a missing expiration too).
  return { ...message, properties: { ...message.properties, userId: death.userId, expiration: death.expiration } };
}

/** Where the dead letter died, for a report's detail and the log: names only. */
export function inputDeathDetail(death: InputDeath): string {
  return death.reason === 'expired'
    ? `expired in ${death.queue} before a router took it`
    : `taken from ${death.queue} too often without a settle (delivery limit)`;
}
