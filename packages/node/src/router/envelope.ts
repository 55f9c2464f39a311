/**
 * The pure parts of the router's per-message path: what it knows about the
 * configuration (indexed once per revision), the policy input it builds, and
 * the AMQP messages it publishes (the delivered copy, the rejected-queue copy
 * and the delivery report). No broker, no clock: `now` is passed in.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  BODY_BYTES_HEADER,
  BODY_DIGEST_HEADER,
  DETAIL_HEADER,
  POLICY_REASONS_HEADER,
  POLICY_REVISION_HEADER,
  REASON_HEADER,
  buildDeliveryReport,
  type DeliveryReport,
  type NodeConfig,
  CONTRACT_VERSION,
  DELIVERY_REPORT_TYPE,
  HOPS_HEADER,
  ORIGIN_HEADER,
  RECIPIENT_HEADER,
  SENDER_HEADER,
  SIGNATURE_HEADER,
  TYPE_PATTERN,
  VERSION_HEADER,
  type MessageRejectionCode,
} from '@dmr/contract';
import type { PolicyDecision, PolicyInput, PolicyPrincipal } from '@dmr/policy';
import type { Options } from 'amqplib';
import { type RelayedMessage, type ValidatedMessage } from '../message/contract.js';
import { forwardedHeaders } from '../message/headers.js';
import type { HopChainSigner, VerifiedHopChain } from '../message/hop-chain.js';
import { appendHop } from '../message/hop-signature.js';
import { messageContext, type MessageContext } from '../message/validate.js';

// The report type, the rejected copy's headers and the report body are the wire contract's.
export {
  BODY_BYTES_HEADER,
  BODY_DIGEST_HEADER,
  DELIVERY_REPORT_TYPE,
  DETAIL_HEADER,
  POLICY_REASONS_HEADER,
  POLICY_REVISION_HEADER,
  REASON_HEADER,
  type DeliveryReport,
} from '@dmr/contract';

/** A NodeConfig indexed for the router: built once per revision in applyConfig, then read per message. */
export interface RoutingContext {
  readonly revision: number;
  readonly message: MessageContext;
  /** Every directory entry as a policy principal; labels only for local clients (the feed carries no others). */
  readonly principals: ReadonlyMap<string, PolicyPrincipal>;
  /** Local clients that have a queue on this node (clients[] of the config): who can receive a report. */
  readonly localQueues: ReadonlySet<string>;
}

export function routingContext(config: NodeConfig): RoutingContext {
  const labels = new Map(config.clients.map((client) => [client.id, client.labels]));
  const principals = new Map<string, PolicyPrincipal>();
  for (const entry of config.directory) {
    principals.set(entry.id, {
      id: entry.id,
      organisation: entry.organisation,
      roles: [...entry.roles],
      labels: { ...(labels.get(entry.id) ?? {}) },
    });
  }
  return {
    revision: config.revision,
    message: messageContext(config),
    principals,
    localQueues: new Set(config.clients.map((client) => client.id)),
  };
}

/**
 * The decision input for a message that passed the origin checks, or
 * undefined when a principal is missing from the index (cannot happen after
 * validateAtOrigin, which looked both up in the same directory).
 */
export function policyInputFor(
  validated: ValidatedMessage,
  context: RoutingContext,
  now: number,
): PolicyInput | undefined {
  return policyInput(validated, { origin: context.message.nodeId, count: 0 }, context, now);
}

/**
 * The decision input at a later hop: `hop` says where the message comes
 * from (`origin`, `previous`) and how many links it crossed (`count`), as the
 * hop chain proved them (HopChainVerifier).
 */
export function relayPolicyInput(
  relayed: RelayedMessage,
  verified: Pick<VerifiedHopChain, 'origin' | 'previous' | 'count'>,
  context: RoutingContext,
  now: number,
): PolicyInput | undefined {
  const hop = { origin: verified.origin, previous: verified.previous, count: verified.count };
  return policyInput(relayed, hop, context, now);
}

function policyInput(
  message: PolicySubject,
  hop: PolicyInput['hop'],
  context: RoutingContext,
  now: number,
): PolicyInput | undefined {
  const sender = context.principals.get(message.sender);
  const recipient = context.principals.get(message.recipient);
  if (sender === undefined || recipient === undefined) return undefined;
  const ttl = remainingTtl(message, now);
  return {
    sender,
    recipient,
    message: {
      id: message.messageId,
      type: message.type,
      size: message.sizeBytes,
      ...(ttl === undefined ? {} : { ttl, expiresAt: new Date(now + ttl).toISOString() }),
    },
    hop,
    node: { id: context.message.nodeId },
  };
}

/** What the policy and the TTL arithmetic read of a message, at the origin or a later hop. */
type PolicySubject = Pick<
  ValidatedMessage,
  'messageId' | 'sender' | 'recipient' | 'type' | 'sizeBytes' | 'timestampMs' | 'expirationMs'
>;

/**
 * What is left of the sender's `expiration` at `now`, or undefined when it
 * set none. Measured from `timestamp`, which is whole seconds: the truncated
 * second is credited to the sender, so a fresh message never looks older than
 * it is. May be ≤ 0: the message expired before the router saw it.
 */
export function remainingTtl(
  validated: Pick<ValidatedMessage, 'timestampMs' | 'expirationMs'>,
  now: number,
): number | undefined {
  if (validated.expirationMs === undefined) return undefined;
  const elapsed = Math.max(0, now - validated.timestampMs - 999);
  return validated.expirationMs - elapsed;
}

/** The part of amqplib's message properties the router copies. */
export interface IncomingProperties {
  contentType?: unknown;
  contentEncoding?: unknown;
  headers?: Record<string, unknown> | undefined;
  deliveryMode?: unknown;
  priority?: unknown;
  correlationId?: unknown;
  replyTo?: unknown;
  expiration?: unknown;
  messageId?: unknown;
  timestamp?: unknown;
  type?: unknown;
  userId?: unknown;
  appId?: unknown;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/**
 * A shortstr property as decoded, if it still fits one when re-encoded: a
 * value that was not valid UTF-8 decodes with replacement characters and can
 * grow past 255 bytes, which amqplib refuses to encode.
 */
function shortstr(value: unknown): string | undefined {
  const text = str(value);
  return text !== undefined && Buffer.byteLength(text, 'utf8') <= 255 ? text : undefined;
}

/**
 * The client's properties minus `user_id`, `expiration` and `headers`.
 * `user_id` would be checked against the router's own broker user and
 * refused with 406; the authenticated sender travels in `dmr-sender` instead.
 */
function copiedProperties(properties: IncomingProperties): Options.Publish {
  const copied: Options.Publish = { persistent: true };
  const contentType = shortstr(properties.contentType);
  if (contentType !== undefined) copied.contentType = contentType;
  const contentEncoding = shortstr(properties.contentEncoding);
  if (contentEncoding !== undefined) copied.contentEncoding = contentEncoding;
  const correlationId = shortstr(properties.correlationId);
  if (correlationId !== undefined) copied.correlationId = correlationId;
  const replyTo = shortstr(properties.replyTo);
  if (replyTo !== undefined) copied.replyTo = replyTo;
  const messageId = shortstr(properties.messageId);
  if (messageId !== undefined) copied.messageId = messageId;
  if (typeof properties.timestamp === 'number') copied.timestamp = properties.timestamp;
  const type = shortstr(properties.type);
  if (type !== undefined) copied.type = type;
  const appId = shortstr(properties.appId);
  if (appId !== undefined) copied.appId = appId;
  if (typeof properties.priority === 'number') copied.priority = properties.priority;
  return copied;
}

/**
 * Publish options of the delivered copy: the client's properties, only the
 * allowlisted client headers (forwardedHeaders: never CC/BCC), DMR's headers.
 */
export function deliveredOptions(
  properties: IncomingProperties,
  validated: ValidatedMessage,
  nodeId: string,
  now: number,
  ttl: number | undefined,
): Options.Publish {
  const headers = forwardedHeaders(properties.headers, validated.recipient, CONTRACT_VERSION);
  headers[SENDER_HEADER] = validated.sender;
  headers[ORIGIN_HEADER] = nodeId;
  headers[HOPS_HEADER] = appendHop([], nodeId, new Date(now));
  return {
    ...copiedProperties(properties),
    headers,
    // mandatory: a recipient without a bound queue comes back as a basic.return instead of vanishing.
    mandatory: true,
    ...(ttl === undefined ? {} : { expiration: String(Math.max(1, ttl)) }),
  };
}

/**
 * What an origin sends over the link to `nextHop`: the client's properties
 * and allowlisted headers (as delivered locally), `expiration` exactly as the
 * client set it (it is signed: a link limits waiting with its queue's TTL),
 * `user_id` this node's broker user (the peer's broker checks it against the
 * link's login, which names the previous hop), then `dmr-sender`,
 * `dmr-origin`, `dmr-sig` and entry 0 of `dmr-hops` over exactly that.
 */
export function originForwardOptions(
  properties: IncomingProperties,
  validated: ValidatedMessage,
  content: Uint8Array,
  signer: HopChainSigner,
  nextHop: string,
  userId: string,
  at: Date,
): Options.Publish {
  const headers = forwardedHeaders(properties.headers, validated.recipient, CONTRACT_VERSION);
  const copied: Options.Publish = {
    ...copiedProperties(properties),
    ...(validated.expirationMs === undefined ? {} : { expiration: String(validated.expirationMs) }),
  };
  const signed = signer.originate({ content, properties: { ...copied, headers } }, validated.sender, nextHop, at);
  Object.assign(headers, signed);
  return { ...copied, headers, userId, mandatory: true };
}

/**
 * A relayed message as this node passes it on: the properties and the
 * allowlisted client headers as they arrived (the signed ones unchanged,
 * `expiration` too), the origin's `dmr-sender`, `dmr-origin` and `dmr-sig`,
 * and `dmr-hops` with this node's entry. `to` the next hop; null delivers it
 * here, with the remaining TTL (`ttl`) as its `expiration` and no `user_id`.
 */
export function relayedOptions(
  properties: IncomingProperties,
  relayed: Pick<RelayedMessage, 'recipient'>,
  verified: VerifiedHopChain,
  signer: HopChainSigner,
  next: { to: string; userId: string } | { to: null; ttl: number | undefined },
  at: Date,
): Options.Publish {
  const headers = forwardedHeaders(properties.headers, relayed.recipient, CONTRACT_VERSION);
  headers[SENDER_HEADER] = verified.sender;
  headers[ORIGIN_HEADER] = verified.origin;
  headers[SIGNATURE_HEADER] = verified.signature;
  headers[HOPS_HEADER] = signer.append(verified, next.to, at);
  const copied = copiedProperties(properties);
  if (next.to !== null) {
    const expiration = str(properties.expiration);
    return {
      ...copied,
      headers,
      userId: next.userId,
      mandatory: true,
      ...(expiration === undefined ? {} : { expiration }),
    };
  }
  return {
    ...copied,
    headers,
    mandatory: true,
    ...(next.ttl === undefined ? {} : { expiration: String(Math.max(1, next.ttl)) }),
  };
}

/** Why a message was refused: the catalogue code, a detail safe to log, and the policy's view when it decided. */
export interface Refusal {
  reason: MessageRejectionCode;
  detail: string;
  policy?: Pick<PolicyDecision, 'revision' | 'reasons'>;
}

/** What the rejected copy says about the refused message, each part validated (never a raw client value). */
export interface RefusedMessage {
  /** A lowercase UUID, or null. */
  messageId: string | null;
  /** The authenticated sender (user_id), when there was one. */
  sender: string | undefined;
  /** `dmr-recipient` when it was a valid id. */
  recipient: string | null;
  body: Uint8Array;
  type: unknown;
  timestamp: unknown;
}

/**
 * The rejected copy: DMR's metadata about the refusal and a digest of the
 * body, never the body, the client's headers or its other properties. It is
 * published to the fanout exchange `dmr.rejected`, which routes every
 * message to the one queue whatever its routing keys.
 */
export function rejectedCopy(refused: RefusedMessage, refusal: Refusal): { content: Buffer; options: Options.Publish } {
  const headers = Object.create(null) as Record<string, unknown>;
  headers[REASON_HEADER] = refusal.reason;
  headers[DETAIL_HEADER] = refusal.detail;
  if (refused.sender !== undefined) headers[SENDER_HEADER] = refused.sender;
  if (refused.recipient !== null) headers[RECIPIENT_HEADER] = refused.recipient;
  headers[BODY_DIGEST_HEADER] = `sha256:${createHash('sha256').update(refused.body).digest('hex')}`;
  headers[BODY_BYTES_HEADER] = refused.body.length;
  if (refusal.policy !== undefined) {
    if (refusal.policy.revision !== undefined) headers[POLICY_REVISION_HEADER] = refusal.policy.revision;
    headers[POLICY_REASONS_HEADER] = refusal.policy.reasons.join(',');
  }
  const type = str(refused.type);
  const options: Options.Publish = {
    persistent: true,
    headers,
    ...(refused.messageId === null ? {} : { messageId: refused.messageId }),
    ...(type !== undefined && TYPE_PATTERN.test(type) ? { type } : {}),
    ...(typeof refused.timestamp === 'number' && Number.isSafeInteger(refused.timestamp) && refused.timestamp >= 0
      ? { timestamp: refused.timestamp }
      : {}),
  };
  return { content: Buffer.alloc(0), options };
}

/** The report body of a refusal (never the original payload). */
export function deliveryReport(
  messageId: string | null,
  status: DeliveryReport['status'],
  refusal: Refusal,
  nodeId: string,
  now: number,
): DeliveryReport {
  return buildDeliveryReport({
    messageId,
    status,
    reason: refusal.reason,
    detail: refusal.detail,
    policy: refusal.policy,
    node: nodeId,
    now,
  });
}

/**
 * Publish options of a report to the sender's queue (through dmr.delivery, routing key = `to`, the sender).
 * `dmr-recipient` names `to` like on any delivered message: the SDK and the bridge drop a report whose
 * recipient is not their own id, so one routed into the wrong queue is never believed.
 */
export function reportOptions(report: DeliveryReport, nodeId: string, now: number, to: string): Options.Publish {
  return {
    persistent: true,
    mandatory: true,
    messageId: randomUUID(),
    type: DELIVERY_REPORT_TYPE,
    contentType: 'application/json',
    timestamp: Math.floor(now / 1000),
    ...(report.messageId === null ? {} : { correlationId: report.messageId }),
    headers: { [RECIPIENT_HEADER]: to, [ORIGIN_HEADER]: nodeId, [VERSION_HEADER]: CONTRACT_VERSION },
  };
}

/**
 * The newest entry of a dead letter's `x-death` (RabbitMQ puts the death that brought it here first), or
 * undefined when there is none that is a table.
 */
export function latestDeath(headers: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const deaths = headers?.['x-death'];
  const latest: unknown = Array.isArray(deaths) ? deaths[0] : undefined;
  return typeof latest === 'object' && latest !== null && !Array.isArray(latest)
    ? (latest as Record<string, unknown>)
    : undefined;
}

/** Why a dead letter died, from its `x-death` headers; undefined for reasons that get no report. */
export function deadLetterReason(
  headers: Record<string, unknown> | undefined,
): 'MESSAGE_EXPIRED' | 'DELIVERY_LIMIT_EXCEEDED' | undefined {
  // RabbitMQ 3.10 sets x-first-death-reason; x-death[0] is the most recent death (measured: quorum queues
  // write `delivery_limit` for the delivery limit and `expired` for TTL).
  const reason = latestDeath(headers)?.reason ?? headers?.['x-first-death-reason'];
  if (reason === 'expired') return 'MESSAGE_EXPIRED';
  if (reason === 'delivery_limit') return 'DELIVERY_LIMIT_EXCEEDED';
  return undefined;
}
