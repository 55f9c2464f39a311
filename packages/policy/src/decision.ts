/**
 * The output side of the decision contract (docs/policy-input.md). Reason
 * codes are stable strings: metrics count by them and delivery reports and
 * audit records carry them, so a policy may add codes but never rename one.
 */
import { DmrError } from '@dmr/core';

/** The entrypoint every DMR policy bundle provides (`opa build -e`). */
export const DECISION_ENTRYPOINT = 'dmr/authz/decision';

/** Codes the default pack emits; custom packs may add their own (UPPER_SNAKE). */
export const REASON_CODES = [
  'SAME_ORGANISATION',
  'GRANT',
  'NO_GRANT',
  'TYPE_NOT_GRANTED',
  'TYPE_NOT_ALLOWED',
  'SIZE_LIMIT',
  'HOP_LIMIT',
  'INPUT_INVALID',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

/** What the Rego entrypoint returns. */
export interface PolicyResult {
  allow: boolean;
  reasons: string[];
}

/** A decision as the node sees it: the result plus the bundle revision that made it. */
export interface PolicyDecision extends PolicyResult {
  /** Revision of the bundle that decided; undefined only when no policy was consulted. */
  revision: string | undefined;
}

/** The deny for input that breaks the contract, decided before any policy runs. */
export function inputInvalidDecision(revision: string | undefined): PolicyDecision {
  return { allow: false, reasons: ['INPUT_INVALID'], revision };
}

/**
 * Checks what a policy returned. A policy that returns something else is a
 * broken policy, not a deny: the caller must see an error, never a silent allow.
 */
export function toPolicyResult(value: unknown, where: string): PolicyResult {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const { allow, reasons } = value as Record<string, unknown>;
    if (
      typeof allow === 'boolean' &&
      Array.isArray(reasons) &&
      reasons.every((reason): reason is string => typeof reason === 'string')
    ) {
      return { allow, reasons };
    }
  }
  throw new DmrError(
    'POLICY_UNAVAILABLE',
    `${where}: the policy returned ${JSON.stringify(value) ?? 'nothing'}, not {allow: boolean, reasons: string[]}`,
    { hint: `the bundle must define ${DECISION_ENTRYPOINT} as in the default pack` },
  );
}
