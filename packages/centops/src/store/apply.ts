/**
 * Applying registry changes: one code path for single create/update/delete
 * and for batches. A batch is checked as a whole (preconditions, the shape
 * of every spec, then the registry it would produce), written in one
 * transaction with one revision bump and audited, or refused with nothing
 * written. A dry run does everything but the writing.
 */
import type { Kysely, Transaction } from 'kysely';
import { DmrError, canonicalDigest, canonicalJson } from '@dmr/core';
import type { ResourceKind, ResourceSpecs } from '../model.js';
import { writeAudit, type NewAuditEntry } from './audit.js';
import {
  deleteResource,
  insertResource,
  loadAllResources,
  namespaceOf,
  resourceKey,
  updateResource,
  type AnySpec,
  type AnyStored,
} from './resources.js';
import type { Database } from './schema.js';
import { revokeIdentityInTransaction } from './identities.js';
import { bumpRevision, currentRevision, readTransaction, writeTransaction } from './tx.js';
import type { ApplyResult, DiffAction, DiffEntry } from './types.js';
import {
  findDuplicates,
  validateChange,
  validateRegistry,
  validationError,
  type CheckedChange,
  type Problem,
  type RegistryContents,
} from './validate.js';

export const MAX_BATCH = 1000;

export interface ApplyContext {
  actor: string;
  /** ISO time stamped on what changes. */
  now: string;
  dryRun: boolean;
  /** A single create/update/delete: paths read `spec.x` instead of `changes[0].spec.x`, no `apply` audit entry. */
  single: boolean;
}

interface Planned {
  path: string;
  change: CheckedChange;
  action: DiffAction;
  before?: AnyStored;
  after?: AnyStored;
}

export async function applyChanges(
  db: Kysely<Database>,
  input: readonly unknown[],
  context: ApplyContext,
): Promise<ApplyResult> {
  if (!Array.isArray(input) || input.length > MAX_BATCH) {
    throw new DmrError('INVALID_ARGUMENT', `changes must be an array of at most ${MAX_BATCH} changes`);
  }
  if (context.dryRun) {
    return readTransaction(db, async (trx) => {
      const revision = await currentRevision(trx);
      return result(plan(await loadAllResources(trx), input, revision, context), revision, true);
    });
  }
  return writeTransaction(db, async (trx, revision) => {
    const planned = plan(await loadAllResources(trx), input, revision, context);
    if (planned.some((entry) => entry.action !== 'unchanged')) {
      const bumped = await bumpRevision(trx);
      if (bumped !== revision + 1) throw new DmrError('INTERNAL', `revision moved from ${revision} to ${bumped}`);
      await write(trx, planned);
      await writeAudit(trx, auditEntries(planned, bumped, context));
      // Delete revokes: a deleted client's or node's certificates die with it, in this revision.
      for (const entry of planned) {
        const kind = entry.change.kind === 'Client' ? 'client' : entry.change.kind === 'Node' ? 'node' : undefined;
        if (entry.action !== 'deleted' || kind === undefined) continue;
        const identity = { kind, id: entry.change.id } as const;
        await revokeIdentityInTransaction(trx, identity, 'cessationOfOperation', context.actor, context.now, bumped);
      }
    }
    return result(planned, revision, false);
  });
}

function result(planned: readonly Planned[], previousRevision: number, dryRun: boolean): ApplyResult {
  const changed = planned.some((entry) => entry.action !== 'unchanged');
  // A planned entry's before/after are of the change's kind by construction; the cast restores that link.
  const diff = planned.map(
    ({ change, action, before, after }) =>
      ({
        kind: change.kind,
        id: change.id,
        action,
        ...(before === undefined ? {} : { before }),
        ...(after === undefined ? {} : { after }),
      }) as DiffEntry,
  );
  return { dryRun, previousRevision, revision: changed ? previousRevision + 1 : previousRevision, diff };
}

/** Decides what every change does, or throws with every problem found. Pure over the loaded registry. */
export function plan(
  current: readonly AnyStored[],
  input: readonly unknown[],
  revision: number,
  context: Pick<ApplyContext, 'now' | 'single'>,
): Planned[] {
  const problems: Problem[] = [];
  const checked: { path: string; change: CheckedChange }[] = [];
  input.forEach((value, index) => {
    const path = context.single ? '' : `changes[${index}]`;
    const { problems: found, change } = validateChange(value, path);
    problems.push(...found);
    if (change !== undefined) checked.push({ path, change });
  });
  problems.push(...findDuplicates(checked.map(({ path, change }) => ({ path, kind: change.kind, id: change.id }))));

  const byKey = new Map(current.map((stored) => [resourceKey(stored.kind, stored.spec.id), stored]));
  const principalOwner = new Map(
    current.filter((stored) => namespaceOf(stored.kind) === 'principal').map((stored) => [stored.spec.id, stored]),
  );
  // An id that the batch frees (by deleting its owner) may be taken by another kind in the same batch.
  for (const { change } of checked) {
    if (change.op === 'delete' && principalOwner.get(change.id)?.kind === change.kind) principalOwner.delete(change.id);
  }
  checkPreconditions(checked, byKey, principalOwner);

  const registry = contentsOf(current);
  const deleted = new Set<string>();
  for (const { change } of checked) {
    const specs = registry[change.kind] as Map<string, AnySpec>;
    if (change.op === 'delete') {
      specs.delete(change.id);
      deleted.add(resourceKey(change.kind, change.id));
    } else specs.set(change.id, change.spec);
  }
  problems.push(...validateRegistry(registry, deleted));
  if (problems.length > 0) throw validationError(problems);

  const next = revision + 1;
  return checked.map(({ path, change }) => {
    const before = byKey.get(resourceKey(change.kind, change.id));
    if (change.op === 'delete') return { path, change, action: 'deleted', before };
    if (before === undefined) {
      const after = {
        kind: change.kind,
        spec: change.spec,
        version: 1,
        revision: next,
        createdAt: context.now,
        updatedAt: context.now,
      } as AnyStored;
      return { path, change, action: 'created', after };
    }
    if (canonicalJson(before.spec) === canonicalJson(change.spec)) {
      return { path, change, action: 'unchanged', before, after: before };
    }
    const after = {
      ...before,
      spec: change.spec,
      version: before.version + 1,
      revision: next,
      updatedAt: context.now,
    } as AnyStored;
    return { path, change, action: 'updated', before, after };
  });
}

function checkPreconditions(
  checked: readonly { path: string; change: CheckedChange }[],
  byKey: ReadonlyMap<string, AnyStored>,
  principalOwner: ReadonlyMap<string, AnyStored>,
): void {
  const mismatches: Record<string, unknown>[] = [];
  const missing: Record<string, unknown>[] = [];
  const conflicts: Record<string, unknown>[] = [];
  const messages = { mismatch: [] as string[], missing: [] as string[], conflict: [] as string[] };
  for (const { path, change } of checked) {
    const { kind, id, op, expectedVersion } = change;
    const existing = byKey.get(resourceKey(kind, id));
    const where = { ...(path === '' ? {} : { path }), kind, id };
    if (expectedVersion !== undefined && existing?.version !== expectedVersion) {
      mismatches.push({ ...where, expectedVersion, currentVersion: existing?.version ?? null });
      messages.mismatch.push(
        existing === undefined
          ? `${kind} ${id} does not exist (expected version ${expectedVersion})`
          : `${kind} ${id} is at version ${existing.version}, not the expected ${expectedVersion}`,
      );
    }
    if ((op === 'update' || op === 'delete') && existing === undefined) {
      missing.push(where);
      messages.missing.push(`${kind} ${id} does not exist`);
    }
    if (op === 'create' && existing !== undefined) {
      conflicts.push({ ...where, takenBy: { kind, id } });
      messages.conflict.push(`${kind} ${id} already exists`);
    }
    const owner = principalOwner.get(id);
    if (op !== 'delete' && existing === undefined && namespaceOf(kind) === 'principal' && owner !== undefined) {
      conflicts.push({ ...where, takenBy: { kind: owner.kind, id } });
      messages.conflict.push(
        `id "${id}" is already taken by ${owner.kind} ${id} (organisations, clients and nodes share one id namespace)`,
      );
    }
  }
  if (mismatches.length > 0) {
    throw new DmrError('PRECONDITION_FAILED', messages.mismatch.join('; '), {
      details: { mismatches },
      hint: 'read the resource again and apply your change to its current version',
    });
  }
  if (missing.length > 0) {
    throw new DmrError('NOT_FOUND', messages.missing.join('; '), {
      details: { missing },
      hint: 'create it first (or use upsert)',
    });
  }
  if (conflicts.length > 0) {
    throw new DmrError('CONFLICT', messages.conflict.join('; '), {
      details: { conflicts },
      hint: 'choose another id, or update the existing resource instead of creating it',
    });
  }
}

function contentsOf(current: readonly AnyStored[]): { [K in ResourceKind]: Map<string, ResourceSpecs[K]> } {
  const registry = {
    Organisation: new Map<string, ResourceSpecs['Organisation']>(),
    Client: new Map<string, ResourceSpecs['Client']>(),
    Node: new Map<string, ResourceSpecs['Node']>(),
    Link: new Map<string, ResourceSpecs['Link']>(),
  };
  for (const stored of current) (registry[stored.kind] as Map<string, AnySpec>).set(stored.spec.id, stored.spec);
  return registry satisfies RegistryContents;
}

/**
 * Deletes first, so an id freed by the batch can be taken by another kind in
 * the same batch (the namespace is a unique constraint, checked at once).
 * References are checked at commit (a deferred foreign key), so the order
 * among the rest does not matter: validation has already proved the end state.
 */
async function write(trx: Transaction<Database>, planned: readonly Planned[]): Promise<void> {
  for (const entry of planned) {
    if (entry.action === 'deleted') await deleteResource(trx, entry.change.kind, entry.change.id);
  }
  for (const entry of planned) {
    if (entry.after === undefined || entry.action === 'unchanged') continue;
    if (entry.before === undefined) await insertResource(trx, entry.after);
    else await updateResource(trx, entry.after, entry.before.version);
  }
}

function auditEntries(planned: readonly Planned[], revision: number, context: ApplyContext): NewAuditEntry[] {
  const changed = planned.filter((entry) => entry.action !== 'unchanged');
  const entries: NewAuditEntry[] = changed.map(({ change, action, before, after }) => ({
    at: context.now,
    actor: context.actor,
    action: action === 'created' ? 'create' : action === 'updated' ? 'update' : 'delete',
    kind: change.kind,
    id: change.id,
    beforeDigest: before === undefined ? null : canonicalDigest(before.spec),
    afterDigest: after === undefined ? null : canonicalDigest(after.spec),
    revision,
  }));
  if (!context.single) {
    const count = (action: DiffAction) => planned.filter((entry) => entry.action === action).length;
    entries.push({
      at: context.now,
      actor: context.actor,
      action: 'apply',
      kind: null,
      id: null,
      revision,
      detail: {
        created: count('created'),
        updated: count('updated'),
        deleted: count('deleted'),
        unchanged: count('unchanged'),
      },
    });
  }
  return entries;
}
