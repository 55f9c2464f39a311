/**
 * `openStore`: connects, migrates, and hands back the Store. The class only
 * checks arguments common to every write (the actor) and delegates to one
 * module per concept.
 */
import type { Kysely } from 'kysely';
import { DmrError, type PrincipalKind } from '@dmr/core';
import type { CertificateKind, RevocationReason } from '@dmr/pki';
import { RESOURCE_KINDS, type ResourceKind, type ResourceSpecs, type Stored } from '../model.js';
import { applyChanges } from './apply.js';
import { auditEntriesAfter, listAudit, writeAudit, type NewAuditEntry } from './audit.js';
import {
  latestCheckpoint,
  listAuditWriters,
  listCheckpoints,
  witnessCheckpoint,
  type AuditWriter,
  type CheckpointProposal,
  type StoredCheckpoint,
} from './audit-checkpoints.js';
import {
  certificatesOf,
  countCertificatesSince,
  getCertificate,
  listCertificates,
  recordCertificate,
  revokeCertificate,
} from './certificates.js';
import { connect } from './connect.js';
import { identityNotBefore, revokeIdentity, revokeSuperseded, revokedUnexpired } from './identities.js';
import { addToDenylist, listDenylist, removeFromDenylist } from './denylist.js';
import { activePolicy } from '../policy/versions.js';
import { parseLocation, type Dialect } from './location.js';
import { migrateToLatest } from './migrate.js';
import { getNodeStatus, listNodeStatus, reportNodeStatus } from './node-status.js';
import { findResource, listResources, loadAllResources, narrow } from './resources.js';
import type { Database } from './schema.js';
import { checkBootstrapToken, consumeBootstrapToken, createBootstrapToken, listBootstrapTokens } from './tokens.js';
import { currentRevision, readTransaction, writeTransaction } from './tx.js';
import type {
  Actor,
  ApplyOptions,
  ApplyResult,
  AuditEntry,
  AuditQuery,
  BootstrapTokenInfo,
  BootstrapTokenRequest,
  CertificateQuery,
  CertificateRecord,
  CertificateWithChain,
  Change,
  DenylistEntry,
  IdentityKind,
  IdentityRevocation,
  IssuedBootstrapToken,
  ListOptions,
  NewCertificate,
  NodeStatus,
  RecordCertificateOptions,
  NodeStatusReport,
  Page,
  RegistrySnapshot,
  RevokeCertificateOptions,
  RevokedCertificate,
  Store,
  WriteOptions,
} from './types.js';
import { isResourceKind } from './validate.js';

export interface OpenStoreOptions {
  /** The clock; tests move it to expire tokens. */
  now?: () => Date;
}

/**
 * Opens (and migrates) the store at `location`: a SQLite file path,
 * `sqlite:PATH`, `:memory:`, or a `postgres://` URL.
 */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<Store> {
  const parsed = parseLocation(location);
  const db = await connect(parsed);
  try {
    const schemaVersion = await migrateToLatest(db, parsed);
    return new KyselyStore(db, parsed.dialect, schemaVersion, options.now ?? (() => new Date()));
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

const ACTOR_MAX = 512;

function assertActor(actor: Actor): void {
  // eslint-disable-next-line no-control-regex -- control characters would corrupt log lines
  if (typeof actor !== 'string' || actor.trim() === '' || actor.length > ACTOR_MAX || /[\u0000-\u001f]/.test(actor)) {
    throw new DmrError('INVALID_ARGUMENT', 'the actor (the caller’s certificate identity) is missing or malformed');
  }
}

function assertKind(kind: ResourceKind): void {
  if (!isResourceKind(kind)) {
    throw new DmrError('INVALID_ARGUMENT', `kind "${String(kind)}" is not one of ${RESOURCE_KINDS.join(', ')}`);
  }
}

class KyselyStore implements Store {
  constructor(
    private readonly db: Kysely<Database>,
    readonly dialect: Dialect,
    readonly schemaVersion: string,
    private readonly now: () => Date,
  ) {}

  revision(): Promise<number> {
    return currentRevision(this.db);
  }

  async find<K extends ResourceKind>(kind: K, id: string): Promise<Stored<K> | undefined> {
    assertKind(kind);
    const stored = await findResource(this.db, kind, id);
    return stored === undefined ? undefined : narrow(stored, kind);
  }

  async get<K extends ResourceKind>(kind: K, id: string): Promise<Stored<K>> {
    const stored = await this.find(kind, id);
    if (stored === undefined)
      throw new DmrError('NOT_FOUND', `${kind} ${id} does not exist`, { details: { kind, id } });
    return stored;
  }

  list<K extends ResourceKind>(kind: K, options: ListOptions<K> = {}): Promise<Page<Stored<K>>> {
    assertKind(kind);
    return listResources(this.db, kind, options);
  }

  async create<K extends ResourceKind>(kind: K, spec: ResourceSpecs[K], actor: Actor): Promise<Stored<K>> {
    const [entry] = (await this.single({ op: 'create', kind, spec }, actor)).diff;
    return narrow(entry?.after ?? this.lost(), kind);
  }

  async update<K extends ResourceKind>(
    kind: K,
    spec: ResourceSpecs[K],
    actor: Actor,
    options: WriteOptions = {},
  ): Promise<Stored<K>> {
    const change = { op: 'update', kind, spec, ...this.version(options) };
    const [entry] = (await this.single(change, actor)).diff;
    return narrow(entry?.after ?? this.lost(), kind);
  }

  async delete(kind: ResourceKind, id: string, actor: Actor, options: WriteOptions = {}): Promise<void> {
    await this.single({ op: 'delete', kind, id, ...this.version(options) }, actor);
  }

  applyChanges(changes: readonly Change[], actor: Actor, options: ApplyOptions = {}): Promise<ApplyResult> {
    assertActor(actor);
    return applyChanges(this.db, changes, {
      actor,
      now: this.now().toISOString(),
      dryRun: options.dryRun === true,
      single: false,
    });
  }

  snapshot(): Promise<RegistrySnapshot> {
    return readTransaction(this.db, async (trx) => {
      const revision = await currentRevision(trx);
      const resources: RegistrySnapshot['resources'] = { Organisation: [], Client: [], Node: [], Link: [] };
      for (const stored of await loadAllResources(trx)) (resources[stored.kind] as Stored<ResourceKind>[]).push(stored);
      const policy = await activePolicy(trx);
      return { revision, resources, denylist: await listDenylist(trx), ...(policy === undefined ? {} : { policy }) };
    });
  }

  listAudit(query: AuditQuery = {}): Promise<Page<AuditEntry>> {
    return listAudit(this.db, query);
  }

  /** Audit entries after `seq`, oldest first (CentOps' own Merkle log). */
  auditEntriesAfter(seq: number, limit = 1000): Promise<AuditEntry[]> {
    return auditEntriesAfter(this.db, seq, limit);
  }

  latestAuditCheckpoint(origin: string): Promise<StoredCheckpoint | undefined> {
    return latestCheckpoint(this.db, origin);
  }

  listAuditCheckpoints(origin: string, afterSize?: number, limit?: number): Promise<StoredCheckpoint[]> {
    return listCheckpoints(this.db, origin, afterSize, limit);
  }

  listAuditWriters(): Promise<AuditWriter[]> {
    return listAuditWriters(this.db);
  }

  /** Stores the checkpoint `decide` accepts for a log, judged against the latest held, under the write lock. */
  witnessAuditCheckpoint(
    proposal: CheckpointProposal,
    decide: (latest: StoredCheckpoint | undefined) => string,
  ): Promise<StoredCheckpoint> {
    return witnessCheckpoint(this.db, proposal, this.now(), decide);
  }

  createBootstrapToken(request: BootstrapTokenRequest, actor: Actor): Promise<IssuedBootstrapToken> {
    assertActor(actor);
    return createBootstrapToken(this.db, request, actor, this.now());
  }

  checkBootstrapToken(token: string, actor: Actor): Promise<{ id: string; kind: PrincipalKind }> {
    assertActor(actor);
    return checkBootstrapToken(this.db, token, actor, this.now());
  }

  consumeBootstrapToken(token: string, actor: Actor): Promise<{ id: string; kind: PrincipalKind }> {
    assertActor(actor);
    return consumeBootstrapToken(this.db, token, actor, this.now());
  }

  listBootstrapTokens(id?: string): Promise<BootstrapTokenInfo[]> {
    return listBootstrapTokens(this.db, id);
  }

  recordCertificate(
    certificate: NewCertificate,
    actor: Actor,
    options: RecordCertificateOptions = {},
  ): Promise<CertificateRecord> {
    assertActor(actor);
    return recordCertificate(this.db, certificate, actor, this.now(), options);
  }

  revokeIdentity(
    identity: { kind: IdentityKind; id: string },
    reason: RevocationReason,
    actor: Actor,
    options: { denylistReason?: string } = {},
  ): Promise<IdentityRevocation> {
    assertActor(actor);
    return revokeIdentity(this.db, identity, reason, actor, this.now(), options);
  }

  identityNotBefore(kind: string, id: string): Promise<string | undefined> {
    return identityNotBefore(this.db, kind, id);
  }

  revokeSuperseded(actor: Actor): Promise<{ serials: string[]; revision: number | null }> {
    assertActor(actor);
    return revokeSuperseded(this.db, actor, this.now());
  }

  revokedUnexpired(): Promise<Array<{ serial: string; reason: RevocationReason }>> {
    return revokedUnexpired(this.db, this.now());
  }

  getCertificate(serial: string): Promise<CertificateRecord> {
    return getCertificate(this.db, serial);
  }

  certificatesOf(kind: 'client' | 'node', id: string): Promise<CertificateWithChain[]> {
    return certificatesOf(this.db, kind, id, this.now());
  }

  countCertificatesSince(kind: CertificateKind, id: string, since: Date): Promise<number> {
    return countCertificatesSince(this.db, kind, id, since);
  }

  listCertificates(query: CertificateQuery = {}): Promise<Page<CertificateRecord>> {
    return listCertificates(this.db, query);
  }

  revokeCertificate(
    serial: string,
    reason: RevocationReason,
    actor: Actor,
    options: RevokeCertificateOptions = {},
  ): Promise<RevokedCertificate> {
    assertActor(actor);
    return revokeCertificate(this.db, serial, reason, actor, this.now(), options);
  }

  addToDenylist(entry: { id: string; kind: PrincipalKind; reason: string }, actor: Actor): Promise<DenylistEntry> {
    assertActor(actor);
    return addToDenylist(this.db, entry, actor, this.now());
  }

  /**
   * One audit entry that no registry change carries: an event a node
   * reported. Under the registry lock like every write, so entries keep
   * commit order for CentOps' Merkle log.
   */
  appendAudit(entry: Omit<NewAuditEntry, 'at'>): Promise<void> {
    assertActor(entry.actor);
    const at = this.now().toISOString();
    return writeTransaction(this.db, (trx) => writeAudit(trx, [{ ...entry, at }]));
  }

  removeFromDenylist(id: string, actor: Actor): Promise<{ kind: PrincipalKind; revision: number }> {
    assertActor(actor);
    return removeFromDenylist(this.db, id, actor, this.now());
  }

  listDenylist(): Promise<DenylistEntry[]> {
    return listDenylist(this.db);
  }

  reportNodeStatus(nodeId: string, report: NodeStatusReport): Promise<NodeStatus> {
    return reportNodeStatus(this.db, nodeId, report, this.now());
  }

  getNodeStatus(nodeId: string): Promise<NodeStatus | undefined> {
    return getNodeStatus(this.db, nodeId);
  }

  listNodeStatus(): Promise<NodeStatus[]> {
    return listNodeStatus(this.db);
  }

  close(): Promise<void> {
    return this.db.destroy();
  }

  private single(change: Record<string, unknown>, actor: Actor): Promise<ApplyResult> {
    assertActor(actor);
    return applyChanges(this.db, [change], { actor, now: this.now().toISOString(), dryRun: false, single: true });
  }

  private version(options: WriteOptions): { expectedVersion?: number } {
    return options.expectedVersion === undefined ? {} : { expectedVersion: options.expectedVersion };
  }

  private lost(): never {
    throw new DmrError('INTERNAL', 'a write returned no result');
  }
}

/**
 * The Kysely handle behind a store opened by openStore, for modules that keep
 * their own tables in the same database and transactions (policies: src/policy/).
 */
export function databaseOf(store: Store): Kysely<Database> {
  if (!(store instanceof KyselyStore)) throw new DmrError('INTERNAL', 'not a store opened by openStore');
  return (store as unknown as { db: Kysely<Database> }).db;
}
