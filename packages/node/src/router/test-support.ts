/** Fixtures shared by this directory's broker-free tests. Not exported from index. */
import type { NodeConfig } from '@dmr/contract';

/** Small limits, so a test reaches them with a handful of messages. */
export const ROUTER_TEST_LIMITS: NodeConfig['limits'] = {
  maxMessageBytes: 1024,
  maxTtlMs: 60_000,
  queueMaxLength: 10,
  deliveryLimit: 3,
  timestampSkewMs: 300_000,
  dedupWindowMs: 400_000,
  maxHeaderBytes: 4096,
  queueMaxBytes: 1_048_576,
  ingressDeliveryLimit: 5,
  senderRatePerSecond: 100,
  senderBurst: 100,
  maxIdsPerSender: 1000,
  maxConnectionsPerUser: 10,
  maxChannelsPerUser: 100,
};
