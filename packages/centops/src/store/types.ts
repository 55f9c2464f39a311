/**
 * The CentOps store's public contract: what the REST API, the config feed
 * and the CLI program against. Implemented once over Kysely (store.ts) for
 * SQLite and PostgreSQL alike.
 */
import type { PrincipalKind } from '@dmr/core';
import type { CertificateKind, OperatorRole, RevocationReason } from '@dmr/pki';
import type { ResourceKind, ResourceSpecs, Stored } from '../model.js';
import type { Dialect } from './location.js';
import type { AuditWriter, CheckpointProposal, StoredCheckpoint } from './audit-checkpoints.js';

export type IdentityKind = 'client' | 'node' | 'operator';
export const IDENTITY_KINDS: readonly IdentityKind[] = ['client', 'node', 'operator'];

export interface IdentityRevocation {
  kind: IdentityKind;
  id: string;
  /** Every certificate of the id issued before this time is refused. */
  notBefore: string;
  /** The serials this revocation revoked (those still valid and not yet revoked). */
  serials: string[];
  /** The revision it made (clients and nodes); null for operators. */
  revision: number | null;
  /** Whether it put the id on the denylist. */
  denylisted: boolean;
}

/** Who made a change: the identity from the caller's client certificate (e.g. its SPIFFE id). */
export type Actor = string;

export interface PageOptions {
  /** 1–1000, default 100. */
  limit?: number;
  /** `nextCursor` of the previous page; opaque. */
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  /** Present when there may be more: pass it as `cursor` for the next page. */
  nextCursor?: string;
}

export interface ListFilters {
  Organisation: Record<never, never>;
  Client: { organisation?: string; homeNode?: string };
  Node: Record<never, never>;
  Link: { node?: string };
}

export interface ListOptions<K extends ResourceKind> extends PageOptions {
  filter?: ListFilters[K];
}

export interface WriteOptions {
  /** The version the caller last read (the ETag); a different current version fails with PRECONDITION_FAILED. */
  expectedVersion?: number;
}

/**
 * One change of a batch. `upsert` creates or updates; `create` fails if the id
 * exists; `update` and `delete` fail if it does not.
 */
export type Change =
  | {
      [K in ResourceKind]: {
        op: 'create' | 'update' | 'upsert';
        kind: K;
        spec: ResourceSpecs[K];
        expectedVersion?: number;
      };
    }[ResourceKind]
  | { op: 'delete'; kind: ResourceKind; id: string; expectedVersion?: number };

export interface ApplyOptions {
  /** Validate and compute the diff, change nothing. */
  dryRun?: boolean;
}

export type DiffAction = 'created' | 'updated' | 'unchanged' | 'deleted';

export type DiffEntry = {
  [K in ResourceKind]: {
    kind: K;
    id: string;
    action: DiffAction;
    /** The stored resource before the change (absent when created). */
    before?: Stored<K>;
    /** The resource after the change (absent when deleted); predicted on a dry run. */
    after?: Stored<K>;
  };
}[ResourceKind];

export interface ApplyResult {
  dryRun: boolean;
  /** The revision before the batch. */
  previousRevision: number;
  /** The revision after it: previousRevision + 1 if anything changed (would change, on a dry run), else the same. */
  revision: number;
  /** One entry per change, in the order given. */
  diff: DiffEntry[];
}

export const AUDIT_ACTIONS = [
  'create',
  'update',
  'delete',
  'apply',
  'token.create',
  'token.consume',
  'token.refuse',
  'certificate.record',
  'certificate.revoke',
  'identity.revoke',
  'denylist.add',
  'denylist.remove',
  'policy.update',
  /** An event a node reported (POST /v1/nodes/:id/events; docs/events.md): detail holds the event. */
  'node.event',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** What an audit entry is about: a registry kind, or one of the store's other records. */
export type AuditKind = ResourceKind | 'BootstrapToken' | 'Certificate' | 'Identity' | 'Denylist' | 'PolicySet';

export interface AuditEntry {
  /** Increases with every entry, in commit order. */
  seq: number;
  at: string;
  actor: Actor;
  action: AuditAction;
  /** null only for `apply`, which summarises a batch. */
  kind: AuditKind | null;
  /** The resource id, or for tokens, certificates and the denylist the principal's id. */
  id: string | null;
  /** sha256 (hex) of the canonical JSON of the spec before / after; null when there was none. */
  beforeDigest: string | null;
  afterDigest: string | null;
  /** The registry revision the change produced; null for records that do not change the config feed. */
  revision: number | null;
  /** Extra facts (counts, serials, reasons); never secrets. */
  detail: Record<string, unknown> | null;
}

export interface AuditQuery extends PageOptions {
  /** ISO 8601 time; entries at or after it. */
  since?: string;
  kind?: AuditKind;
  id?: string;
  action?: AuditAction;
}

export interface BootstrapTokenRequest {
  /** The client or node the token lets enrol; it must exist in the registry. */
  id: string;
  kind: PrincipalKind;
  /** Lifetime as a duration (`15m`, `24h`); at most 7d. */
  ttl: string;
}

export interface IssuedBootstrapToken {
  /** The secret, shown this once; only its sha256 is stored. */
  token: string;
  /** A short, non-secret handle for lists and logs (the start of the hash). */
  ref: string;
  id: string;
  kind: PrincipalKind;
  expiresAt: string;
}

export interface BootstrapTokenInfo {
  ref: string;
  id: string;
  kind: PrincipalKind;
  createdAt: string;
  createdBy: Actor;
  expiresAt: string;
  usedAt: string | null;
  usedBy: Actor | null;
}

export interface NewCertificate {
  serial: string;
  /** A mesh identity (client, node), an operator, or CentOps itself (api, config-signer). */
  kind: CertificateKind;
  id: string;
  /** Operators only, and required for them. */
  role?: OperatorRole | null;
  /** sha256 of the DER certificate, hex. */
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  /**
   * The issued chain, PEM, leaf first (public data; never a key). Kept for
   * client and node certificates so the directory can serve them; its leaf
   * must be the certificate `fingerprint` names. Not part of CertificateRecord
   * (lists stay small): read it with `certificatesOf`.
   */
  chainPem?: string | null;
  /**
   * When the CA signed it. A certificate signed before its identity's
   * not-before (a renewal racing a revocation) is recorded as revoked.
   */
  issuedAt?: string;
}

// `role` stays optional here (NewCertificate's) so records built by hand in tests still type-check;
// the store always sets it: the operator's role, null for every other kind.
export interface CertificateRecord extends Omit<NewCertificate, 'chainPem' | 'issuedAt'> {
  recordedAt: string;
  revokedAt: string | null;
  revocationReason: RevocationReason | null;
}

export interface RecordCertificateOptions {
  /**
   * A renewal (or a new enrolment) of a client, node or operator: the id's
   * other valid certificates are revoked as superseded this long after now.
   */
  supersedePreviousAfterMs?: number;
}

export interface RevokeCertificateOptions {
  /**
   * Client and node certificates: also put the identity on the denylist with
   * this reason, in the same transaction and revision (nothing happens if it
   * is there already).
   */
  denylistReason?: string;
}

export interface RevokedCertificate extends CertificateRecord {
  /** The revision the revocation made (client and node certificates); null for operators' and CentOps' own. */
  revision: number | null;
  /** Whether this revocation put the identity on the denylist. */
  denylisted: boolean;
}

export interface CertificateQuery extends PageOptions {
  id?: string;
  kind?: CertificateKind;
  /** true: only revoked; false: only not revoked; absent: all. */
  revoked?: boolean;
}

/** A certificate record with its chain (null when recorded before migration 0004, or without one). */
export interface CertificateWithChain extends CertificateRecord {
  chainPem: string | null;
}

export interface DenylistEntry {
  id: string;
  kind: PrincipalKind;
  reason: string;
  since: string;
  addedBy: Actor;
}

/** What a node reports; each report replaces the previous one. */
export interface NodeStatusReport {
  /** The revision it runs, null before it has applied any. */
  appliedRevision: number | null;
  /** The last revision it refused and why, if it refused one since. */
  refused: { revision: number; reason: string } | null;
  /** The policy bundle revision it evaluates with. */
  policyRevision: string | null;
}

export interface NodeStatus extends NodeStatusReport {
  nodeId: string;
  reportedAt: string;
}

/** The whole registry at one revision, read in one transaction. */
export interface RegistrySnapshot {
  revision: number;
  resources: { [K in ResourceKind]: Stored<K>[] };
  denylist: DenylistEntry[];
  /** The active policy set (migration 0003): its version (= bundle revision) and the bundle's sha256 (hex). */
  policy?: { version: number; bundleDigest: string };
}

export interface Store {
  readonly dialect: Dialect;
  /** The migration the database is at (the schema version). */
  readonly schemaVersion: string;

  /** The current registry revision. */
  revision(): Promise<number>;
  /** The resource, or NOT_FOUND. */
  get<K extends ResourceKind>(kind: K, id: string): Promise<Stored<K>>;
  /** The resource, or undefined. */
  find<K extends ResourceKind>(kind: K, id: string): Promise<Stored<K> | undefined>;
  /** Resources of a kind ordered by id. */
  list<K extends ResourceKind>(kind: K, options?: ListOptions<K>): Promise<Page<Stored<K>>>;
  create<K extends ResourceKind>(kind: K, spec: ResourceSpecs[K], actor: Actor): Promise<Stored<K>>;
  /** Replaces the spec of an existing resource (the id is `spec.id`). An identical spec changes nothing. */
  update<K extends ResourceKind>(
    kind: K,
    spec: ResourceSpecs[K],
    actor: Actor,
    options?: WriteOptions,
  ): Promise<Stored<K>>;
  delete(kind: ResourceKind, id: string, actor: Actor, options?: WriteOptions): Promise<void>;
  /** Validates the batch against the resulting registry and applies it all or nothing, as one revision. */
  applyChanges(changes: readonly Change[], actor: Actor, options?: ApplyOptions): Promise<ApplyResult>;
  snapshot(): Promise<RegistrySnapshot>;

  listAudit(query?: AuditQuery): Promise<Page<AuditEntry>>;
  /** Audit entries after `seq`, oldest first: what CentOps' own Merkle log folds in. */
  auditEntriesAfter(seq: number, limit?: number): Promise<AuditEntry[]>;
  /** The checkpoint of `origin` with the largest size, if any. */
  latestAuditCheckpoint(origin: string): Promise<StoredCheckpoint | undefined>;
  /** The checkpoints of `origin` larger than `afterSize`, smallest first. */
  listAuditCheckpoints(origin: string, afterSize?: number, limit?: number): Promise<StoredCheckpoint[]>;
  /** The router writers CentOps knows (registered by their first checkpoint). */
  listAuditWriters(): Promise<AuditWriter[]>;
  /** Stores the checkpoint `decide` returns, judged against the latest held for its log, under the write lock. */
  witnessAuditCheckpoint(
    proposal: CheckpointProposal,
    decide: (latest: StoredCheckpoint | undefined) => string,
  ): Promise<StoredCheckpoint>;

  createBootstrapToken(request: BootstrapTokenRequest, actor: Actor): Promise<IssuedBootstrapToken>;
  /** Whom an unused, unexpired token is for, without using it up; TOKEN_INVALID otherwise (a known token's refusal is audited). */
  checkBootstrapToken(token: string, actor: Actor): Promise<{ id: string; kind: PrincipalKind }>;
  /** Marks the token used and says whom it was for; TOKEN_INVALID if unknown, used or expired. Atomic. */
  consumeBootstrapToken(token: string, actor: Actor): Promise<{ id: string; kind: PrincipalKind }>;
  listBootstrapTokens(id?: string): Promise<BootstrapTokenInfo[]>;

  /**
   * Records an issued certificate. A client's or node's is in the node
   * documents' directory, so it bumps the revision (same transaction);
   * operators' and CentOps' own do not.
   */
  recordCertificate(
    certificate: NewCertificate,
    actor: Actor,
    options?: RecordCertificateOptions,
  ): Promise<CertificateRecord>;
  /**
   * Revokes an identity: every unexpired certificate of the id, and its
   * not-before moves to now (certificates issued earlier stay refused, also
   * after a denylist entry is lifted). Clients and nodes: one revision, with
   * a denylist entry when `denylistReason` is given.
   */
  revokeIdentity(
    identity: { kind: IdentityKind; id: string },
    reason: RevocationReason,
    actor: Actor,
    options?: { denylistReason?: string },
  ): Promise<IdentityRevocation>;
  /** The id's not-before (ISO), if it was ever revoked. */
  identityNotBefore(kind: string, id: string): Promise<string | undefined>;
  /** Revokes (superseded) the certificates whose overlap after a renewal has passed. */
  revokeSuperseded(actor: Actor): Promise<{ serials: string[]; revision: number | null }>;
  /** Unexpired certificates the store has revoked: what the CRL must list. */
  revokedUnexpired(): Promise<Array<{ serial: string; reason: RevocationReason }>>;
  getCertificate(serial: string): Promise<CertificateRecord>;
  /**
   * The unexpired certificates (by the store's clock) of one client or node,
   * revoked ones included, with their chains, newest `notBefore` first; at
   * most 100 (an id renews a few times a day at most). What the certificate
   * directory picks the current certificate from.
   */
  certificatesOf(kind: 'client' | 'node', id: string): Promise<CertificateWithChain[]>;
  /** How many certificates were recorded for one identity at or after `since`: the renewal rate limit counts these. */
  countCertificatesSince(kind: CertificateKind, id: string, since: Date): Promise<number>;
  listCertificates(query?: CertificateQuery): Promise<Page<CertificateRecord>>;
  /** Marks a certificate revoked; a client's or node's bumps the revision (with the denylist entry, if asked). */
  revokeCertificate(
    serial: string,
    reason: RevocationReason,
    actor: Actor,
    options?: RevokeCertificateOptions,
  ): Promise<RevokedCertificate>;

  addToDenylist(entry: { id: string; kind: PrincipalKind; reason: string }, actor: Actor): Promise<DenylistEntry>;
  /** Resolves with the kind the entry named and the revision lifting it made. */
  removeFromDenylist(id: string, actor: Actor): Promise<{ kind: PrincipalKind; revision: number }>;
  /** One audit entry outside a registry change: an event a node reported (`node.event`). */
  appendAudit(entry: {
    actor: Actor;
    action: AuditAction;
    kind: AuditKind | null;
    id: string | null;
    detail?: Record<string, unknown> | null;
  }): Promise<void>;
  listDenylist(): Promise<DenylistEntry[]>;

  reportNodeStatus(nodeId: string, report: NodeStatusReport): Promise<NodeStatus>;
  getNodeStatus(nodeId: string): Promise<NodeStatus | undefined>;
  listNodeStatus(): Promise<NodeStatus[]>;

  close(): Promise<void>;
}
