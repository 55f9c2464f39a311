/**
 * Row shapes of the CentOps database, as Kysely sees them. Both dialects
 * hand back the same JavaScript values: the PostgreSQL pool is configured
 * (see connect.ts) to return timestamps as ISO strings, JSON as text and
 * bigints as numbers, which is what SQLite returns natively. That keeps one
 * code path above this file.
 *
 * Timestamps are ISO 8601 UTC strings with milliseconds (`Date#toISOString`),
 * so they also compare correctly as text in SQLite.
 */
import type { Generated, Kysely, Transaction } from 'kysely';

/** Every registry resource: one row per (kind, id). */
export interface ResourcesTable {
  kind: string;
  id: string;
  /** `principal` for Organisation/Client/Node (one shared id namespace), `link` for Link. */
  namespace: string;
  /** The spec as canonical JSON (jsonb in PostgreSQL). */
  spec: string;
  version: number;
  revision: number;
  created_at: string;
  updated_at: string;
}

/**
 * The references a resource's spec makes to other resources (client →
 * organisation and home node, link → its two nodes). Derived from the spec on
 * every write. It gives list filters an index and the database a foreign key
 * to refuse a dangling reference even if validation had a bug.
 */
export interface ResourceRefsTable {
  kind: string;
  id: string;
  field: string;
  target_kind: string;
  target_id: string;
}

/** A single row (id = 1) holding the registry-wide revision. */
export interface RegistryStateTable {
  id: number;
  revision: number;
}

export interface AuditLogTable {
  seq: Generated<number>;
  at: string;
  actor: string;
  action: string;
  kind: string | null;
  id: string | null;
  before_digest: string | null;
  after_digest: string | null;
  revision: number | null;
  detail: string | null;
}

export interface BootstrapTokensTable {
  /** sha256 of the token; the token itself is never stored. */
  token_hash: string;
  /** `Client` or `Node`: the resource kind, so a foreign key can remove tokens with their resource. */
  resource_kind: string;
  principal_id: string;
  created_at: string;
  created_by: string;
  expires_at: string;
  used_at: string | null;
  used_by: string | null;
}

export interface CertificatesTable {
  serial: string;
  principal_kind: string;
  principal_id: string;
  fingerprint: string;
  not_before: string;
  not_after: string;
  recorded_at: string;
  revoked_at: string | null;
  revocation_reason: string | null;
  /** Operators only (migration 0002): admin, operator or viewer. */
  role: string | null;
  /** The issued chain, PEM (migration 0004): client and node certificates recorded since; null before. */
  chain_pem: string | null;
  /** When a renewal's predecessor is revoked as superseded (migration 0005); null otherwise. */
  supersede_at: string | null;
}

/** Migration 0005: one "not before" per identity; certificates issued before it are refused. */
export interface IdentityRevocationsTable {
  principal_kind: string;
  principal_id: string;
  not_before: string;
  reason: string;
  revoked_by: string;
}

export interface DenylistTable {
  id: string;
  kind: string;
  reason: string;
  since: string;
  added_by: string;
}

export interface NodeStatusTable {
  /** Always `Node`; there so a foreign key can drop the status with its node. */
  node_kind: string;
  node_id: string;
  applied_revision: number | null;
  refused_revision: number | null;
  refused_reason: string | null;
  policy_revision: string | null;
  reported_at: string;
}

/** Migration 0006: the router writers CentOps witnesses. */
export interface AuditWritersTable {
  writer: string;
  node_id: string;
  origin: string;
  registered_at: string;
}

/** Migration 0006: countersigned writer checkpoints and CentOps' own. */
export interface AuditCheckpointsTable {
  origin: string;
  size: number;
  /** base64 root hash */
  root: string;
  /** the signed note as stored (a writer's: with CentOps' cosignature) */
  note: string;
  /** JSON list of base64 edge hashes at `size`; null for CentOps' own log */
  edge: string | null;
  at: string;
}

export interface Database {
  resources: ResourcesTable;
  resource_refs: ResourceRefsTable;
  registry_state: RegistryStateTable;
  audit_log: AuditLogTable;
  bootstrap_tokens: BootstrapTokensTable;
  certificates: CertificatesTable;
  identity_revocations: IdentityRevocationsTable;
  denylist: DenylistTable;
  node_status: NodeStatusTable;
  audit_writers: AuditWritersTable;
  audit_checkpoints: AuditCheckpointsTable;
}

/** A connection or a transaction: read helpers accept either. */
export type Db = Kysely<Database> | Transaction<Database>;
