/**
 * Who is calling, as the CentOps server's authentication hook (src/server/)
 * leaves it on `request.principal`. The feed does not augment FastifyRequest
 * itself, so the two declarations can never clash; it reads the property and
 * checks its shape at run time instead (a boundary: a missing or malformed
 * principal is refused, never trusted).
 */
import type { FastifyRequest } from 'fastify';
import { DmrError } from '@dmr/core';
import { OPERATOR_ROLES, type OperatorRole } from '@dmr/pki';

/** The same shape as the server's `Principal` (src/server/auth.ts); kept here so the feed builds on its own. */
export type FeedPrincipal =
  { kind: 'operator'; id: string; role: OperatorRole } | { kind: 'node'; id: string } | { kind: 'client'; id: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

export function asPrincipal(value: unknown): FeedPrincipal | undefined {
  if (!isRecord(value) || typeof value.id !== 'string' || value.id === '') return undefined;
  const { kind, id, role } = value;
  if (kind === 'node' || kind === 'client') return { kind, id };
  if (kind === 'operator' && (OPERATOR_ROLES as readonly unknown[]).includes(role)) {
    return { kind, id, role: role as OperatorRole };
  }
  return undefined;
}

export function principalOf(request: FastifyRequest): FeedPrincipal {
  const principal = asPrincipal((request as unknown as { principal?: unknown }).principal);
  if (principal === undefined) throw new DmrError('UNAUTHENTICATED', 'no authenticated principal on this request');
  return principal;
}

/**
 * The feed's rule: any operator may read any node's configuration and status;
 * a node only its own; a client nothing.
 */
export function assertMayAccessNode(principal: FeedPrincipal, nodeId: string, what: string): void {
  if (principal.kind === 'operator') return;
  if (principal.kind === 'node' && principal.id === nodeId) return;
  throw new DmrError('FORBIDDEN', `${principal.kind} ${principal.id} may not ${what} of node ${nodeId}`, {
    details: { principal: { kind: principal.kind, id: principal.id }, node: nodeId },
  });
}

export function assertOperator(principal: FeedPrincipal, what: string): void {
  if (principal.kind !== 'operator') {
    throw new DmrError('FORBIDDEN', `only operators may ${what}`, {
      details: { principal: { kind: principal.kind, id: principal.id } },
    });
  }
}
