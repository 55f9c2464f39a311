/**
 * One-time bootstrap tokens: an operator hands one to a new client or node,
 * which trades it (once) for its first certificate. Only a sha256 of the
 * token is stored: the tokens are 256 random bits, so a fast hash is enough
 * and a database leak does not hand out enrolments.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { DmrError, assertPrincipalKind, assertValidId, parseDuration, type PrincipalKind } from '@dmr/core';
import { writeAudit } from './audit.js';
import type { Database } from './schema.js';
import { principalKindOf, resourceKindOf } from './principals.js';
import { writeTransaction } from './tx.js';
import type { BootstrapTokenInfo, BootstrapTokenRequest, IssuedBootstrapToken } from './types.js';

/** A recognisable prefix lets secret scanners and humans tell a DMR token from other strings. */
export const TOKEN_PREFIX = 'dmrbt_';
export const MAX_TOKEN_TTL_MS = 7 * 86_400_000;
const REF_LENGTH = 16;

function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export async function createBootstrapToken(
  db: Kysely<Database>,
  request: BootstrapTokenRequest,
  actor: string,
  now: Date,
): Promise<IssuedBootstrapToken> {
  assertPrincipalKind(request.kind);
  assertValidId(request.id);
  const ttl = parseDuration(request.ttl);
  if (ttl > MAX_TOKEN_TTL_MS) {
    throw new DmrError('INVALID_ARGUMENT', `a bootstrap token may live at most 7d, not ${request.ttl}`, {
      hint: 'enrol promptly; make a new token if this one runs out',
    });
  }
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const hash = hashToken(token);
  const ref = hash.slice(0, REF_LENGTH);
  const at = now.toISOString();
  const expiresAt = new Date(now.getTime() + ttl).toISOString();
  const resourceKind = resourceKindOf(request.kind);
  await writeTransaction(db, async (trx) => {
    const exists = await trx
      .selectFrom('resources')
      .select('id')
      .where('kind', '=', resourceKind)
      .where('id', '=', request.id)
      .executeTakeFirst();
    if (exists === undefined) {
      throw new DmrError('NOT_FOUND', `${resourceKind} ${request.id} does not exist`, {
        hint: `register the ${request.kind} before making a bootstrap token for it`,
      });
    }
    await trx
      .insertInto('bootstrap_tokens')
      .values({
        token_hash: hash,
        resource_kind: resourceKind,
        principal_id: request.id,
        created_at: at,
        created_by: actor,
        expires_at: expiresAt,
        used_at: null,
        used_by: null,
      })
      .execute();
    await writeAudit(trx, [
      { at, actor, action: 'token.create', kind: 'BootstrapToken', id: request.id, detail: { ref, expiresAt } },
    ]);
  });
  return { token, ref, id: request.id, kind: request.kind, expiresAt };
}

type ConsumeOutcome =
  { ok: true; id: string; kind: PrincipalKind } | { ok: false; reason: 'unknown' | 'used' | 'expired' };

function tokenRefused(reason: 'unknown' | 'used' | 'expired'): DmrError {
  const what = reason === 'unknown' ? 'not known' : reason;
  return new DmrError('TOKEN_INVALID', `the bootstrap token is ${what}`, {
    details: { reason },
    hint: 'ask an operator for a new bootstrap token',
  });
}

/**
 * Whom an unused, unexpired token is for, without spending it: enrolment
 * looks at the token before anything else and spends it only once every
 * other check has passed. A known token that cannot be used is audited
 * like a refused consumption.
 */
export async function checkBootstrapToken(
  db: Kysely<Database>,
  token: string,
  actor: string,
  now: Date,
): Promise<{ id: string; kind: PrincipalKind }> {
  if (typeof token !== 'string' || !token.startsWith(TOKEN_PREFIX)) throw tokenRefused('unknown');
  const hash = hashToken(token);
  const at = now.toISOString();
  const row = await db
    .selectFrom('bootstrap_tokens')
    .select(['principal_id', 'resource_kind', 'used_at', 'expires_at'])
    .where('token_hash', '=', hash)
    .executeTakeFirst();
  if (row === undefined) throw tokenRefused('unknown');
  if (row.used_at === null && row.expires_at > at) {
    return { id: row.principal_id, kind: principalKindOf(row.resource_kind) };
  }
  const reason = row.used_at !== null ? 'used' : 'expired';
  await writeTransaction(db, (trx) =>
    writeAudit(trx, [
      {
        at,
        actor,
        action: 'token.refuse',
        kind: 'BootstrapToken',
        id: row.principal_id,
        detail: { ref: hash.slice(0, REF_LENGTH), reason },
      },
    ]),
  );
  throw tokenRefused(reason);
}

/**
 * The used-mark is a single conditional UPDATE (unused and unexpired → used),
 * so of two concurrent presentations exactly one gets the row back, on
 * either dialect, regardless of the registry lock.
 */
export async function consumeBootstrapToken(
  db: Kysely<Database>,
  token: string,
  actor: string,
  now: Date,
): Promise<{ id: string; kind: PrincipalKind }> {
  const wellFormed = typeof token === 'string' && token.startsWith(TOKEN_PREFIX);
  const outcome: ConsumeOutcome = wellFormed
    ? await writeTransaction(db, (trx) => consume(trx, hashToken(token), actor, now.toISOString()))
    : { ok: false, reason: 'unknown' };
  if (!outcome.ok) throw tokenRefused(outcome.reason);
  return { id: outcome.id, kind: outcome.kind };
}

async function consume(trx: Transaction<Database>, hash: string, actor: string, at: string): Promise<ConsumeOutcome> {
  const ref = hash.slice(0, REF_LENGTH);
  const used = await trx
    .updateTable('bootstrap_tokens')
    .set({ used_at: at, used_by: actor })
    .where('token_hash', '=', hash)
    .where('used_at', 'is', null)
    .where('expires_at', '>', at)
    .returning(['principal_id', 'resource_kind'])
    .executeTakeFirst();
  if (used !== undefined) {
    const kind = principalKindOf(used.resource_kind);
    const id = used.principal_id;
    await writeAudit(trx, [{ at, actor, action: 'token.consume', kind: 'BootstrapToken', id, detail: { ref, kind } }]);
    return { ok: true, id, kind };
  }
  const row = await trx
    .selectFrom('bootstrap_tokens')
    .select(['principal_id', 'used_at'])
    .where('token_hash', '=', hash)
    .executeTakeFirst();
  // An unknown token has no subject to file a record under; the API logs those attempts.
  if (row === undefined) return { ok: false, reason: 'unknown' };
  const reason = row.used_at !== null ? 'used' : 'expired';
  const id = row.principal_id;
  await writeAudit(trx, [{ at, actor, action: 'token.refuse', kind: 'BootstrapToken', id, detail: { ref, reason } }]);
  return { ok: false, reason };
}

export async function listBootstrapTokens(db: Kysely<Database>, id?: string): Promise<BootstrapTokenInfo[]> {
  let query = db.selectFrom('bootstrap_tokens').selectAll();
  if (id !== undefined) query = query.where('principal_id', '=', id);
  const rows = await query.orderBy('created_at').orderBy('token_hash').execute();
  return rows.map((row) => ({
    ref: row.token_hash.slice(0, REF_LENGTH),
    id: row.principal_id,
    kind: principalKindOf(row.resource_kind),
    createdAt: row.created_at,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    usedAt: row.used_at,
    usedBy: row.used_by,
  }));
}
