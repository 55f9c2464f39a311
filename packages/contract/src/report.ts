/**
 * Delivery reports: the JSON body a node sends to a sender's own queue when
 * it refuses the sender's message or when a delivered message dead-letters.
 * AMQP `type` DELIVERY_REPORT_TYPE, `correlation_id` the refused message's
 * id, `dmr-recipient` the sender (docs/contract.md "Delivery reports").
 */
import { isErrorCode, type ErrorCode } from '@dmr/core';
import type { MessageRejectionCode } from './message.js';

export type DeliveryReportStatus = 'rejected' | 'dead-lettered';

/** The body of a delivery report as a node writes it (never the original payload). */
export interface DeliveryReport {
  /** The refused message's id; null when it had none that was valid. */
  messageId: string | null;
  /** `rejected`: refused by the node; `dead-lettered`: delivered but expired or returned too often by the recipient. */
  status: DeliveryReportStatus;
  reason: MessageRejectionCode;
  /** Safe to log: names ids and limits, never payload content. */
  detail: string;
  /** When the policy decided: its bundle revision and reasons (e.g. `NO_GRANT`). */
  policy?: { revision: string | undefined; reasons: string[] };
  /** The node that wrote the report. */
  node: string;
  /** ISO 8601. */
  at: string;
}

export interface DeliveryReportFields {
  messageId: string | null;
  status: DeliveryReportStatus;
  reason: MessageRejectionCode;
  detail: string;
  policy?: { revision: string | undefined; reasons: readonly string[] } | undefined;
  node: string;
  /** Milliseconds since the epoch. */
  now: number;
}

/** The report body of `fields`, in the order a node has always written them. */
export function buildDeliveryReport(fields: DeliveryReportFields): DeliveryReport {
  return {
    messageId: fields.messageId,
    status: fields.status,
    reason: fields.reason,
    detail: fields.detail,
    ...(fields.policy === undefined
      ? {}
      : { policy: { revision: fields.policy.revision, reasons: [...fields.policy.reasons] } }),
    node: fields.node,
    at: new Date(fields.now).toISOString(),
  };
}

/**
 * A report as a client reads it: any catalogue code is accepted as the
 * reason (a newer node may refuse for a reason this build does not know yet
 * as a message check), and `at` is a Date.
 */
export interface ReceivedDeliveryReport {
  /** The refused message's id (the `send()` result); null when it had no valid id. */
  messageId: string | null;
  /** `rejected`: refused by the node; `dead-lettered`: delivered but expired or returned too often by the recipient. */
  status: DeliveryReportStatus;
  /** A catalogue code (packages/core/src/errors.ts), e.g. `POLICY_DENIED`, `MESSAGE_EXPIRED`. */
  reason: ErrorCode;
  /** Safe to log: names ids and limits, never payload content. */
  detail: string;
  /** When the policy decided: its bundle revision and reasons (e.g. `NO_GRANT`). */
  policy?: { revision: string | undefined; reasons: string[] };
  /** The node that wrote the report. */
  node: string;
  /** When the node wrote it. */
  at: Date;
}

function fail(why: string): never {
  throw new SyntaxError(`not a delivery report: ${why}`);
}

/** Parses a report body; throws SyntaxError when it is not a node's report JSON. */
export function parseDeliveryReport(body: Uint8Array | string): ReceivedDeliveryReport {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8'));
  } catch {
    fail('the body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail('the body is not an object');
  const record = parsed as Record<string, unknown>;
  const { messageId, status, reason, detail, node, at, policy } = record;
  if (messageId !== null && typeof messageId !== 'string') fail('messageId');
  if (status !== 'rejected' && status !== 'dead-lettered') fail('status');
  if (typeof reason !== 'string' || !isErrorCode(reason)) fail('reason');
  if (typeof detail !== 'string') fail('detail');
  if (typeof node !== 'string') fail('node');
  if (typeof at !== 'string' || Number.isNaN(Date.parse(at))) fail('at');
  const report: ReceivedDeliveryReport = { messageId, status, reason, detail, node, at: new Date(at) };
  if (policy !== undefined) {
    if (typeof policy !== 'object' || policy === null) fail('policy');
    const { revision, reasons } = policy as Record<string, unknown>;
    if (revision !== undefined && revision !== null && typeof revision !== 'string') fail('policy.revision');
    if (!Array.isArray(reasons) || !reasons.every((item): item is string => typeof item === 'string')) {
      fail('policy.reasons');
    }
    report.policy = { revision: typeof revision === 'string' ? revision : undefined, reasons: [...reasons] };
  }
  return report;
}
