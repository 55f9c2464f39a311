/** Mapping between principal kinds (`client`, as in certificates and SPIFFE ids) and registry kinds (`Client`). */
import type { PrincipalKind } from '@dmr/core';

export function resourceKindOf(kind: PrincipalKind): 'Client' | 'Node' {
  return kind === 'client' ? 'Client' : 'Node';
}

export function principalKindOf(kind: string): PrincipalKind {
  return kind === 'Client' || kind === 'client' ? 'client' : 'node';
}
