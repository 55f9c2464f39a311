/**
 * Delivery reports: what the node sends to a sender's own queue when it
 * refuses a message or when a delivered message dead-letters
 * (packages/node/src/router/envelope.ts). The SDK never hands them to the
 * receive handler; they become `report` events.
 */
import { isErrorCode, type ErrorCode } from '@dmr/core';

/** AMQP `type` of a delivery report; clients cannot send `dmr.*` types, so a report cannot be forged by a peer. */
export const DELIVERY_REPORT_TYPE = 'dmr.DeliveryReport';

export interface DeliveryReport {
  /** The refused message's id (the `send()` result); null when it had no valid id. */
  messageId: string | null;
  /** `rejected`: refused by the node; `dead-lettered`: delivered but expired or returned too often by the recipient. */
  status: 'rejected' | 'dead-lettered';
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

/** Parses a report body; throws SyntaxError when it is not the router's JSON. */
export function parseDeliveryReport(body: Buffer | string): DeliveryReport {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
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
  const report: DeliveryReport = { messageId, status, reason, detail, node, at: new Date(at) };
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
