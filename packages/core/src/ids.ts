/**
 * Principal identities (docs/contract.md "Identities and trust").
 *
 * An id is 2–63 characters of lowercase letters, digits and `-`. We also
 * refuse a leading or trailing `-` so that an id is always a valid DNS label
 * and a valid RabbitMQ user/queue name fragment without escaping.
 */
import { DmrError } from './errors.js';

export const PRINCIPAL_KINDS = ['client', 'node'] as const;
export type PrincipalKind = (typeof PRINCIPAL_KINDS)[number];

/** The id rule as a regular expression source, for JSON Schemas at the API edge. */
export const ID_PATTERN_SOURCE = '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])$';
const ID_PATTERN = new RegExp(ID_PATTERN_SOURCE);
/** The trust domain rule (a lowercase DNS name) as a regular expression source, for JSON Schemas. */
export const TRUST_DOMAIN_PATTERN_SOURCE =
  '^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$';
const TRUST_DOMAIN_PATTERN = new RegExp(TRUST_DOMAIN_PATTERN_SOURCE);

/** Why an id is not acceptable, or `undefined` when it is. */
export function explainInvalidId(id: string): string | undefined {
  if (id.length < 2) return 'must be at least 2 characters';
  if (id.length > 63) return 'must be at most 63 characters';
  if (/[^a-z0-9-]/.test(id)) return 'may contain only lowercase letters, digits and "-"';
  if (id.startsWith('-') || id.endsWith('-')) return 'must not start or end with "-"';
  return ID_PATTERN.test(id) ? undefined : 'is not a valid id';
}

export function isValidId(id: string): boolean {
  return explainInvalidId(id) === undefined;
}

export function assertValidId(id: string, what = 'id'): void {
  const problem = explainInvalidId(id);
  if (problem !== undefined) {
    throw new DmrError('INVALID_ID', `${what} "${id}" ${problem}`, {
      details: { id },
    });
  }
}

export function isPrincipalKind(value: string): value is PrincipalKind {
  return (PRINCIPAL_KINDS as readonly string[]).includes(value);
}

export function assertPrincipalKind(value: string): asserts value is PrincipalKind {
  if (!isPrincipalKind(value)) {
    throw new DmrError('INVALID_ARGUMENT', `kind "${value}" is not one of ${PRINCIPAL_KINDS.join(', ')}`);
  }
}

export function isValidTrustDomain(value: string): boolean {
  return TRUST_DOMAIN_PATTERN.test(value);
}

export function assertValidTrustDomain(value: string): void {
  if (!isValidTrustDomain(value)) {
    throw new DmrError(
      'INVALID_ARGUMENT',
      `trust domain "${value}" must be a lowercase DNS name such as "dmr.example.ee"`,
    );
  }
}

/** The URI SAN that states a principal's kind: `spiffe://<trust-domain>/<kind>/<id>`. */
export function spiffeId(trustDomain: string, kind: PrincipalKind, id: string): string {
  return `spiffe://${trustDomain}/${kind}/${id}`;
}

export interface ParsedSpiffeId {
  trustDomain: string;
  kind: PrincipalKind;
  id: string;
}

export function parseSpiffeId(uri: string): ParsedSpiffeId | undefined {
  const match = /^spiffe:\/\/([^/]+)\/([a-z]+)\/([^/]+)$/.exec(uri);
  if (!match) return undefined;
  const [, trustDomain, kind, id] = match as unknown as [string, string, string, string];
  if (!isValidTrustDomain(trustDomain) || !isPrincipalKind(kind) || !isValidId(id)) return undefined;
  return { trustDomain, kind, id };
}
