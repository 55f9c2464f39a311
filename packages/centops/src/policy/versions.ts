/**
 * The policy_versions table (migration 0003): one row per accepted version
 * of the policy set, with its signed bundle. Writes take the registry's
 * writer lock (writeTransaction), so policy and registry changes are
 * serialised together, revisions have no gaps and audit order is commit order.
 */
import type { Kysely, Selectable, Transaction } from 'kysely';
import { DmrError } from '@dmr/core';
import { writeAudit } from '../store/audit.js';
import type { Database } from '../store/schema.js';
import { bumpRevision, writeTransaction } from '../store/tx.js';
import type { PolicyFiles, PolicyVersion } from '@dmr/contract';

export interface PolicyVersionsTable {
  version: number;
  registry_revision: number;
  files: string;
  digest: string;
  bundle: string;
  bundle_digest: string;
  tests_passed: number;
  created_at: string;
  created_by: string;
}

export interface PolicyDatabase extends Database {
  policy_versions: PolicyVersionsTable;
}

export type { PolicyVersion, PolicyVersionWithFiles } from '@dmr/contract';

const SUMMARY = [
  'version',
  'registry_revision',
  'digest',
  'bundle_digest',
  'tests_passed',
  'created_at',
  'created_by',
] as const;

type SummaryRow = Pick<Selectable<PolicyVersionsTable>, (typeof SUMMARY)[number]> & { size: number };

function toVersion(row: SummaryRow): PolicyVersion {
  return {
    version: row.version,
    registryRevision: row.registry_revision,
    digest: row.digest,
    bundle: { revision: String(row.version), digest: `sha256:${row.bundle_digest}`, size: row.size },
    testsPassed: row.tests_passed,
    createdAt: row.created_at,
    createdBy: row.created_by,
  };
}

const asPolicy = (db: Kysely<Database> | Transaction<Database>) => db as unknown as Kysely<PolicyDatabase>;

/** The newest version (or `version`), without files and bundle; undefined when there is none. */
export async function findPolicyVersion(
  db: Kysely<Database> | Transaction<Database>,
  version?: number,
): Promise<PolicyVersion | undefined> {
  let query = asPolicy(db)
    .selectFrom('policy_versions')
    .select(SUMMARY)
    .select((eb) => eb.fn<number>('length', ['bundle']).as('encoded'));
  query = version === undefined ? query.orderBy('version', 'desc').limit(1) : query.where('version', '=', version);
  const row = await query.executeTakeFirst();
  if (row === undefined) return undefined;
  // base64 length → bytes (the bundle has no padding surprises: it is our own encoding)
  return toVersion({ ...row, size: Math.floor((Number(row.encoded) * 3) / 4) });
}

/** The active version and its bundle digest, for the registry snapshot (and so the node configuration). */
export async function activePolicy(
  db: Kysely<Database> | Transaction<Database>,
): Promise<{ version: number; bundleDigest: string } | undefined> {
  const row = await asPolicy(db)
    .selectFrom('policy_versions')
    .select(['version', 'bundle_digest'])
    .orderBy('version', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row === undefined ? undefined : { version: row.version, bundleDigest: row.bundle_digest };
}

export async function readPolicyFiles(db: Kysely<Database>, version: number): Promise<PolicyFiles> {
  const row = await asPolicy(db)
    .selectFrom('policy_versions')
    .select('files')
    .where('version', '=', version)
    .executeTakeFirst();
  if (row === undefined) throw new DmrError('NOT_FOUND', `policy version ${version} does not exist`);
  return JSON.parse(row.files) as PolicyFiles;
}

export async function readPolicyBundle(
  db: Kysely<Database>,
  version: number,
): Promise<{ archive: Buffer; digest: string }> {
  const row = await asPolicy(db)
    .selectFrom('policy_versions')
    .select(['bundle', 'bundle_digest'])
    .where('version', '=', version)
    .executeTakeFirst();
  if (row === undefined) throw new DmrError('NOT_FOUND', `policy version ${version} does not exist`);
  return { archive: Buffer.from(row.bundle, 'base64'), digest: row.bundle_digest };
}

export interface NewPolicyVersion {
  version: number;
  files: PolicyFiles;
  digest: string;
  archive: Buffer;
  bundleDigest: string;
  testsPassed: number;
}

/**
 * Adds a version. It must be exactly one past the newest (else CONFLICT: a
 * concurrent change won; the caller re-reads). With `bump`, the registry
 * revision moves on (nodes are told about the new bundle through their
 * configuration); the seed at init does not bump, as nothing was served yet.
 */
export async function insertPolicyVersion(
  db: Kysely<Database>,
  entry: NewPolicyVersion,
  actor: string,
  now: Date,
  options: { bump: boolean },
): Promise<PolicyVersion> {
  return writeTransaction(db, async (trx, current) => {
    const previous = await findPolicyVersion(trx);
    const expected = (previous?.version ?? 0) + 1;
    if (entry.version !== expected) {
      throw new DmrError('CONFLICT', `the policy set changed concurrently (now at version ${expected - 1})`, {
        details: { version: expected - 1 },
        hint: 're-read the policy set and apply again',
      });
    }
    const revision = options.bump ? await bumpRevision(trx) : current;
    const at = now.toISOString();
    await asPolicy(trx)
      .insertInto('policy_versions')
      .values({
        version: entry.version,
        registry_revision: revision,
        files: JSON.stringify(entry.files),
        digest: entry.digest,
        bundle: entry.archive.toString('base64'),
        bundle_digest: entry.bundleDigest,
        tests_passed: entry.testsPassed,
        created_at: at,
        created_by: actor,
      })
      .execute();
    await writeAudit(trx, [
      {
        at,
        actor,
        action: 'policy.update',
        kind: 'PolicySet',
        id: 'default',
        revision: options.bump ? revision : null,
        beforeDigest: previous?.digest ?? null,
        afterDigest: entry.digest,
        detail: {
          version: entry.version,
          bundleDigest: `sha256:${entry.bundleDigest}`,
          files: Object.keys(entry.files).length,
          testsPassed: entry.testsPassed,
        },
      },
    ]);
    const stored = await findPolicyVersion(trx, entry.version);
    if (stored === undefined) throw new DmrError('INTERNAL', 'a policy version was not stored');
    return stored;
  });
}
