/**
 * The control-plane audit log: who changed what, when, at which revision.
 * Entries carry digests of the content before and after, never the content
 * itself, so the log can be shared without leaking specs (or secrets, which
 * must never reach `detail`).
 */
import type { Selectable } from 'kysely';
import { DmrError } from '@dmr/core';
import { decodeCursor, pageLimit, toPage } from './cursor.js';
import type { AuditLogTable, Db } from './schema.js';
import {
  AUDIT_ACTIONS,
  type AuditAction,
  type AuditEntry,
  type AuditKind,
  type AuditQuery,
  type Page,
} from './types.js';

export interface NewAuditEntry {
  at: string;
  actor: string;
  action: AuditAction;
  kind: AuditKind | null;
  id: string | null;
  beforeDigest?: string | null;
  afterDigest?: string | null;
  revision?: number | null;
  detail?: Record<string, unknown> | null;
}

export async function writeAudit(db: Db, entries: readonly NewAuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db
    .insertInto('audit_log')
    .values(
      entries.map((entry) => ({
        at: entry.at,
        actor: entry.actor,
        action: entry.action,
        kind: entry.kind,
        id: entry.id,
        before_digest: entry.beforeDigest ?? null,
        after_digest: entry.afterDigest ?? null,
        revision: entry.revision ?? null,
        detail: entry.detail == null ? null : JSON.stringify(entry.detail),
      })),
    )
    .execute();
}

function toEntry(row: Selectable<AuditLogTable>): AuditEntry {
  return {
    seq: row.seq,
    at: row.at,
    actor: row.actor,
    action: row.action as AuditAction,
    kind: row.kind as AuditKind | null,
    id: row.id,
    beforeDigest: row.before_digest,
    afterDigest: row.after_digest,
    revision: row.revision,
    detail: row.detail === null ? null : (JSON.parse(row.detail) as Record<string, unknown>),
  };
}

/** Entries after `seq`, oldest first: what CentOps' own Merkle log appends (server/witness.ts). */
export async function auditEntriesAfter(db: Db, seq: number, limit: number): Promise<AuditEntry[]> {
  const rows = await db
    .selectFrom('audit_log')
    .selectAll()
    .where('seq', '>', seq)
    .orderBy('seq')
    .limit(limit)
    .execute();
  return rows.map(toEntry);
}

/** Oldest first, so `since` plus paging reads the log forward. */
export async function listAudit(db: Db, query: AuditQuery): Promise<Page<AuditEntry>> {
  const limit = pageLimit(query);
  const scope = 'audit';
  let select = db.selectFrom('audit_log').selectAll();
  if (query.cursor !== undefined) select = select.where('seq', '>', decodeCursor(scope, query.cursor, 'number'));
  if (query.since !== undefined) {
    const since = new Date(query.since);
    if (Number.isNaN(since.getTime())) {
      throw new DmrError('INVALID_ARGUMENT', `since "${query.since}" is not an ISO 8601 time`, {
        hint: 'e.g. 2025-01-31T12:00:00Z',
      });
    }
    select = select.where('at', '>=', since.toISOString());
  }
  if (query.kind !== undefined) select = select.where('kind', '=', query.kind);
  if (query.id !== undefined) select = select.where('id', '=', query.id);
  if (query.action !== undefined) {
    if (!(AUDIT_ACTIONS as readonly string[]).includes(query.action)) {
      throw new DmrError(
        'INVALID_ARGUMENT',
        `audit action "${String(query.action)}" is not one of ${AUDIT_ACTIONS.join(', ')}`,
      );
    }
    select = select.where('action', '=', query.action);
  }
  const rows = await select
    .orderBy('seq')
    .limit(limit + 1)
    .execute();
  return toPage(rows, limit, scope, toEntry, (row) => row.seq);
}
