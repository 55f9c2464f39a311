/**
 * Revocation by identity: revoking or denylisting an id, or deleting a
 * client or node, covers every unexpired certificate of that id, whatever
 * its serial, and sets the id's "not before" (identity_revocations, migration
 * 0005): a certificate of the id issued before it is refused for good, even
 * after a denylist entry is lifted. A renewal's predecessor is revoked as
 * superseded once its overlap has passed (`supersede_at`). Client and node
 * certificates are in the node documents, so each of these bumps the
 * revision once, in the same transaction.
 */
import type { Kysely, Transaction } from 'kysely';
import { DmrError, assertValidId, canonicalDigest } from '@dmr/core';
import { assertRevocationReason, type RevocationReason } from '@dmr/pki';
import { writeAudit } from './audit.js';
import { toRecord } from './certificates.js';
import { denyInTransaction } from './denylist.js';
import type { Database, Db } from './schema.js';
import { bumpRevision, writeTransaction } from './tx.js';
import { IDENTITY_KINDS, type IdentityKind, type IdentityRevocation } from './types.js';

function assertIdentityKind(kind: string): asserts kind is IdentityKind {
  if (!(IDENTITY_KINDS as readonly string[]).includes(kind)) {
    throw new DmrError('INVALID_ARGUMENT', `kind "${kind}" is not one of ${IDENTITY_KINDS.join(', ')}`);
  }
}

/**
 * Inside a write transaction: moves the id's not-before to `at` and revokes
 * its unrevoked, unexpired certificates with `reason`. The caller bumps the
 * revision (for clients and nodes) and passes it for the audit.
 */
export async function revokeIdentityInTransaction(
  trx: Transaction<Database>,
  identity: { kind: IdentityKind; id: string },
  reason: RevocationReason,
  actor: string,
  at: string,
  revision: number | null,
): Promise<string[]> {
  const existing = await trx
    .selectFrom('identity_revocations')
    .select('not_before')
    .where('principal_kind', '=', identity.kind)
    .where('principal_id', '=', identity.id)
    .executeTakeFirst();
  if (existing === undefined) {
    await trx
      .insertInto('identity_revocations')
      .values({ principal_kind: identity.kind, principal_id: identity.id, not_before: at, reason, revoked_by: actor })
      .execute();
  } else {
    await trx
      .updateTable('identity_revocations')
      .set({ not_before: at, reason, revoked_by: actor })
      .where('principal_kind', '=', identity.kind)
      .where('principal_id', '=', identity.id)
      .execute();
  }
  const rows = await trx
    .selectFrom('certificates')
    .selectAll()
    .where('principal_kind', '=', identity.kind)
    .where('principal_id', '=', identity.id)
    .where('revoked_at', 'is', null)
    .where('not_after', '>', at)
    .orderBy('serial')
    .execute();
  const serials = rows.map((row) => row.serial);
  if (serials.length > 0) {
    await trx
      .updateTable('certificates')
      .set({ revoked_at: at, revocation_reason: reason, supersede_at: null })
      .where('serial', 'in', serials)
      .execute();
  }
  // Each certificate's revocation is audited like a single one (digests before and after), then the identity's.
  await writeAudit(trx, [
    ...rows.map((row) => {
      const before = toRecord(row);
      return {
        at,
        actor,
        action: 'certificate.revoke' as const,
        kind: 'Certificate' as const,
        id: identity.id,
        revision,
        beforeDigest: canonicalDigest(before),
        afterDigest: canonicalDigest({ ...before, revokedAt: at, revocationReason: reason }),
        detail: { serial: row.serial, principalKind: identity.kind, reason },
      };
    }),
    {
      at,
      actor,
      action: 'identity.revoke',
      kind: 'Identity',
      id: identity.id,
      revision,
      detail: { principalKind: identity.kind, reason, notBefore: at, serials },
    },
  ]);
  return serials;
}

export async function revokeIdentity(
  db: Kysely<Database>,
  identity: { kind: IdentityKind; id: string },
  reason: RevocationReason,
  actor: string,
  now: Date,
  options: { denylistReason?: string } = {},
): Promise<IdentityRevocation> {
  assertIdentityKind(identity.kind);
  assertValidId(identity.id);
  assertRevocationReason(reason);
  const at = now.toISOString();
  return writeTransaction(db, async (trx) => {
    const mesh = identity.kind !== 'operator';
    const revision = mesh ? await bumpRevision(trx) : null;
    const serials = await revokeIdentityInTransaction(trx, identity, reason, actor, at, revision);
    let denylisted = false;
    if (mesh && revision !== null && options.denylistReason !== undefined) {
      const entry = { id: identity.id, kind: identity.kind as 'client' | 'node', reason: options.denylistReason };
      denylisted = (await denyInTransaction(trx, entry, actor, at, revision)) !== undefined;
    }
    return { kind: identity.kind, id: identity.id, notBefore: at, serials, revision, denylisted };
  });
}

/** The id's not-before, if it was ever revoked. */
export async function identityNotBefore(db: Db, kind: string, id: string): Promise<string | undefined> {
  const row = await db
    .selectFrom('identity_revocations')
    .select('not_before')
    .where('principal_kind', '=', kind)
    .where('principal_id', '=', id)
    .executeTakeFirst();
  return row === undefined ? undefined : new Date(row.not_before).toISOString();
}

/**
 * Revokes, as superseded, every certificate whose overlap after a renewal
 * has passed. One revision for all of them when any is a client's or node's.
 */
export async function revokeSuperseded(
  db: Kysely<Database>,
  actor: string,
  now: Date,
): Promise<{ serials: string[]; revision: number | null }> {
  const at = now.toISOString();
  const due = await db
    .selectFrom('certificates')
    .select(['serial', 'principal_kind', 'principal_id'])
    .where('supersede_at', 'is not', null)
    .where('supersede_at', '<=', at)
    .where('revoked_at', 'is', null)
    .execute();
  if (due.length === 0) return { serials: [], revision: null };
  return writeTransaction(db, async (trx) => {
    const rows = await trx
      .updateTable('certificates')
      .set({ revoked_at: at, revocation_reason: 'superseded', supersede_at: null })
      .where(
        'serial',
        'in',
        due.map((row) => row.serial),
      )
      .where('revoked_at', 'is', null)
      .returning(['serial', 'principal_kind', 'principal_id'])
      .execute();
    const mesh = rows.some((row) => row.principal_kind === 'client' || row.principal_kind === 'node');
    const revision = mesh ? await bumpRevision(trx) : null;
    await writeAudit(
      trx,
      rows.map((row) => ({
        at,
        actor,
        action: 'certificate.revoke' as const,
        kind: 'Certificate' as const,
        id: row.principal_id,
        revision: row.principal_kind === 'client' || row.principal_kind === 'node' ? revision : null,
        detail: { serial: row.serial, principalKind: row.principal_kind, reason: 'superseded' },
      })),
    );
    return { serials: rows.map((row) => row.serial).sort(), revision };
  });
}

/** Unexpired certificates the store has revoked, with their reasons: what the CA's CRL must list. */
export async function revokedUnexpired(
  db: Db,
  now: Date,
): Promise<Array<{ serial: string; reason: RevocationReason }>> {
  const rows = await db
    .selectFrom('certificates')
    .select(['serial', 'revocation_reason'])
    .where('revoked_at', 'is not', null)
    .where('not_after', '>', now.toISOString())
    .execute();
  return rows.map((row) => ({
    serial: row.serial,
    reason: (row.revocation_reason ?? 'unspecified') as RevocationReason,
  }));
}
