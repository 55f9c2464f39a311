/**
 * Certificate kinds beyond the mesh's `client` and `node`: the people and
 * services of the control plane. They are kept out of core's
 * PRINCIPAL_KINDS on purpose: those are mesh identities (broker users,
 * message senders, denylist entries); an operator or CentOps' own server
 * never appears on the message path.
 *
 * | kind       | URI SANs                                                        | EKU          |
 * | ---------- | --------------------------------------------------------------- | ------------ |
 * | `operator` | `spiffe://<td>/operator/<id>` and `urn:dmr:role:<role>`         | clientAuth   |
 * | `centops`  | `spiffe://<td>/centops/api` (+ DNS/IP names of the server)      | serverAuth   |
 * | `centops`  | `spiffe://<td>/centops/config-signer` (keyUsage digitalSignature, no EKU) | – |
 *
 * The operator's role travels in the certificate as a second URI SAN rather
 * than in the SPIFFE path, so the SPIFFE id stays the person's identity
 * (audit "who") whatever role they hold, and a URN cannot be mistaken for a
 * SPIFFE id by any SPIFFE-aware peer. Changing someone's role means a new
 * certificate (and revoking the old one).
 */
import {
  DmrError,
  assertValidId,
  isPrincipalKind,
  isValidId,
  parseSpiffeId,
  spiffeId,
  type PrincipalKind,
} from '@dmr/core';

export const OPERATOR_ROLES = ['admin', 'operator', 'viewer'] as const;
export type OperatorRole = (typeof OPERATOR_ROLES)[number];

export const CENTOPS_SERVICES = ['api', 'config-signer', 'policy-signer'] as const;
export type CentOpsService = (typeof CENTOPS_SERVICES)[number];

export const SERVICE_KINDS = ['operator', 'centops'] as const;
export type ServiceKind = (typeof SERVICE_KINDS)[number];

/** Every kind of leaf certificate the DMR CA issues. */
export type CertificateKind = PrincipalKind | ServiceKind;

export const ROLE_URN_PREFIX = 'urn:dmr:role:';

/** Who a certificate is for, with what its kind needs (an operator's role). */
export type CertificateSubject =
  | { kind: PrincipalKind; id: string }
  | { kind: 'operator'; id: string; role: OperatorRole }
  | { kind: 'centops'; id: CentOpsService };

export function isOperatorRole(value: string): value is OperatorRole {
  return (OPERATOR_ROLES as readonly string[]).includes(value);
}

export function isCertificateKind(value: string): value is CertificateKind {
  return isPrincipalKind(value) || (SERVICE_KINDS as readonly string[]).includes(value);
}

export function assertCertificateKind(value: string): asserts value is CertificateKind {
  if (!isCertificateKind(value)) {
    throw new DmrError('INVALID_ARGUMENT', `kind "${value}" is not one of client, node, ${SERVICE_KINDS.join(', ')}`);
  }
}

/**
 * Builds and checks a subject from loose parts (options, CLI flags). An
 * operator needs a role; a `centops` id is one of CENTOPS_SERVICES; nobody
 * else may carry a role.
 */
export function certificateSubject(kind: string, id: string, role?: string): CertificateSubject {
  assertCertificateKind(kind);
  assertValidId(id);
  if (kind === 'operator') {
    if (role === undefined || !isOperatorRole(role)) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `an operator certificate needs a role: one of ${OPERATOR_ROLES.join(', ')}`,
        {
          details: { role: role ?? null },
        },
      );
    }
    return { kind, id, role };
  }
  if (role !== undefined) {
    throw new DmrError('INVALID_ARGUMENT', `only operator certificates carry a role, not ${kind}`);
  }
  if (kind === 'centops') {
    if (!(CENTOPS_SERVICES as readonly string[]).includes(id)) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `a centops certificate is one of ${CENTOPS_SERVICES.join(', ')}, not "${id}"`,
      );
    }
    return { kind, id: id as CentOpsService };
  }
  return { kind, id };
}

/** The URI SANs of a subject, SPIFFE id first. */
export function subjectUris(trustDomain: string, subject: CertificateSubject): string[] {
  if (isPrincipalKind(subject.kind)) return [spiffeId(trustDomain, subject.kind, subject.id)];
  const spiffe = `spiffe://${trustDomain}/${subject.kind}/${subject.id}`;
  return subject.kind === 'operator' && 'role' in subject ? [spiffe, `${ROLE_URN_PREFIX}${subject.role}`] : [spiffe];
}

/** What a leaf of this subject may do. */
export interface LeafUsage {
  /** TLS server and/or client; empty for a signing-only key (no EKU extension at all). */
  eku: Array<'serverAuth' | 'clientAuth'>;
  /** Whether DNS/IP SANs are allowed. */
  hosts: boolean;
}

export function leafUsage(subject: CertificateSubject): LeafUsage {
  switch (subject.kind) {
    case 'client':
      return { eku: ['clientAuth'], hosts: false };
    case 'node':
      return { eku: ['serverAuth', 'clientAuth'], hosts: true };
    case 'operator':
      return { eku: ['clientAuth'], hosts: false };
    case 'centops':
      return subject.id === 'api' ? { eku: ['serverAuth'], hosts: true } : { eku: [], hosts: false };
  }
}

/**
 * Reads the subject back from a certificate's URI SANs (as TLS presents
 * them), for this trust domain only. Exactly one SPIFFE id; an operator
 * must carry exactly one role URN and nobody else any. Anything else is
 * `undefined`: not a DMR identity.
 */
export function subjectFromUris(uris: readonly string[], trustDomain: string): CertificateSubject | undefined {
  const spiffe = uris.filter((uri) => uri.startsWith('spiffe://'));
  const roles = uris.filter((uri) => uri.startsWith(ROLE_URN_PREFIX)).map((uri) => uri.slice(ROLE_URN_PREFIX.length));
  if (spiffe.length !== 1 || spiffe.length + roles.length !== uris.length) return undefined;
  const uri = spiffe[0] ?? '';
  const mesh = parseSpiffeId(uri);
  if (mesh)
    return mesh.trustDomain === trustDomain && roles.length === 0 ? { kind: mesh.kind, id: mesh.id } : undefined;
  const match = /^spiffe:\/\/([^/]+)\/(operator|centops)\/([^/]+)$/.exec(uri);
  if (!match || match[1] !== trustDomain || !isValidId(match[3] ?? '')) return undefined;
  const kind = match[2] as ServiceKind;
  const id = match[3] as string;
  if (kind === 'operator') {
    const role = roles[0];
    return roles.length === 1 && role !== undefined && isOperatorRole(role) ? { kind, id, role } : undefined;
  }
  if (roles.length > 0 || !(CENTOPS_SERVICES as readonly string[]).includes(id)) return undefined;
  return { kind, id: id as CentOpsService };
}
