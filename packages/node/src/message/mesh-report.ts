/**
 * Who may send what across the mesh (docs/mesh.md "Reports across the
 * mesh"). Clients send messages through their home node; a node sends only
 * delivery reports, and only in its own name: a node that refuses a relayed
 * message reports back to the sender as a mesh message with `dmr-sender` =
 * `dmr-origin` = itself, signed and chained like any other. Never a report
 * about a report.
 *
 * Pure: the caller passes the verified origin and sender (HopChainVerifier),
 * the directory and the clock.
 */
import { randomUUID } from 'node:crypto';
import { isValidId } from '@dmr/core';
import {
  CONTRACT_VERSION,
  DELIVERY_REPORT_TYPE,
  RECIPIENT_HEADER,
  RESERVED_TYPE_PREFIX,
  VERSION_HEADER,
  reject,
  type CheckResult,
  type SignableMessage,
  type WireMessage,
} from '@dmr/contract';
import { ownHeader } from './headers.js';

/** What a relayed message is: a client's message, or a node's delivery report. */
export type MeshMessageKind = 'message' | 'report';

/**
 * Checks who sent a verified mesh message against what it is:
 * - a delivery report (`type` dmr.DeliveryReport) must come from its origin
 *   node itself (`dmr-sender` = `dmr-origin`) and go to a client
 *   (`REPORT_INVALID`, check `sender` or `recipient`);
 * - anything else must not come from a node (`REPORT_INVALID`, check
 *   `node-sender`), must not be of another `dmr.` type (`TYPE_INVALID`), and
 *   its sender must be a client homed at the origin node, as the origin
 *   checked with `user_id` (`SENDER_UNKNOWN`, check `home`).
 *
 * `directory` is the node's directory of clients (MessageContext.directory).
 */
export function checkMeshParties(
  message: WireMessage,
  verified: { sender: string; origin: string },
  directory: ReadonlyMap<string, { homeNode: string }>,
): CheckResult<MeshMessageKind> {
  const { sender, origin } = verified;
  const type = message.properties.type;
  if (type === DELIVERY_REPORT_TYPE) {
    if (sender !== origin) {
      return reject('REPORT_INVALID', `a delivery report must be sent by its origin node ${origin} itself (sender)`);
    }
    const recipient = ownHeader(message.properties.headers, RECIPIENT_HEADER);
    if (typeof recipient !== 'string' || !isValidId(recipient) || !directory.has(recipient)) {
      return reject('REPORT_INVALID', `a delivery report must go to a client in the directory (recipient)`);
    }
    return { ok: true, message: 'report' };
  }
  if (sender === origin) {
    return reject('REPORT_INVALID', `node ${origin} may send only delivery reports in its own name (node-sender)`);
  }
  if (typeof type === 'string' && type.startsWith(RESERVED_TYPE_PREFIX)) {
    return reject('TYPE_INVALID', `types starting with ${RESERVED_TYPE_PREFIX} are reserved (type)`);
  }
  if (directory.get(sender)?.homeNode !== origin) {
    return reject('SENDER_UNKNOWN', `sender ${sender} is not a client of node ${origin} (home)`);
  }
  return { ok: true, message: 'message' };
}

/** Whether refusing a message of `type` may produce a report: never about a report (reports could loop). */
export function mayReportOn(type: unknown): boolean {
  return type !== DELIVERY_REPORT_TYPE;
}

export interface MeshReportOptions {
  /** The client that sent the refused message: the report's recipient. */
  to: string;
  /** The refused message's id (a validated UUID), or null when it had none. */
  refusedId: string | null;
  /** The report body (the router's DeliveryReport JSON), encoded. */
  body: Uint8Array;
  now: Date;
  /** The report's own message id (default: a fresh UUID). */
  messageId?: string;
}

/** A report as a message the origin-signing code signs (HopChainSigner.originate with sender = this node). */
export interface MeshReportMessage extends SignableMessage {
  content: Buffer;
  properties: SignableMessage['properties'] & {
    messageId: string;
    type: typeof DELIVERY_REPORT_TYPE;
    timestamp: number;
    contentType: 'application/json';
    correlationId?: string;
    headers: Record<string, unknown>;
  };
}

/**
 * The metadata of a delivery report to `to` about `refusedId`, ready for
 * `HopChainSigner.originate(report, <this node>, <next hop>, now)`.
 * `correlation_id` names the refused message for convenience; it is not
 * signed (dmr-hop-sig/1 does not cover it), and the body's `messageId` is
 * what a client believes (the SDK reads the body, which the signature covers).
 * No `expiration`: the router applies `limits.maxTtlMs`.
 */
export function meshReport(options: MeshReportOptions): MeshReportMessage {
  if (!isValidId(options.to)) throw new RangeError('a report goes to a client id');
  return {
    content: Buffer.from(options.body),
    properties: {
      messageId: options.messageId ?? randomUUID(),
      type: DELIVERY_REPORT_TYPE,
      timestamp: Math.floor(options.now.getTime() / 1000),
      contentType: 'application/json',
      ...(options.refusedId === null ? {} : { correlationId: options.refusedId }),
      headers: { [RECIPIENT_HEADER]: options.to, [VERSION_HEADER]: CONTRACT_VERSION },
    },
  };
}
