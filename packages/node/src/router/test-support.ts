/** Fixtures shared by this directory's broker-free tests. Not exported from index. */
import type { NodeConfig } from '@dmr/contract';
import { LIMITS } from '../message/test-support.js';

/** The message tests' limits, smaller where a router test must reach them with a handful of messages. */
export const ROUTER_TEST_LIMITS: NodeConfig['limits'] = {
  ...LIMITS,
  maxTtlMs: 60_000,
  queueMaxLength: 10,
  deliveryLimit: 3,
  dedupWindowMs: 400_000,
};
