/**
 * The policy step every router path takes (origin-path.ts, relay-path.ts):
 * one decision, timed and counted by result and reason. No answer at all
 * is Transient — the message is held and tried again — never an allow.
 */
import { performance } from 'node:perf_hooks';
import type { PolicyDecider, PolicyDecision } from '@dmr/policy';
import { hopEvent } from './hop-trace.js';
import type { RouterMetrics } from './metrics.js';
import { Transient } from './outcome.js';

export async function askPolicy(
  policy: PolicyDecider,
  metrics: RouterMetrics,
  input: unknown,
): Promise<PolicyDecision> {
  const started = performance.now();
  let decision: PolicyDecision;
  try {
    decision = await policy.decide(input);
  } catch (error) {
    metrics.policyDecisions.inc({ result: 'error', reason: 'POLICY_UNAVAILABLE' });
    throw new Transient('policy', 'the policy could not decide', { cause: error });
  }
  metrics.policySeconds.observe((performance.now() - started) / 1000);
  hopEvent('policy', { 'dmr.policy.allow': decision.allow, 'dmr.policy.revision': decision.revision ?? '' });
  for (const reason of decision.reasons.length > 0 ? decision.reasons : ['NONE']) {
    metrics.policyDecisions.inc({ result: decision.allow ? 'allow' : 'deny', reason });
  }
  return decision;
}
