/**
 * What an operator does to a node's queues (`dmr queue`, docs/queues.md):
 * list them with depth, rates and consumers; peek the evidence queues
 * (metadata only unless payloads are asked for); replay a client's dead
 * letters to its queue, with the same message ids; purge evidence.
 *
 * Everything goes through the broker's management API with the node's admin
 * credentials (from the run-config): AMQP accepts only node and client
 * certificates, and neither may read a DLQ (the router user is kept off them
 * on purpose, reconciler/layout.ts). A replay is RabbitMQ's own "move
 * messages" shovel, acking each dead letter only after the client queue
 * confirmed its copy (shovels.ts moveShovelSpec).
 */
import {
  BODY_BYTES_HEADER,
  DELIVERY_EXCHANGE,
  DETAIL_HEADER,
  ORIGIN_HEADER,
  REASON_HEADER,
  RECIPIENT_HEADER,
  SENDER_HEADER,
  clientQueueName,
  deadLetterQueueName,
} from '@dmr/contract';
import { DmrError, assertValidId } from '@dmr/core';
import { moveShovelSpec, type ManagementClient, type PeekedMessage, type QueueDepth } from '@dmr/broker';
import { queueRole, refusalOf, type QueueOperation, type QueueRole } from './roles.js';

export interface QueueRow {
  name: string;
  role: QueueRole['kind'];
  type: string | null;
  messages: number | null;
  ready: number | null;
  unacked: number | null;
  consumers: number | null;
  /** msg/s in and out over the broker's last sample window; null before the broker has one. */
  publishRate: number | null;
  deliverRate: number | null;
}

/** Every queue of the node's vhost, DMR's by role, then anything else. */
function queueRow(queue: QueueDepth): QueueRow {
  return {
    name: queue.name,
    role: queueRole(queue.name).kind,
    type: queue.type ?? null,
    messages: queue.messages ?? null,
    ready: queue.messagesReady ?? null,
    unacked: queue.messagesUnacknowledged ?? null,
    consumers: queue.consumers ?? null,
    publishRate: queue.publishRate ?? null,
    deliverRate: queue.deliverRate ?? null,
  };
}

export async function listNodeQueues(management: ManagementClient, vhost: string): Promise<QueueRow[]> {
  const rows = (await management.listQueues(vhost)).map(queueRow);
  return rows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function checkAllowed(queue: string, operation: QueueOperation): QueueRole {
  const role = queueRole(queue);
  const refusal = refusalOf(role, operation);
  if (refusal !== undefined) {
    throw new DmrError('PRECONDITION_FAILED', `cannot ${operation} ${queue}: ${refusal.why}`, {
      hint: refusal.hint,
      details: { queue, operation, role: role.kind },
    });
  }
  return role;
}

/** One queue's row (GET of that queue, not the node's list), or undefined. */
async function nodeQueue(management: ManagementClient, vhost: string, queue: string): Promise<QueueRow | undefined> {
  const found = await management.getQueue(vhost, queue);
  return found === undefined ? undefined : queueRow(found);
}

async function requireQueue(management: ManagementClient, vhost: string, queue: string): Promise<QueueRow> {
  const found = await nodeQueue(management, vhost, queue);
  if (found === undefined) {
    throw new DmrError('NOT_FOUND', `queue ${queue} does not exist in vhost ${vhost}`, {
      hint: '`dmr queue list --config FILE` names the queues of this node',
      details: { queue, vhost },
    });
  }
  return found;
}

export interface PeekOptions {
  /** 1–100 messages from the head. */
  count: number;
  /** Include message bodies; off by default, because bodies are the parties' data. */
  payloads?: boolean;
  /** Bytes of each body to return when payloads are asked for (default 4096). */
  maxPayloadBytes?: number;
}

export interface DeathRecord {
  reason: string;
  queue: string;
  count: number | null;
  time: string | null;
}

/** What a peek shows of one message: its DMR metadata, why it is here, and its body only when asked. */
export interface PeekedSummary {
  messageId: string | null;
  type: string | null;
  timestamp: string | null;
  sender: string | null;
  recipient: string | null;
  origin: string | null;
  /** The refusal code (dmr.rejected) or the dead-letter reason (x-death). */
  reason: string | null;
  detail: string | null;
  deaths: DeathRecord[];
  bodyBytes: number;
  routingKey: string;
  payload?: { encoding: 'string' | 'base64'; data: string; truncated: boolean };
}

const PEEK_MAX = 100;

function text(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return null;
}

function deathsOf(headers: Record<string, unknown>): DeathRecord[] {
  const raw = headers['x-death'];
  if (!Array.isArray(raw)) return [];
  return raw.flatMap((entry): DeathRecord[] => {
    if (typeof entry !== 'object' || entry === null) return [];
    const record = entry as Record<string, unknown>;
    const time = typeof record.time === 'number' ? new Date(record.time * 1000).toISOString() : null;
    return [
      {
        reason: text(record.reason) ?? 'unknown',
        queue: text(record.queue) ?? 'unknown',
        count: typeof record.count === 'number' ? record.count : null,
        time,
      },
    ];
  });
}

/** Pure: the summary of one peeked message (exported for its unit test). */
export function summarize(message: PeekedMessage, payloads: boolean, maxPayloadBytes: number): PeekedSummary {
  const props = message.properties;
  const headers =
    typeof props.headers === 'object' && props.headers !== null ? (props.headers as Record<string, unknown>) : {};
  const deaths = deathsOf(headers);
  const declaredBytes = typeof headers[BODY_BYTES_HEADER] === 'number' ? headers[BODY_BYTES_HEADER] : undefined;
  const summary: PeekedSummary = {
    messageId: text(props.message_id),
    type: text(props.type),
    timestamp: typeof props.timestamp === 'number' ? new Date(props.timestamp * 1000).toISOString() : null,
    sender: text(headers[SENDER_HEADER]),
    recipient: text(headers[RECIPIENT_HEADER]),
    origin: text(headers[ORIGIN_HEADER]),
    reason: text(headers[REASON_HEADER]) ?? deaths[0]?.reason ?? null,
    detail: text(headers[DETAIL_HEADER]),
    deaths,
    bodyBytes: declaredBytes ?? message.payloadBytes,
    routingKey: message.routingKey,
  };
  if (payloads) {
    summary.payload = {
      encoding: message.payloadEncoding,
      data: message.payload,
      truncated: message.payloadBytes > maxPayloadBytes,
    };
  }
  return summary;
}

/**
 * The first `count` messages of an evidence queue, put back as they were.
 * Refused on queues where a peek could change what happens to a message
 * (roles.ts).
 */
export async function peekQueue(
  management: ManagementClient,
  vhost: string,
  queue: string,
  options: PeekOptions,
): Promise<PeekedSummary[]> {
  if (!Number.isSafeInteger(options.count) || options.count < 1 || options.count > PEEK_MAX) {
    throw new DmrError('INVALID_ARGUMENT', `--count must be a whole number from 1 to ${PEEK_MAX}`, {
      hint: 'peek at most 100 messages at a time',
      details: { count: options.count },
    });
  }
  checkAllowed(queue, 'peek');
  await requireQueue(management, vhost, queue);
  const maxPayloadBytes = options.maxPayloadBytes ?? 4096;
  // Without payloads the broker still returns the body; truncating it to 1 byte keeps it out of this process.
  const truncate = options.payloads === true ? maxPayloadBytes : 1;
  const messages = await management.getMessages(vhost, queue, options.count, truncate);
  return messages.map((message) => summarize(message, options.payloads === true, maxPayloadBytes));
}

export interface ReplayOptions {
  /** At most this many dead letters (default: all the DLQ holds when the replay starts). */
  count?: number;
  /** Give up waiting after this long; the move goes on in the broker (default 5 min). */
  timeoutMs?: number;
  /** Called with the DLQ's remaining depth while the move runs. */
  onProgress?: (remaining: number | null) => void;
  /** Poll interval while waiting (default 250 ms). */
  pollMs?: number;
}

export interface DeadLetterReplay {
  client: string;
  from: string;
  to: string;
  /** What the DLQ held before and after (the broker's statistics, refreshed every few seconds). */
  before: number | null;
  after: number | null;
  shovel: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Moves a client's dead letters back to its queue through `dmr.delivery`,
 * keeping every property and header (so the message id is the same, and
 * the SDK's dedup still applies). A dead letter the client queue refuses
 * (full) is nacked back into the DLQ by the shovel, not lost: it stays
 * there for the next replay.
 */
export async function replayDeadLetters(
  management: ManagementClient,
  vhost: string,
  client: string,
  options: ReplayOptions = {},
): Promise<DeadLetterReplay> {
  assertValidId(client, 'client');
  const from = deadLetterQueueName(client);
  const to = clientQueueName(client);
  checkAllowed(from, 'replay');
  const dlq = await requireQueue(management, vhost, from);
  // The shovel publishes without `mandatory`: a message with no queue to go to would be confirmed and gone.
  // The client queue (bound to dmr.delivery while the client is configured) must be there first.
  const target = await nodeQueue(management, vhost, to);
  if (target === undefined) {
    throw new DmrError('NOT_FOUND', `client ${client} has no queue ${to} on this node`, {
      hint: 'the client is no longer configured here: its dead letters stay in the DLQ (peek or purge them)',
      details: { client, vhost },
    });
  }
  const name = `dmr.replay.${client}.${Date.now()}`;
  await management.declareShovel(
    vhost,
    name,
    moveShovelSpec({
      vhost,
      fromQueue: from,
      toExchange: DELIVERY_EXCHANGE,
      routingKey: client,
      ...(options.count === undefined ? {} : { count: options.count }),
    }),
  );
  // The shovel deletes its own definition once it moved what it was asked to.
  const deadline = Date.now() + (options.timeoutMs ?? 300_000);
  for (;;) {
    if ((await management.getShovel(vhost, name)) === undefined) break;
    if (Date.now() > deadline) {
      throw new DmrError('PRECONDITION_FAILED', `the replay ${name} is still moving messages`, {
        hint: 'it goes on in the broker and removes itself when done; `dmr queue list` shows the DLQ shrinking',
        details: { shovel: name },
      });
    }
    const now = await nodeQueue(management, vhost, from);
    options.onProgress?.(now?.messages ?? null);
    await sleep(options.pollMs ?? 250);
  }
  const after = await nodeQueue(management, vhost, from);
  return { client, from, to, before: dlq.messages, after: after?.messages ?? null, shovel: name };
}

/** Empties an evidence queue; returns how many messages it held just before. */
export async function purgeEvidence(
  management: ManagementClient,
  vhost: string,
  queue: string,
): Promise<{ queue: string; purged: number | null }> {
  checkAllowed(queue, 'purge');
  const row = await requireQueue(management, vhost, queue);
  await management.purgeQueue(vhost, queue);
  return { queue, purged: row.messages };
}
