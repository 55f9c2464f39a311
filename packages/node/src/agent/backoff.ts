/**
 * Timing decisions of the agent: the retry back-off is @dmr/core's (one
 * behaviour for every retry in DMR) and when to renew a certificate is
 * @dmr/pki's; both are re-exported for the agent's callers (the CRL refresh
 * is @dmr/broker's crlRefreshDelayMs).
 */
export { Backoff } from '@dmr/core';

// When to renew a certificate: @dmr/pki's schedule, the one the SDK uses too (re-exported for the agent's callers).
export { renewalDelayMs } from '@dmr/pki';
