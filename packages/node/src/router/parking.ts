/**
 * Parking (docs/decisions/0039-parking.md): the copy a router publishes to
 * `dmr.parking` for a message it cannot hold, and the same message again
 * when the parking queue's TTL dead-letters it back into the input it came
 * from.
 *
 * The copy must come back as the message it was, because the router judges
 * it again from the start. Two properties cannot travel as they are:
 * `user_id` (RabbitMQ refuses a publish whose user_id is not the
 * publisher's, and the router is not an impersonator) and `expiration`
 * (it would expire in the parking queue on its own clock, and dead-lettering
 * for a per-message TTL removes it). Both ride in router-owned headers and
 * are put back on return, with when the router first took the message (the
 * skew check judges as of then, hold.ts) and whether its rejected copy is
 * already stored. Dead-lettering adds `x-death` entries naming the parking
 * queue: removed again, so a dead letter's own death (what its report says)
 * is still the first.
 *
 * Why a returned copy can be trusted: it arrives with the exchange `''`.
 * Only the broker's dead-lettering (the parking queues' dead-letter exchange
 * is the default one) and the router's own user may publish there; clients
 * write only `dmr.ingress`, peers only `dmr.mesh-ingress`. So the headers
 * below are DMR's own on such a delivery, and a client setting them on its
 * publish is refused HEADER_RESERVED like any `dmr-` header.
 */
import type { ConsumeMessage, Options } from 'amqplib';
import { PARKING_QUEUE_PREFIX } from '@dmr/contract';
import { routingHeader } from '../message/headers.js';
import { recipientKey } from './outcome.js';

const USER_ID = 'dmr-parked-user-id';
const EXPIRATION = 'dmr-parked-expiration';
const TAKEN_AT = 'dmr-parked-taken-at';
const COPIED = 'dmr-parked-copied';
const PARKED_HEADERS: readonly string[] = [USER_ID, EXPIRATION, TAKEN_AT, COPIED];
/** What a quorum queue adds on redelivery: the parking queue's own count starts again. */
const DELIVERY_COUNT = 'x-delivery-count';

/** What a returned copy says about the message before it was parked. */
export interface Unparked {
  /** When the router first took the message (ms). */
  takenAt: number;
  /** Its rejected copy is stored already (a refusal whose report waited): not stored again. */
  copied: boolean;
}

/** Every recipient's hold key starts so (outcome.ts recipientKey): a local recipient, or a local sender's reports. */
const RECIPIENT_KEY_PREFIX = recipientKey('');

/**
 * Whether the overflow of the destination `key` is parked: a recipient's (or a local sender's, for its reports),
 * never a link's. A link has a durable, bounded buffer of its own (`dmr.outbound.<peer>`), and past it the origin
 * pushes back to the edge by contract (decision 0026). Parking it as well went wrong in a partition: the origin's
 * ingress fills (that push-back), parked copies returning into it are refused, and RabbitMQ's at-least-once
 * dead-letter worker re-sends a refused dead letter only after `dead_letter_worker_publisher_confirm_timeout`
 * (180 s in 3.10), at most 32 at a time per queue, so a healed link's last messages waited minutes
 * (partition.integration, decision 0039).
 */
export function parksFor(key: string): boolean {
  return key.startsWith(RECIPIENT_KEY_PREFIX);
}

/**
 * Whether `message` may be parked: not when it names extra routing keys
 * (CC/BCC), which the parking publish would route to (a refusal for them
 * may be what waits for its report). Such a message stays held instead.
 */
export function parkable(message: ConsumeMessage): boolean {
  return routingHeader(message.properties.headers) === undefined;
}

/** The publish options of the parked copy of `message`: its properties, with user_id and expiration as headers. */
export function parkedOptions(message: ConsumeMessage, takenAt: number, copied: boolean): Options.Publish {
  const { userId, expiration, headers, ...rest } = message.properties;
  // A client may publish headers of these names itself (they are not reserved at the edge): only the router's
  // own values may come back, or a client could give its parked copy an expiration or a "rejected copy stored".
  const kept = without(headers ?? {}, (name) => name === DELIVERY_COUNT || PARKED_HEADERS.includes(name));
  return {
    ...withoutUndefined(rest),
    // Persistent whatever the sender chose: parked is accepted (quorum queues store every message anyway).
    deliveryMode: 2,
    headers: {
      ...kept,
      ...(userId === undefined ? {} : { [USER_ID]: String(userId) }),
      ...(expiration === undefined ? {} : { [EXPIRATION]: String(expiration) }),
      [TAKEN_AT]: takenAt,
      ...(copied ? { [COPIED]: 1 } : {}),
    },
    // No binding for the input (a layout without parking): returned, and the message is held instead.
    mandatory: true,
  };
}

/**
 * A copy coming back from parking (the exchange `''`, see above): its
 * properties put back in place, as they were when it was parked. Undefined
 * for any other delivery, which is left untouched.
 */
export function unpark(message: ConsumeMessage): Unparked | undefined {
  if (message.fields.exchange !== '') return undefined;
  const properties = message.properties;
  const parked: Record<string, unknown> = properties.headers ?? {};
  const { userId, expiration } = parkedProperties(parked);
  const takenAt = Number(parked[TAKEN_AT]);
  const copied = parked[COPIED] !== undefined;
  properties.headers = withoutParkingDeaths(without(parked, (name) => PARKED_HEADERS.includes(name)));
  properties.userId = userId;
  properties.expiration = expiration;
  return { takenAt: Number.isFinite(takenAt) ? takenAt : Date.now(), copied };
}

/**
 * `user_id` and `expiration` as a returned copy carried them in the router's headers, for a copy that died in
 * its input before a router took it back (its dead letter still has them as headers, `unpark` never ran on it).
 * Only to be read from a message that came into its input through the exchange `''` (see above).
 */
export function parkedProperties(headers: Record<string, unknown> | undefined): {
  userId: string | undefined;
  expiration: string | undefined;
} {
  const userId = headers?.[USER_ID];
  const expiration = headers?.[EXPIRATION];
  return {
    userId: typeof userId === 'string' ? userId : undefined,
    expiration: typeof expiration === 'string' ? expiration : undefined,
  };
}

/** Without what dead-lettering out of a parking queue added: its `x-death` entry and first/last death headers. */
function withoutParkingDeaths(headers: Record<string, unknown>): Record<string, unknown> {
  const deaths = headers['x-death'];
  const others = Array.isArray(deaths)
    ? deaths.filter((death) => !parkingQueue((death as Record<string, unknown> | null)?.queue))
    : undefined;
  const first = parkingQueue(headers['x-first-death-queue']);
  const last = parkingQueue(headers['x-last-death-queue']);
  const kept = without(
    headers,
    (name) =>
      (name === 'x-death' && others?.length === 0) ||
      (first && name.startsWith('x-first-death-')) ||
      (last && name.startsWith('x-last-death-')),
  );
  return others === undefined || others.length === 0 ? kept : { ...kept, 'x-death': others };
}

function parkingQueue(name: unknown): boolean {
  return typeof name === 'string' && name.startsWith(PARKING_QUEUE_PREFIX);
}

function without(headers: Record<string, unknown>, drop: (name: string) => boolean): Record<string, unknown> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !drop(name)));
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>;
}
