/**
 * What each queue of a node's vhost is for, and so what an operator may do
 * to it (`dmr queue`, docs/queues.md). The rules come from "nothing
 * accepted is lost" and from how RabbitMQ 3.10 treats a peek:
 *
 * - A peek is a basic.get put back at once. A quorum queue counts the
 *   return as a delivery attempt, so on a queue with `x-delivery-limit`
 *   (client queues, the router inputs) a peek can dead-letter a message the
 *   recipient never saw: refused there. The evidence queues and the parking
 *   queues have no limit.
 * - A purge throws messages away. Traffic queues (router inputs, client
 *   queues, outbound links, parking, the report queue) hold messages DMR accepted:
 *   never purged from here. Evidence (the rejected queue, DLQs) may be.
 * - Only a client's DLQ is replayed: its messages passed every check when
 *   they were routed; a rejected message was refused and stays refused.
 */
import {
  AUDIT_STREAM,
  DEAD_LETTER_REPORTS_QUEUE,
  INGRESS_QUEUE_PREFIX,
  MESH_INGRESS_QUEUE_PREFIX,
  PARKING_QUEUE_PREFIX,
  REJECTED_QUEUE,
} from '@dmr/contract';
import { isValidId } from '@dmr/core';

export type QueueRole =
  | { kind: 'ingress'; shard: number }
  | { kind: 'mesh-ingress'; shard: number }
  | { kind: 'client'; client: string }
  | { kind: 'dead-letter'; client: string }
  | { kind: 'outbound'; peer: string }
  | { kind: 'parking'; shard: number }
  | { kind: 'rejected' }
  | { kind: 'dead-letter-reports' }
  | { kind: 'audit' }
  | { kind: 'other' };

const CLIENT_PREFIX = 'dmr.client.';
const DLQ_SUFFIX = '.dlq';
const OUTBOUND_PREFIX = 'dmr.outbound.';

function shardOf(rest: string): number | undefined {
  return /^(0|[1-9][0-9]{0,3})$/.test(rest) ? Number(rest) : undefined;
}

/** Pure: the role of a queue named `name` in a node's vhost. */
export function queueRole(name: string): QueueRole {
  if (name === REJECTED_QUEUE) return { kind: 'rejected' };
  if (name === DEAD_LETTER_REPORTS_QUEUE) return { kind: 'dead-letter-reports' };
  if (name === AUDIT_STREAM) return { kind: 'audit' };
  if (name.startsWith(MESH_INGRESS_QUEUE_PREFIX)) {
    const shard = shardOf(name.slice(MESH_INGRESS_QUEUE_PREFIX.length));
    return shard === undefined ? { kind: 'other' } : { kind: 'mesh-ingress', shard };
  }
  if (name.startsWith(INGRESS_QUEUE_PREFIX)) {
    const shard = shardOf(name.slice(INGRESS_QUEUE_PREFIX.length));
    return shard === undefined ? { kind: 'other' } : { kind: 'ingress', shard };
  }
  if (name.startsWith(PARKING_QUEUE_PREFIX)) {
    const shard = shardOf(name.slice(PARKING_QUEUE_PREFIX.length));
    return shard === undefined ? { kind: 'other' } : { kind: 'parking', shard };
  }
  if (name.startsWith(OUTBOUND_PREFIX)) {
    const peer = name.slice(OUTBOUND_PREFIX.length);
    return isValidId(peer) ? { kind: 'outbound', peer } : { kind: 'other' };
  }
  if (name.startsWith(CLIENT_PREFIX)) {
    const rest = name.slice(CLIENT_PREFIX.length);
    if (rest.endsWith(DLQ_SUFFIX)) {
      const client = rest.slice(0, -DLQ_SUFFIX.length);
      return isValidId(client) ? { kind: 'dead-letter', client } : { kind: 'other' };
    }
    return isValidId(rest) ? { kind: 'client', client: rest } : { kind: 'other' };
  }
  return { kind: 'other' };
}

export type QueueOperation = 'peek' | 'purge' | 'replay';

/** Why `operation` is refused on a queue of this role, with what to do instead; undefined when allowed. */
export function refusalOf(role: QueueRole, operation: QueueOperation): { why: string; hint: string } | undefined {
  switch (operation) {
    case 'peek':
      if (role.kind === 'client' || role.kind === 'ingress' || role.kind === 'mesh-ingress') {
        return {
          why: 'this queue has a delivery limit: a peek counts as a delivery attempt and can dead-letter a message',
          hint: '`dmr queue list` shows its depth; peek its dead letters (dmr.client.<id>.dlq) or dmr.rejected',
        };
      }
      if (role.kind === 'audit') {
        return { why: 'the audit stream is read with an offset, not peeked', hint: 'use `dmr audit export`' };
      }
      if (role.kind === 'other') return { why: 'not a DMR queue', hint: '`dmr queue list` names the queues' };
      return undefined;
    case 'purge':
      if (role.kind === 'rejected' || role.kind === 'dead-letter') return undefined;
      return {
        why:
          role.kind === 'audit'
            ? 'the audit stream is evidence that must not be cut'
            : role.kind === 'other'
              ? 'not a DMR queue'
              : 'it holds messages DMR accepted (or their reports): purging would lose them',
        hint: 'only dmr.rejected and the dead-letter queues (dmr.client.<id>.dlq) can be purged',
      };
    case 'replay':
      return role.kind === 'dead-letter'
        ? undefined
        : {
            why: 'only a dead-letter queue is replayed to its recipient',
            hint: 'name a client: `dmr queue replay --client <id>` moves dmr.client.<id>.dlq back to dmr.client.<id>',
          };
  }
}
