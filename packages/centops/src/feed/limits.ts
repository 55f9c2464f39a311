/**
 * The message limits every node enforces, in one place. The registry has no
 * per-node limits yet, so every node receives these defaults; a later model
 * change can override them per node without changing the document shape.
 */
import { DEFAULT_MAX_HOPS, MAX_HEADER_BYTES } from '@dmr/contract';

export interface Limits {
  /** Largest message body a node accepts at ingress (bytes). */
  maxMessageBytes: number;
  /** Cap on a message's `expiration`; a message without one gets this TTL (ms). */
  maxTtlMs: number;
  /** Messages a client's queue holds before it rejects publishes (`x-max-length`, overflow reject-publish). */
  queueMaxLength: number;
  /** Quorum-queue `delivery-limit`: redeliveries before a message is dead-lettered. */
  deliveryLimit: number;
  /** How far a message `timestamp` may lie from the node's clock (ms). */
  timestampSkewMs: number;
  /**
   * How long a message id is remembered for deduplication (ms). At least
   * maxTtlMs + timestampSkewMs: a redelivery can arrive as late as the
   * message lives, and it must still be recognised.
   */
  dedupWindowMs: number;
  /**
   * Largest AMQP header table a node accepts at ingress, measured as encoded
   * on the wire (bytes). Far below amqplib's 64 KiB encode buffer, so nothing
   * a node accepted is too large to re-publish.
   */
  maxHeaderBytes: number;
  /** Bytes an ingress or rejected queue holds before it refuses (ingress) or drops its oldest (rejected). */
  queueMaxBytes: number;
  /**
   * Quorum-queue delivery limit of the router's ingress queues: a message the
   * routers took this often without settling it (each crashed or lost its
   * connection with it) is dead-lettered to `dmr.rejected` instead of looping.
   */
  ingressDeliveryLimit: number;
  /** Messages per second one sender may send through one router (token bucket refill rate). */
  senderRatePerSecond: number;
  /** Messages one sender may send at once before senderRatePerSecond applies (token bucket size). */
  senderBurst: number;
  /** Unexpired message ids one sender may hold in a router's replay window: its share of the window. */
  maxIdsPerSender: number;
  /**
   * RabbitMQ user limit `max-connections` of every client and peer user on
   * the node's broker: the (N+1)th connection is refused at `connection.open`.
   */
  maxConnectionsPerUser: number;
  /**
   * RabbitMQ user limit `max-channels`: channels of one user over all its
   * connections. Opening one more closes that whole connection (530).
   */
  maxChannelsPerUser: number;
  /**
   * Links a message may cross to reach its recipient: a router forwards
   * nothing that crossed this many, and refuses a hop chain longer than it
   * on arrival (docs/mesh.md). At most 32, the NodeConfig schema's bound.
   */
  maxHops: number;
}

/** The NodeConfig schema's bound on `maxHops`: every hop adds ≈ 2 KB of headers a peer must accept. */
export const MAX_HOPS_LIMIT = 32;

const HOUR_MS = 3_600_000;
export { MAX_HEADER_BYTES } from '@dmr/contract';

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  // Chat messages are small; 1 MiB leaves room for attachments' metadata and E2E envelopes.
  maxMessageBytes: 1_048_576,
  // A chat answer older than a day is useless to the end user.
  maxTtlMs: 24 * HOUR_MS,
  queueMaxLength: 10_000,
  deliveryLimit: 5,
  timestampSkewMs: 5 * 60_000,
  dedupWindowMs: 24 * HOUR_MS + 5 * 60_000,
  // DMR's own headers and trace context take < 1 KiB; the rest is room for small app-* headers.
  maxHeaderBytes: 16_384,
  queueMaxBytes: 256 * 1_048_576,
  // Twice the client queues' limit: a message is re-taken on every router crash or connection loss.
  ingressDeliveryLimit: 10,
  senderRatePerSecond: 100,
  senderBurst: 1_000,
  // A quarter of a router's default window (1 000 000 ids): one sender cannot fill it alone.
  maxIdsPerSender: 250_000,
  // An SDK client holds 1 connection with 2 channels, a peer link 1–2 of each: room for a few replicas of one
  // bot and for a dead connection the broker has not noticed yet when its client reconnects.
  maxConnectionsPerUser: 10,
  maxChannelsPerUser: 100,
  // Eight links is more than any path of a national mesh needs, and bounds the hop chain at ≈ 16 KB.
  maxHops: DEFAULT_MAX_HOPS,
});

/** The defaults with `overrides` applied, checked so the dedup window still covers a message's life. */
export function resolveLimits(overrides: Partial<Limits> = {}): Limits {
  const limits = { ...DEFAULT_LIMITS, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`limit ${name} must be a positive integer`);
  }
  if (limits.dedupWindowMs < limits.maxTtlMs + limits.timestampSkewMs) {
    throw new RangeError('dedupWindowMs must be at least maxTtlMs + timestampSkewMs');
  }
  if (limits.maxHops > MAX_HOPS_LIMIT) throw new RangeError(`maxHops must be at most ${MAX_HOPS_LIMIT}`);
  if (limits.maxHeaderBytes > MAX_HEADER_BYTES) {
    throw new RangeError(`maxHeaderBytes must be at most ${MAX_HEADER_BYTES} (what a router can re-encode)`);
  }
  return limits;
}
