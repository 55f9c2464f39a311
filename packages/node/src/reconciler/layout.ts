/**
 * The broker layout of one DMR node (docs/contract.md "Broker layout"), derived
 * purely from its NodeConfig. No I/O: apply.ts compares this with what the
 * broker has and changes the difference.
 *
 * Routing choice: ONE direct exchange `dmr.delivery` with each client queue
 * bound under the client id, rather than one exchange per client. The router
 * then needs write permission on a single exchange, clients have none on it,
 * and a client added or removed changes one binding instead of an exchange.
 * `dmr.ingress` is an `x-consistent-hash` exchange hashing on `message_id`
 * over one queue per router shard (`dmr.ingress.<n>`): one message id always
 * reaches the same router process, so each router's in-memory replay guard
 * sees every copy of the ids it owns. A message without `message_id` is
 * hashed as "undefined" and lands on one fixed shard (measured on 3.10.8),
 * whose router refuses it. `dmr.mesh-ingress`, what peer links write to, is
 * sharded the same way over `dmr.mesh-ingress.<n>`. The routing key a client sets is irrelevant (the
 * router reads the recipient from the message).
 *
 * Dead letters: client queues dead-letter (at-least-once) to the topic
 * exchange `dmr.dead-letter` with the client id as routing key; it feeds the
 * client's DLQ (the evidence) and `dmr.dead-letter-reports` (`#`), which the
 * routers consume to tell senders that a message expired or hit the delivery
 * limit. The router inputs (`dmr.ingress.<n>`, `dmr.mesh-ingress.<n>`) and the
 * links' outbound queues do the same under their own queue name as routing
 * key (ids have no dots, so no DLQ binding matches it); an input's dead letter
 * is also copied whole to `dmr.rejected`, the evidence it always went to
 * (docs/decisions/0042-input-dead-letters.md).
 *
 * Users: the broker logs a certificate in as its SPIFFE id (its first URI
 * SAN, docs/decisions/0014-broker-login-by-spiffe-id.md), so each user is
 * named `spiffe://<trustDomain>/client/<id>` or `…/node/<id>`: only a client
 * certificate can be a client user, only a node certificate a peer or the
 * router. Client and peer users carry RabbitMQ user limits from
 * `limits.maxConnectionsPerUser` / `maxChannelsPerUser`.
 */
import { spiffeId } from '@dmr/core';
import type { UserLimitName } from '@dmr/broker';
import {
  AUDIT_STREAM,
  CLIENT_USER_TAG,
  DEAD_LETTER_EXCHANGE,
  DEAD_LETTER_REPORTS_QUEUE,
  DELIVERY_EXCHANGE,
  INGRESS_EXCHANGE,
  MESH_INGRESS_EXCHANGE,
  PARKING_EXCHANGE,
  PARKING_TTL_MS,
  PEER_USER_TAG,
  REJECTED_EXCHANGE,
  REJECTED_QUEUE,
  ROUTER_USER_TAG,
  clientQueueName,
  deadLetterQueueName,
  ingressQueueName,
  meshIngressQueueName,
  outboundQueueName,
  parkingQueueName,
  vhostName,
  type NodeConfig,
} from '@dmr/contract';
import { desiredShovels, type DesiredShovel, type LinkOptions } from './links.js';

/** RabbitMQ's name of the default ("") exchange in permission checks. */
export const DEFAULT_EXCHANGE_RESOURCE = 'amq.default';

/** Escapes every regular-expression metacharacter, so a name matches only itself. */
export function escapeRegex(name: string): string {
  return name.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/**
 * An anchored alternation of exact names. RabbitMQ matches permission
 * regexes against the whole resource name only if anchored (an unanchored
 * `dmr.ingress` would also grant `xdmr.ingressy`); '' grants nothing.
 */
export function exactNames(names: readonly string[]): string {
  if (names.length === 0) return '';
  const sorted = [...new Set(names)].sort();
  return sorted.length === 1 ? `^${escapeRegex(sorted[0] as string)}$` : `^(${sorted.map(escapeRegex).join('|')})$`;
}

export type ArgumentValue = string | number | boolean;
export type QueueArguments = Readonly<Record<string, ArgumentValue>>;

export type DesiredExchangeType = 'direct' | 'fanout' | 'topic' | 'x-consistent-hash';

export interface DesiredExchange {
  name: string;
  type: DesiredExchangeType;
  /** Compared exactly with the broker's; exchange arguments cannot change in place either. */
  arguments: QueueArguments;
}
export interface DesiredQueue {
  name: string;
  /** Every argument the reconciler sets; compared exactly with the broker's. */
  arguments: QueueArguments;
}
export interface DesiredBinding {
  source: string;
  destination: string;
  routingKey: string;
}
export interface DesiredPermissions {
  configure: string;
  write: string;
  read: string;
}
/** RabbitMQ user limits by their broker names. */
export type DesiredUserLimits = Readonly<Record<UserLimitName, number>>;

export interface DesiredUser {
  /** The SPIFFE id of the certificate that logs in as this user. */
  name: string;
  /** Exactly one of MANAGED_USER_TAGS. */
  tag: string;
  permissions: DesiredPermissions;
  /** The limits the reconciler keeps on this user; absent: it leaves the user's limits alone (the router). */
  limits?: DesiredUserLimits;
}

export interface BrokerLayout {
  vhost: string;
  exchanges: DesiredExchange[];
  queues: DesiredQueue[];
  bindings: DesiredBinding[];
  users: DesiredUser[];
  /**
   * One shovel per configured link whose peer is not denylisted; undefined
   * when the layout was derived without LinkOptions: the reconciler then
   * leaves every shovel alone.
   */
  shovels?: DesiredShovel[];
  /** Denylisted nodes: a link shovel to one of them is deleted at once, not drained. */
  deniedPeers: string[];
}

export interface LayoutOptions {
  /** Override of vhostName(node.id). */
  vhost?: string;
  /** Router processes, each consuming one `dmr.ingress.<n>` (default 1). */
  routerShards?: number;
  /** Where this node's TLS files are for the link shovels; without it, links get their queues and users only. */
  links?: LinkOptions;
  /** How long a parked message waits before it returns to its router (default PARKING_TTL_MS; tests shorten it). */
  parkingTtlMs?: number;
}

/** Ids on the denylist of `kind`: they get no broker user whatever their status. */
function denied(config: NodeConfig, kind: 'client' | 'node'): Set<string> {
  return new Set(config.denylist.filter((entry) => entry.kind === kind).map((entry) => entry.id));
}

function quorum(extra: Record<string, ArgumentValue>): QueueArguments {
  return { 'x-queue-type': 'quorum', ...extra };
}

export function desiredLayout(config: NodeConfig, options: LayoutOptions = {}): BrokerLayout {
  const { limits, trustDomain } = config;
  const userLimits: DesiredUserLimits = {
    'max-connections': limits.maxConnectionsPerUser,
    'max-channels': limits.maxChannelsPerUser,
  };
  const deniedClients = denied(config, 'client');
  const deniedNodes = denied(config, 'node');
  const shards = options.routerShards ?? 1;
  if (!Number.isSafeInteger(shards) || shards < 1 || shards > 64) {
    throw new RangeError('routerShards must be an integer from 1 to 64');
  }
  const exchanges: DesiredExchange[] = [
    { name: DELIVERY_EXCHANGE, type: 'direct', arguments: {} },
    { name: DEAD_LETTER_EXCHANGE, type: 'topic', arguments: {} },
    { name: INGRESS_EXCHANGE, type: 'x-consistent-hash', arguments: { 'hash-property': 'message_id' } },
    { name: MESH_INGRESS_EXCHANGE, type: 'x-consistent-hash', arguments: { 'hash-property': 'message_id' } },
    { name: REJECTED_EXCHANGE, type: 'fanout', arguments: {} },
    { name: PARKING_EXCHANGE, type: 'direct', arguments: {} },
  ];
  const ingressQueues = Array.from({ length: shards }, (_, shard) => ingressQueueName(shard));
  const meshIngressQueues = Array.from({ length: shards }, (_, shard) => meshIngressQueueName(shard));
  const parkingQueues = Array.from({ length: shards }, (_, shard) => parkingQueueName(shard));
  // Router inputs: bounded (count and bytes) so a stalled router pushes back on senders instead of filling
  // the disk. A message the routers keep taking without settling (a crash or connection loss each time) is
  // dead-lettered after ingressDeliveryLimit deliveries instead of looping forever; so is one whose own
  // `expiration` runs out while it waits. Both were accepted (the sender has its confirm): they go to the
  // routers' dead-letter reports under the input's name, which become a report to the sender (decision 0042),
  // and to dmr.rejected as evidence. at-least-once (needs reject-publish): the dead letter leaves the input only
  // once both queues confirmed it.
  const routerInput = (name: string): QueueArguments =>
    quorum({
      'x-max-length': limits.queueMaxLength,
      'x-max-length-bytes': limits.queueMaxBytes,
      'x-overflow': 'reject-publish',
      'x-delivery-limit': limits.ingressDeliveryLimit,
      'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE,
      'x-dead-letter-routing-key': name,
      'x-dead-letter-strategy': 'at-least-once',
    });
  const queues: DesiredQueue[] = [
    ...ingressQueues.map((name) => ({ name, arguments: routerInput(name) })),
    // What every dead letter becomes a report from. reject-publish, not drop-head: every source dead-letters into
    // it at-least-once, so a full reports queue (routers down while dead letters pile up) leaves each dead letter
    // in its source and RabbitMQ offers it again (dead_letter_worker_publisher_confirm_timeout) — drop-head
    // dropped the oldest, and with it a report its sender was owed (decision 0042).
    {
      name: DEAD_LETTER_REPORTS_QUEUE,
      arguments: quorum({ 'x-max-length': limits.queueMaxLength, 'x-overflow': 'reject-publish' }),
    },
    // What peer links write, bounded the same way: a full node nacks the peer's shovel (which keeps the
    // message in its outbound queue) instead of filling the disk.
    ...meshIngressQueues.map((name) => ({ name, arguments: routerInput(name) })),
    // Evidence: bounded in count and bytes, the oldest goes first so the newest refusals are always kept.
    {
      name: REJECTED_QUEUE,
      arguments: quorum({
        'x-message-ttl': limits.maxTtlMs,
        'x-max-length': limits.queueMaxLength,
        'x-max-length-bytes': limits.queueMaxBytes,
        'x-overflow': 'drop-head',
      }),
    },
    { name: AUDIT_STREAM, arguments: { 'x-queue-type': 'stream' } },
    // Parking (docs/decisions/0039-parking.md): what a router cannot hold for a full destination waits here for
    // the TTL, then dead-letters through the default exchange under the routing key it was parked with, the name
    // of the router input it came from: back to the same shard. Bounded like the inputs, and reject-publish, which
    // at-least-once dead-lettering needs (RABBITMQ-FACTS): a full parking queue nacks the router, which then holds
    // the message (the shard's bound, then the stop); a full input leaves the message parked until it has room.
    ...parkingQueues.map((name) => ({
      name,
      arguments: quorum({
        'x-message-ttl': options.parkingTtlMs ?? PARKING_TTL_MS,
        'x-max-length': limits.queueMaxLength,
        'x-max-length-bytes': limits.queueMaxBytes,
        'x-overflow': 'reject-publish',
        'x-dead-letter-exchange': '',
        'x-dead-letter-strategy': 'at-least-once',
      }),
    })),
  ];
  const bindings: DesiredBinding[] = [
    // A consistent-hash binding's routing key is the queue's weight: equal shares.
    ...ingressQueues.map((queue) => ({ source: INGRESS_EXCHANGE, destination: queue, routingKey: '1' })),
    ...meshIngressQueues.map((queue) => ({ source: MESH_INGRESS_EXCHANGE, destination: queue, routingKey: '1' })),
    { source: DEAD_LETTER_EXCHANGE, destination: DEAD_LETTER_REPORTS_QUEUE, routingKey: '#' },
    { source: REJECTED_EXCHANGE, destination: REJECTED_QUEUE, routingKey: '' },
    // An input's dead letter is kept whole as evidence as well, as before it was reported: the audit record names
    // only ids, and the body of a message the routers kept failing on is what an operator needs (decision 0042).
    ...[...ingressQueues, ...meshIngressQueues].map((queue) => ({
      source: DEAD_LETTER_EXCHANGE,
      destination: REJECTED_QUEUE,
      routingKey: queue,
    })),
    // A shard parks under its inputs' names; dead letters (any router takes any) all park in shard 0's queue.
    ...parkingQueues.flatMap((queue, shard) => [
      { source: PARKING_EXCHANGE, destination: queue, routingKey: ingressQueueName(shard) },
      { source: PARKING_EXCHANGE, destination: queue, routingKey: meshIngressQueueName(shard) },
    ]),
    { source: PARKING_EXCHANGE, destination: parkingQueueName(0), routingKey: DEAD_LETTER_REPORTS_QUEUE },
  ];
  const users: DesiredUser[] = [];

  for (const client of config.clients) {
    const queue = clientQueueName(client.id);
    const dlq = deadLetterQueueName(client.id);
    // The queue stays while the client is configured (suspended or denylisted too), so nothing queued is lost.
    queues.push({
      name: queue,
      arguments: quorum({
        'x-message-ttl': limits.maxTtlMs,
        'x-delivery-limit': limits.deliveryLimit,
        'x-max-length': limits.queueMaxLength,
        // Quorum queues never push back by themselves (RABBITMQ-FACTS): reject-publish nacks the publisher.
        'x-overflow': 'reject-publish',
        // Dead letters go to the client's DLQ (evidence) and to the routers' report queue, by client id.
        // at-least-once: a dead letter leaves this queue only once both targets confirmed it.
        'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE,
        'x-dead-letter-routing-key': client.id,
        'x-dead-letter-strategy': 'at-least-once',
      }),
    });
    // The DLQ is evidence, not traffic: bounded, and the oldest goes first rather than refusing new dead letters.
    queues.push({
      name: dlq,
      arguments: quorum({ 'x-max-length': limits.queueMaxLength, 'x-overflow': 'drop-head' }),
    });
    bindings.push({ source: DELIVERY_EXCHANGE, destination: queue, routingKey: client.id });
    bindings.push({ source: DEAD_LETTER_EXCHANGE, destination: dlq, routingKey: client.id });
    if (client.status === 'active' && !deniedClients.has(client.id)) {
      users.push({
        name: spiffeId(trustDomain, 'client', client.id),
        tag: CLIENT_USER_TAG,
        // configure nothing; write only to ingress; read (consume/get) only its own queue.
        permissions: { configure: '', write: exactNames([INGRESS_EXCHANGE]), read: exactNames([queue]) },
        limits: userLimits,
      });
    }
  }

  const peers = config.links.map((link) => link.peer).filter((peer) => !deniedNodes.has(peer));
  const outboundArguments = (peer: string): Record<string, ArgumentValue> => ({
    'x-queue-type': 'quorum',
    // Bounded like the ingress: past the bound the router's publish is nacked, which is the backpressure
    // towards the sender while the peer is unreachable (one message of slack: docs/mesh-links.md trap 4).
    'x-max-length': limits.queueMaxLength,
    'x-max-length-bytes': limits.queueMaxBytes,
    'x-overflow': 'reject-publish',
    'x-message-ttl': limits.maxTtlMs,
    // What expires in a link goes to the routers' dead-letter reports (bound with `#`) under this key, which
    // tells the router it expired in the link to `peer`, and becomes a MESSAGE_EXPIRED report. at-least-once
    // (needs reject-publish): a dead letter leaves this queue only once dmr.dead-letter's queues confirmed it.
    'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE,
    'x-dead-letter-routing-key': outboundQueueName(peer),
    'x-dead-letter-strategy': 'at-least-once',
  });
  for (const peer of peers) {
    queues.push({ name: outboundQueueName(peer), arguments: outboundArguments(peer) });
    // The peer's link (its shovel) logs in with its node certificate and may only write mesh-ingress.
    users.push({
      name: spiffeId(trustDomain, 'node', peer),
      tag: PEER_USER_TAG,
      permissions: { configure: '', write: exactNames([MESH_INGRESS_EXCHANGE]), read: '' },
      limits: userLimits,
    });
  }
  const vhost = options.vhost ?? vhostName(config.node.id);
  const shovels =
    options.links === undefined ? undefined : desiredShovels(config, vhost, options.links, outboundArguments);

  // The routers log in with the node's own certificate. Their connections are this node's own (one per
  // router process, and the agent decides how many), so no user limits.
  users.push({
    name: spiffeId(trustDomain, 'node', config.node.id),
    tag: ROUTER_USER_TAG,
    permissions: {
      // The reconciler declares everything; the router only passive-declares, which needs no permission.
      configure: '',
      // Delivery to clients through dmr.delivery, refusals through dmr.rejected, parking through dmr.parking;
      // outbound/audit through the default.
      write: exactNames([DELIVERY_EXCHANGE, REJECTED_EXCHANGE, PARKING_EXCHANGE, DEFAULT_EXCHANGE_RESOURCE]),
      // Only its inputs: the ingress shards, mesh ingress and the dead-letter reports (not the DLQs), and the
      // audit stream it writes (`dmr audit export` reads it with the node's certificate).
      read: exactNames([...ingressQueues, ...meshIngressQueues, DEAD_LETTER_REPORTS_QUEUE, AUDIT_STREAM]),
    },
  });

  const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return {
    vhost,
    exchanges: exchanges.sort(byName),
    queues: queues.sort(byName),
    bindings,
    users: users.sort(byName),
    ...(shovels === undefined ? {} : { shovels: shovels.sort(byName) }),
    deniedPeers: [...deniedNodes].sort(),
  };
}
