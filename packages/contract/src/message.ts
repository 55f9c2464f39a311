/**
 * The message contract as names and rules: the headers a client sets and the
 * ones only DMR sets, the contract version, the id and type rules, the
 * catalogue codes a refusal may carry, and the shape of an AMQP message as
 * the checks read it. Pure data: no broker, no clock. docs/contract.md
 * "Messages" describes each item.
 */
import type { ErrorCode } from '@dmr/core';

/** Headers a client sets. */
export const RECIPIENT_HEADER = 'dmr-recipient';
export const VERSION_HEADER = 'dmr-version';
export const TRACEPARENT_HEADER = 'traceparent';
export const TRACESTATE_HEADER = 'tracestate';

/** Headers only DMR sets: the origin node writes them, later hops read them. */
export const SENDER_HEADER = 'dmr-sender';
export const ORIGIN_HEADER = 'dmr-origin';
export const HOPS_HEADER = 'dmr-hops';
export const SIGNATURE_HEADER = 'dmr-sig';
/** A client that sets one of these is refused with HEADER_RESERVED. */
export const RESERVED_HEADERS = [SENDER_HEADER, ORIGIN_HEADER, HOPS_HEADER, SIGNATURE_HEADER] as const;

/** Headers a node adds to a refused message's copy in `dmr.rejected`. */
export const REASON_HEADER = 'dmr-reason';
export const DETAIL_HEADER = 'dmr-detail';
export const POLICY_REVISION_HEADER = 'dmr-policy-revision';
export const POLICY_REASONS_HEADER = 'dmr-policy-reasons';
/** `sha256:<hex>` of the refused body, and its length: the rejected copy keeps these instead of the body. */
export const BODY_DIGEST_HEADER = 'dmr-body-sha256';
export const BODY_BYTES_HEADER = 'dmr-body-bytes';

/** The SDK's end-to-end protection keeps the application's own content type here; nodes forward it. */
export const E2E_CONTENT_TYPE_HEADER = 'dmr-e2e-content-type';

/** Application headers a client may have delivered: `app-` then lowercase letters, digits and `-`. */
export const APP_HEADER_PATTERN = /^app-[a-z0-9][a-z0-9-]{0,59}$/;

/** The only schema version of the message contract (header `dmr-version`). */
export const CONTRACT_VERSION = 1;

/**
 * RFC 9562 textual form in lowercase (the form RFC 9562 says to output),
 * any version or variant. Lowercase only, because the ingress exchange hashes
 * `message_id` exactly as sent to pick the router shard: if `ABC…` and `abc…`
 * were both accepted they could reach two routers and pass both replay
 * guards. The version nibble is not checked: clients generate v4 or v7, and
 * the id is only an idempotency key, so its shape matters, not how it was made.
 */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Message types DMR itself sends (e.g. `dmr.DeliveryReport`); refused from clients. */
export const RESERVED_TYPE_PREFIX = 'dmr.';

/**
 * AMQP `type` of a delivery report: the only message a node sends in its own
 * name. Clients cannot send `dmr.*` types, so a report cannot be forged by a peer.
 */
export const DELIVERY_REPORT_TYPE = 'dmr.DeliveryReport';

/**
 * A message type: a letter, then up to 63 letters, digits, `.`, `_`, `-`
 * (`ChatMessage`, `bk.ChatMessage.v2`). Narrow on purpose: the type is
 * policy input and appears in logs, so it must be short and unambiguous.
 */
export const TYPE_PATTERN = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/;

/**
 * A header value as amqplib decodes a field table. Only strings and numbers
 * are meaningful to DMR; anything else (Buffer, nested table, boolean) is
 * treated as malformed by the check that reads it.
 */
export type HeaderValue = unknown;

/**
 * The part of an amqplib `ConsumeMessage` the checks read (structurally
 * compatible, so a node passes the real message). AMQP `timestamp` is
 * POSIX seconds; `expiration` is a string of milliseconds on the wire
 * (amqplib also accepts a number on publish).
 */
export interface WireMessage {
  content: { readonly length: number };
  properties: {
    messageId?: unknown;
    userId?: unknown;
    type?: unknown;
    timestamp?: unknown;
    expiration?: unknown;
    headers?: Record<string, HeaderValue> | undefined;
  };
}

/** A message with its body bytes, as amqplib delivers it: what is signed and verified per hop. */
export interface SignableMessage extends WireMessage {
  content: Uint8Array;
}

/** Every catalogue code a per-message check can refuse with, and so every `reason` of a delivery report. */
export const MESSAGE_REJECTION_CODES = [
  'MESSAGE_ID_INVALID',
  'SENDER_MISSING',
  'SENDER_INVALID',
  'SENDER_UNKNOWN',
  'SENDER_INACTIVE',
  'SENDER_DENIED',
  'RECIPIENT_MISSING',
  'RECIPIENT_INVALID',
  'RECIPIENT_UNKNOWN',
  'RECIPIENT_INACTIVE',
  'RECIPIENT_DENIED',
  'TYPE_MISSING',
  'TYPE_INVALID',
  'TIMESTAMP_MISSING',
  'TIMESTAMP_SKEW',
  'EXPIRATION_INVALID',
  'EXPIRATION_TOO_LONG',
  'MESSAGE_TOO_LARGE',
  'VERSION_UNSUPPORTED',
  'HEADER_RESERVED',
  'HEADERS_TOO_LARGE',
  'ROUTING_HEADER_FORBIDDEN',
  'MESSAGE_REPLAYED',
  'REPLAY_WINDOW_FULL',
  'SENDER_QUOTA_EXCEEDED',
  'SENDER_RATE_LIMITED',
  'HOP_SIGNATURE_INVALID',
  'ORIGIN_DENIED',
  'HOPS_INVALID',
  'HOP_LOOP',
  'HOP_LIMIT_EXCEEDED',
  'HOP_NODE_DENIED',
  'PEER_UNKNOWN',
  'REPORT_INVALID',
  // Decided after the checks above: by the policy, by routing, by the recipient's queue, or later by the broker.
  'POLICY_DENIED',
  'POLICY_UNAVAILABLE',
  'RECIPIENT_UNREACHABLE',
  'RECIPIENT_QUEUE_FULL',
  'MESSAGE_EXPIRED',
  'DELIVERY_LIMIT_EXCEEDED',
  'MESSAGE_UNENCODABLE',
] as const satisfies readonly ErrorCode[];

export type MessageRejectionCode = (typeof MESSAGE_REJECTION_CODES)[number];

/**
 * A refusal. `detail` is for logs and delivery reports: it names ids and
 * limits but never payload content, and never echoes an unvalidated
 * client-supplied value (which could be large or crafted for log injection).
 */
export interface Rejection {
  ok: false;
  reason: MessageRejectionCode;
  detail: string;
}

export type CheckResult<T> = { ok: true; message: T } | Rejection;

export function reject(reason: MessageRejectionCode, detail: string): Rejection {
  return { ok: false, reason, detail };
}
