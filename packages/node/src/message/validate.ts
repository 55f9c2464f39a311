/**
 * The origin-hop checks of docs/contract.md "Message contract": every rule that can
 * be judged from one message, the node's configuration and the clock. The
 * replay rule needs memory across messages and lives in replay.ts; the
 * policy decision is the router's next step.
 *
 * Checks run in a fixed order and the first failure wins, so one message
 * always gets the same reason (the order is documented in
 * packages/node/README.md "Message checks"): cheap shape checks first, then
 * lookups, and the denylist before status so a denied party is reported as
 * denied, whatever its status.
 */
import { isValidId, parseSpiffeId, validTraceparent } from '@dmr/core';
import type { NodeConfig } from '@dmr/contract';
import { type RelayedMessage, type ValidatedMessage } from './contract.js';
import {
  CONTRACT_VERSION,
  RECIPIENT_HEADER,
  RESERVED_HEADERS,
  RESERVED_TYPE_PREFIX,
  TRACEPARENT_HEADER,
  TRACESTATE_HEADER,
  TYPE_PATTERN,
  UUID_PATTERN,
  VERSION_HEADER,
  reject,
  type CheckResult,
  type WireMessage,
} from '@dmr/contract';
import { MAX_HEADER_DEPTH, encodedTableSize, ownHeader, routingHeader } from './headers.js';

/** What the checks need from a NodeConfig. */
export type MessageConfig = Pick<NodeConfig, 'trustDomain' | 'node' | 'directory' | 'denylist' | 'limits'>;

interface DirectoryEntry {
  homeNode: string;
  status: string;
}

/**
 * A NodeConfig indexed for per-message lookups. Built once per applied
 * revision (the directory can hold thousands of clients; a linear scan per
 * message would dominate the router's cost).
 */
export interface MessageContext {
  readonly nodeId: string;
  /** Senders are `spiffe://<trustDomain>/client/<id>` in `user_id`. */
  readonly trustDomain: string;
  readonly limits: NodeConfig['limits'];
  readonly directory: ReadonlyMap<string, DirectoryEntry>;
  /** Ids are unique across the mesh (docs/contract.md), so one set covers denied clients and nodes. */
  readonly denied: ReadonlySet<string>;
}

export function messageContext(config: MessageConfig): MessageContext {
  return {
    nodeId: config.node.id,
    trustDomain: config.trustDomain,
    limits: config.limits,
    directory: new Map(config.directory.map((entry) => [entry.id, { homeNode: entry.homeNode, status: entry.status }])),
    denied: new Set(config.denylist.map((entry) => entry.id)),
  };
}

/**
 * The client id in a `user_id`, or undefined unless it is exactly
 * `spiffe://<trustDomain>/client/<valid id>`. RabbitMQ accepts only a
 * `user_id` equal to the user the connection logged in as, and the broker
 * names users by the certificate's SPIFFE id, so this is the id of the
 * client certificate that sent the message.
 */
export function senderFromUserId(userId: unknown, trustDomain: string): string | undefined {
  if (typeof userId !== 'string') return undefined;
  const parsed = parseSpiffeId(userId);
  return parsed !== undefined && parsed.trustDomain === trustDomain && parsed.kind === 'client' ? parsed.id : undefined;
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** `expiration` as milliseconds: a non-negative integer, as a decimal string (the wire) or a number. */
function parseExpiration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value === 'string' && /^(0|[1-9][0-9]{0,15})$/.test(value)) {
    const parsed = Number(value);
    return Number.isSafeInteger(parsed) ? parsed : undefined;
  }
  return undefined;
}

/**
 * Checks a message arriving from a local client at this (its origin) node.
 * `now` is the node's clock in milliseconds since the epoch.
 */
export function validateAtOrigin(
  message: WireMessage,
  context: MessageContext,
  now: number,
): CheckResult<ValidatedMessage> {
  const { properties } = message;
  const headers = properties.headers ?? {};
  const { limits } = context;

  const messageId = properties.messageId;
  if (typeof messageId !== 'string' || messageId === '') return reject('MESSAGE_ID_INVALID', 'message_id is missing');
  if (!UUID_PATTERN.test(messageId)) {
    const uppercase = UUID_PATTERN.test(messageId.toLowerCase());
    return reject('MESSAGE_ID_INVALID', uppercase ? 'message_id must be a lowercase UUID' : 'message_id is not a UUID');
  }

  // RabbitMQ compares user_id with the connection's identity only when it is set, so absence is
  // the one way a client could send without an authenticated sender.
  const userId = properties.userId;
  if (typeof userId !== 'string' || userId === '') return reject('SENDER_MISSING', 'user_id is missing');
  // Anything but a client's SPIFFE id here was sent by a user that is not a client certificate (an operator's
  // account through the management API, say): no client to attribute it to.
  const sender = senderFromUserId(userId, context.trustDomain);
  if (sender === undefined) {
    return reject('SENDER_INVALID', `user_id is not spiffe://${context.trustDomain}/client/<id>`);
  }

  // Before anything reads the table: what the node accepts must stay small enough to re-encode.
  const headerBytes = encodedTableSize(headers, limits.maxHeaderBytes);
  if (headerBytes > limits.maxHeaderBytes) {
    return reject(
      'HEADERS_TOO_LARGE',
      `the header table needs more than ${limits.maxHeaderBytes} bytes encoded (or nests deeper than ${MAX_HEADER_DEPTH})`,
    );
  }
  // RabbitMQ routes a publish to the values of CC/BCC too: a message carrying them asks for extra destinations.
  const routing = routingHeader(headers);
  if (routing !== undefined) {
    return reject('ROUTING_HEADER_FORBIDDEN', `header ${routing.toLowerCase()} (CC/BCC) is not allowed`);
  }

  for (const name of RESERVED_HEADERS) {
    if (ownHeader(headers, name) !== undefined) {
      return reject('HEADER_RESERVED', `header ${name} may only be set by DMR`);
    }
  }

  const version = ownHeader(headers, VERSION_HEADER);
  // Header tables carry 1 as a number or a string depending on the client library; both mean version 1.
  if (version !== CONTRACT_VERSION && version !== String(CONTRACT_VERSION)) {
    return reject(
      'VERSION_UNSUPPORTED',
      version === undefined ? `${VERSION_HEADER} is missing` : `${VERSION_HEADER} is not ${CONTRACT_VERSION}`,
    );
  }

  const type = properties.type;
  if (typeof type !== 'string' || type === '') return reject('TYPE_MISSING', 'type is missing');
  if (!TYPE_PATTERN.test(type)) return reject('TYPE_INVALID', 'type is not of the allowed shape');
  // Types under `dmr.` are DMR's own (delivery reports): a client must not be able to forge one.
  if (type.startsWith(RESERVED_TYPE_PREFIX))
    return reject('TYPE_INVALID', `types starting with ${RESERVED_TYPE_PREFIX} are reserved`);

  const timestamp = properties.timestamp;
  // AMQP timestamps are whole POSIX seconds; anything else cannot be signed canonically (hop-signature.ts).
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp)) {
    return reject('TIMESTAMP_MISSING', 'timestamp is missing or not whole POSIX seconds');
  }
  const timestampMs = timestamp * 1000;
  // Skew judges the sender's clock, and only a timestamp ahead of the node's clock proves it wrong: a timestamp
  // behind it may just have waited in a full ingress (RabbitMQ 3.10 does not stamp arrival, so waiting and a slow
  // clock look the same). The past is bounded by the replay memory instead: an id is remembered for
  // dedupWindowMs after the router first saw it, and a copy published at most timestampSkewMs before its
  // timestamp and taken at most maxAgeMs after it is within that memory when maxAgeMs = dedupWindowMs −
  // timestampSkewMs (≥ maxTtlMs, CentOps checks). Older, nobody could tell it from a replay: refused as expired.
  if (timestampMs - now > limits.timestampSkewMs) {
    return reject(
      'TIMESTAMP_SKEW',
      `timestamp is ${Math.round((timestampMs - now) / 1000)} s ahead of the node clock (allowed ${limits.timestampSkewMs / 1000} s)`,
    );
  }
  const maxAgeMs = limits.dedupWindowMs - limits.timestampSkewMs;
  if (now - timestampMs > maxAgeMs) {
    return reject(
      'MESSAGE_EXPIRED',
      `timestamp is ${Math.round((now - timestampMs) / 1000)} s old, beyond the node's maximum message age of ${Math.round(maxAgeMs / 1000)} s (dedupWindowMs − timestampSkewMs)`,
    );
  }

  let expirationMs: number | undefined;
  if (properties.expiration !== undefined && properties.expiration !== null) {
    expirationMs = parseExpiration(properties.expiration);
    if (expirationMs === undefined) return reject('EXPIRATION_INVALID', 'expiration is not a whole number of ms');
    if (expirationMs > limits.maxTtlMs) {
      return reject('EXPIRATION_TOO_LONG', `expiration ${expirationMs} ms exceeds the cap of ${limits.maxTtlMs} ms`);
    }
  }

  const sizeBytes = message.content.length;
  if (sizeBytes > limits.maxMessageBytes) {
    return reject('MESSAGE_TOO_LARGE', `body is ${sizeBytes} bytes, the limit is ${limits.maxMessageBytes}`);
  }

  const recipient = ownHeader(headers, RECIPIENT_HEADER);
  if (recipient === undefined || recipient === null || recipient === '') {
    return reject('RECIPIENT_MISSING', `${RECIPIENT_HEADER} is missing`);
  }
  if (typeof recipient !== 'string' || !isValidId(recipient)) {
    return reject('RECIPIENT_INVALID', `${RECIPIENT_HEADER} is not a valid id`);
  }

  // Deny before lookup: a denylisted id is refused as denied even if it left the directory.
  if (context.denied.has(sender)) return reject('SENDER_DENIED', `sender ${sender} is on the denylist`);
  if (context.denied.has(recipient)) return reject('RECIPIENT_DENIED', `recipient ${recipient} is on the denylist`);

  const from = context.directory.get(sender);
  // The broker user exists only for local clients, so a sender homed elsewhere is a configuration race or forgery.
  if (from === undefined || from.homeNode !== context.nodeId) {
    return reject('SENDER_UNKNOWN', `user_id is not a client of node ${context.nodeId}`);
  }
  if (from.status !== 'active') return reject('SENDER_INACTIVE', `sender ${sender} is ${from.status}`);

  const to = context.directory.get(recipient);
  if (to === undefined) return reject('RECIPIENT_UNKNOWN', `recipient ${recipient} is not in the directory`);
  if (to.status !== 'active') return reject('RECIPIENT_INACTIVE', `recipient ${recipient} is ${to.status}`);

  return {
    ok: true,
    message: {
      messageId,
      sender,
      recipient,
      recipientHomeNode: to.homeNode,
      type,
      timestampMs,
      expirationMs,
      sizeBytes,
      // Trace context is optional: an invalid one is dropped, not a reason to refuse the message.
      traceparent: validTraceparent(ownHeader(headers, TRACEPARENT_HEADER)),
      tracestate: optionalString(ownHeader(headers, TRACESTATE_HEADER)),
    },
  };
}

/**
 * The checks of a relayed message after its hop chain verified: what this
 * node must judge for itself because its view may differ from the origin's
 * (the directory, the denylist, statuses and limits of this revision). The
 * signature already proved the fields are the origin's; they are not
 * checked again for shape beyond what this node relies on. `isReport`: a
 * node's delivery report (checkMeshParties), whose sender is a node, not a
 * client in the directory.
 */
export function validateRelayed(
  message: WireMessage,
  verified: { sender: string },
  isReport: boolean,
  context: MessageContext,
): CheckResult<RelayedMessage> {
  const { properties } = message;
  const headers = properties.headers ?? {};
  const messageId = properties.messageId;
  if (typeof messageId !== 'string' || !UUID_PATTERN.test(messageId)) {
    return reject('MESSAGE_ID_INVALID', 'message_id is not a lowercase UUID');
  }
  const version = ownHeader(headers, VERSION_HEADER);
  if (version !== CONTRACT_VERSION && version !== String(CONTRACT_VERSION)) {
    return reject('VERSION_UNSUPPORTED', `${VERSION_HEADER} is not ${CONTRACT_VERSION}`);
  }
  const type = properties.type;
  if (typeof type !== 'string' || !TYPE_PATTERN.test(type))
    return reject('TYPE_INVALID', 'type is not of the allowed shape');
  const timestamp = properties.timestamp;
  if (typeof timestamp !== 'number' || !Number.isSafeInteger(timestamp)) {
    return reject('TIMESTAMP_MISSING', 'timestamp is missing or not whole POSIX seconds');
  }
  let expirationMs: number | undefined;
  if (properties.expiration !== undefined && properties.expiration !== null) {
    expirationMs = parseExpiration(properties.expiration);
    if (expirationMs === undefined) return reject('EXPIRATION_INVALID', 'expiration is not a whole number of ms');
  }
  const sizeBytes = message.content.length;
  if (sizeBytes > context.limits.maxMessageBytes) {
    return reject('MESSAGE_TOO_LARGE', `body is ${sizeBytes} bytes, the limit is ${context.limits.maxMessageBytes}`);
  }
  const recipient = ownHeader(headers, RECIPIENT_HEADER);
  if (typeof recipient !== 'string' || !isValidId(recipient)) {
    return reject('RECIPIENT_INVALID', `${RECIPIENT_HEADER} is not a valid id`);
  }
  const sender = verified.sender;
  if (!isReport) {
    const from = context.directory.get(sender);
    if (from !== undefined && from.status !== 'active')
      return reject('SENDER_INACTIVE', `sender ${sender} is ${from.status}`);
  }
  if (context.denied.has(recipient)) return reject('RECIPIENT_DENIED', `recipient ${recipient} is on the denylist`);
  const to = context.directory.get(recipient);
  if (to === undefined) return reject('RECIPIENT_UNKNOWN', `recipient ${recipient} is not in the directory`);
  // A report goes to a sender whatever its status: it is about a message the sender already sent.
  if (!isReport && to.status !== 'active')
    return reject('RECIPIENT_INACTIVE', `recipient ${recipient} is ${to.status}`);
  return {
    ok: true,
    message: {
      messageId,
      sender,
      recipient,
      recipientHomeNode: to.homeNode,
      type,
      timestampMs: timestamp * 1000,
      expirationMs,
      sizeBytes,
    },
  };
}
