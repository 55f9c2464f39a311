/**
 * The names of a node's broker layout: its vhost, exchanges and queues, and
 * the tags of the broker users a node manages. Clients, routers, the
 * reconciler and the local mesh all name the same things; this is the one
 * place those names are spelt. docs/contract.md "Broker layout" says what
 * each one is for; packages/node/src/reconciler/layout.ts builds the layout
 * from a NodeConfig.
 */

/** Every exchange and queue a node owns starts with this; anything else in the vhost is left alone. */
export const DMR_PREFIX = 'dmr.';
/** User tags marking the users a node's reconciler owns (the management API lists users of every vhost). */
export const CLIENT_USER_TAG = 'dmr-client';
export const ROUTER_USER_TAG = 'dmr-router';
export const PEER_USER_TAG = 'dmr-peer';
export const MANAGED_USER_TAGS: readonly string[] = [CLIENT_USER_TAG, ROUTER_USER_TAG, PEER_USER_TAG];

/** The exchange every client publishes to (the only thing it may write). */
export const INGRESS_EXCHANGE = 'dmr.ingress';
export const MESH_INGRESS_EXCHANGE = 'dmr.mesh-ingress';
export const DELIVERY_EXCHANGE = 'dmr.delivery';
/** Prefix of the per-shard ingress queues `dmr.ingress.<n>`. */
export const INGRESS_QUEUE_PREFIX = 'dmr.ingress.';
export const DEAD_LETTER_EXCHANGE = 'dmr.dead-letter';
export const DEAD_LETTER_REPORTS_QUEUE = 'dmr.dead-letter-reports';
/** Prefix of the per-shard mesh-ingress queues `dmr.mesh-ingress.<n>`: router shard n consumes both its shards. */
export const MESH_INGRESS_QUEUE_PREFIX = 'dmr.mesh-ingress.';
export const REJECTED_QUEUE = 'dmr.rejected';
/**
 * A fanout exchange of the same name in front of the rejected queue: the
 * router's rejected copies go through it, and a fanout routes to its one
 * queue whatever routing keys (CC/BCC) a message carries. The router
 * inputs' dead letters reach the queue from `dmr.dead-letter` instead,
 * bound under each input's name (docs/decisions/0042-input-dead-letters.md).
 */
export const REJECTED_EXCHANGE = 'dmr.rejected';
export const AUDIT_STREAM = 'dmr.audit';
/**
 * Parking (docs/decisions/0039-parking.md): a direct exchange in front of one
 * parking queue per router shard `dmr.parking.<n>`. A router parks a message
 * for a destination that is full past its share of the hold: it publishes the
 * message here under the name of the queue it took it from, the parking
 * queue's TTL runs out, and the queue dead-letters it through the default
 * exchange under that same routing key, i.e. back into that queue.
 */
export const PARKING_EXCHANGE = 'dmr.parking';
/** Prefix of the per-shard parking queues `dmr.parking.<n>`. */
export const PARKING_QUEUE_PREFIX = 'dmr.parking.';
/** How long a parked message waits before it comes back to its router (the parking queue's x-message-ttl). */
export const PARKING_TTL_MS = 5_000;

/** The vhost of node `nodeId` on its broker. */
export function vhostName(nodeId: string): string {
  return `dmr-${nodeId}`;
}
export function ingressQueueName(shard: number): string {
  return `${INGRESS_QUEUE_PREFIX}${shard}`;
}
/** What peer nodes' links write to, sharded like the client ingress: one message id reaches one router. */
export function meshIngressQueueName(shard: number): string {
  return `${MESH_INGRESS_QUEUE_PREFIX}${shard}`;
}
/** Where router shard `shard` parks what it cannot hold (PARKING_EXCHANGE). */
export function parkingQueueName(shard: number): string {
  return `${PARKING_QUEUE_PREFIX}${shard}`;
}
/** The queue a client reads (and the only one it may read). */
export function clientQueueName(clientId: string): string {
  return `dmr.client.${clientId}`;
}
export function deadLetterQueueName(clientId: string): string {
  return `dmr.client.${clientId}.dlq`;
}
/** What waits for the link to `peer`: a shovel moves it to the peer's `dmr.mesh-ingress`. */
export function outboundQueueName(peer: string): string {
  return `dmr.outbound.${peer}`;
}
