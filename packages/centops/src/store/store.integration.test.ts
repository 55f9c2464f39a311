/**
 * The store's behaviour, run unchanged against SQLite and PostgreSQL: both
 * are one code path, and this suite is what keeps them the same.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { sql } from 'kysely';
import { canonicalDigest, canonicalJson, isDmrError, type DmrError, type ErrorCode } from '@dmr/core';
import { CertificateAuthority } from '@dmr/pki';
import type { Organisation } from '../model.js';
import { connect } from './connect.js';
import { parseLocation } from './location.js';
import { MIGRATION_TABLE } from './migrate.js';
import { openStore } from './store.js';
import { postgresBackend, sqliteBackend, type Backend } from './test-support/backends.js';
import { client, link, node, organisation } from './test-support/fixtures.js';
import type { AuditEntry, Change, Store } from './types.js';

const OPERATOR = 'spiffe://dmr.example.ee/client/ops-alice';

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<DmrError> {
  try {
    await promise;
  } catch (error) {
    if (isDmrError(error) && error.code === code) return error;
    throw error;
  }
  assert.fail(`expected a DmrError ${code}`);
}

class Clock {
  time = new Date('2025-03-01T10:00:00.000Z');
  now = () => new Date(this.time);
  advance(ms: number): string {
    this.time = new Date(this.time.getTime() + ms);
    return this.time.toISOString();
  }
}

const HOUR = 3_600_000;

/** Two organisations, two nodes, a client on each, a link between the nodes: revision 1. */
const SEED: Change[] = [
  { op: 'create', kind: 'Organisation', spec: organisation('police') },
  { op: 'create', kind: 'Organisation', spec: organisation('tax-board') },
  { op: 'create', kind: 'Node', spec: node('dmr-tallinn') },
  { op: 'create', kind: 'Node', spec: node('dmr-tartu') },
  { op: 'create', kind: 'Client', spec: client('police-bot', 'police', 'dmr-tallinn') },
  { op: 'create', kind: 'Client', spec: client('tax-bot', 'tax-board', 'dmr-tartu') },
  { op: 'create', kind: 'Link', spec: link('dmr-tallinn', 'dmr-tartu') },
];

async function allAudit(store: Store): Promise<AuditEntry[]> {
  return (await store.listAudit({ limit: 1000 })).items;
}

function runWorker(location: string, token: string, actor: string, now: Date): Promise<{ ok: boolean; code?: string }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./test-support/consume-worker.js', import.meta.url), {
      workerData: { location, token, actor, now: now.toISOString() },
    });
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

function suite(backend: Backend): void {
  describe(`CentOps store on ${backend.name}`, { skip: backend.skip }, () => {
    before(() => backend.setup());
    after(() => backend.teardown());

    /** A fresh, migrated, empty store for one test, closed afterwards. */
    async function withStore(work: (store: Store, clock: Clock, location: string) => Promise<void>): Promise<void> {
      const location = await backend.fresh();
      const clock = new Clock();
      const store = await openStore(location, { now: clock.now });
      try {
        await work(store, clock, location);
      } finally {
        await store.close();
      }
    }

    it('creates, reads, updates and deletes with versions and revisions', () =>
      withStore(async (store, clock) => {
        assert.equal(store.dialect, backend.name === 'SQLite' ? 'sqlite' : 'postgres');
        assert.equal(store.schemaVersion, '0006_audit_logs');
        assert.equal(await store.revision(), 0);

        const created = await store.create('Organisation', organisation('police'), OPERATOR);
        assert.deepEqual(created, {
          kind: 'Organisation',
          spec: organisation('police'),
          version: 1,
          revision: 1,
          createdAt: '2025-03-01T10:00:00.000Z',
          updatedAt: '2025-03-01T10:00:00.000Z',
        });
        assert.deepEqual(await store.get('Organisation', 'police'), created);

        const later = clock.advance(HOUR);
        const renamed = organisation('police', { name: 'Police and Border Guard Board', labels: { tier: 'gov' } });
        const updated = await store.update('Organisation', renamed, OPERATOR, { expectedVersion: 1 });
        assert.equal(updated.version, 2);
        assert.equal(updated.revision, 2);
        assert.equal(updated.createdAt, created.createdAt);
        assert.equal(updated.updatedAt, later);
        assert.deepEqual(updated.spec, renamed);

        // The same spec again (keys in another order) is not a change.
        const same = await store.update(
          'Organisation',
          { labels: { tier: 'gov' }, name: renamed.name, id: 'police' },
          OPERATOR,
        );
        assert.deepEqual(same, updated);
        assert.equal(await store.revision(), 2);

        assert.equal(await store.find('Organisation', 'nobody'), undefined);
        await rejectsWith(store.get('Organisation', 'nobody'), 'NOT_FOUND');
        await rejectsWith(store.update('Organisation', organisation('nobody'), OPERATOR), 'NOT_FOUND');
        await rejectsWith(store.delete('Organisation', 'nobody', OPERATOR), 'NOT_FOUND');
        const exists = await rejectsWith(store.create('Organisation', organisation('police'), OPERATOR), 'CONFLICT');
        assert.equal(exists.httpStatus, 409);

        const invalid = await rejectsWith(
          store.create('Organisation', { id: 'bad', name: '' } as Organisation, OPERATOR),
          'VALIDATION_FAILED',
        );
        assert.deepEqual((invalid.details.problems as { path: string }[]).map((p) => p.path).sort(), [
          'spec.labels',
          'spec.name',
        ]);

        await store.delete('Organisation', 'police', OPERATOR, { expectedVersion: 2 });
        assert.equal(await store.revision(), 3);
        await rejectsWith(store.get('Organisation', 'police'), 'NOT_FOUND');
      }));

    it('pages through resources in id order with an opaque cursor, and filters', () =>
      withStore(async (store) => {
        // Bytewise order on both dialects: "-" < digits < letters.
        const ids = [
          'org-a',
          'org0',
          'orga',
          ...Array.from({ length: 22 }, (_, i) => `o${String(i).padStart(2, '0')}`),
        ];
        await store.applyChanges(
          ids.map((id) => ({ op: 'create', kind: 'Organisation', spec: organisation(id) })),
          OPERATOR,
        );
        const seen: string[] = [];
        const sizes: number[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.list('Organisation', { limit: 10, ...(cursor === undefined ? {} : { cursor }) });
          sizes.push(page.items.length);
          seen.push(...page.items.map((item) => item.spec.id));
          cursor = page.nextCursor;
        } while (cursor !== undefined);
        assert.deepEqual(sizes, [10, 10, 5]);
        assert.deepEqual(seen, [...ids].sort());
        assert.ok(seen.indexOf('org-a') < seen.indexOf('org0') && seen.indexOf('org0') < seen.indexOf('orga'));
        assert.equal((await store.list('Organisation')).items.length, 25);

        const first = await store.list('Organisation', { limit: 1 });
        await rejectsWith(store.list('Node', { cursor: first.nextCursor ?? '' }), 'INVALID_ARGUMENT');
        await rejectsWith(store.list('Organisation', { cursor: 'garbage' }), 'INVALID_ARGUMENT');
        await rejectsWith(store.list('Organisation', { limit: 0 }), 'INVALID_ARGUMENT');
        await rejectsWith(store.list('Organisation', { limit: 1001 }), 'INVALID_ARGUMENT');

        await store.applyChanges(
          [
            ...SEED.slice(0, 4),
            { op: 'create', kind: 'Node', spec: node('dmr-parnu') },
            { op: 'create', kind: 'Client', spec: client('police-bot', 'police', 'dmr-tallinn') },
            { op: 'create', kind: 'Client', spec: client('police-2', 'police', 'dmr-tartu') },
            { op: 'create', kind: 'Client', spec: client('tax-bot', 'tax-board', 'dmr-tallinn') },
            { op: 'create', kind: 'Link', spec: link('dmr-tallinn', 'dmr-tartu') },
            { op: 'create', kind: 'Link', spec: link('dmr-tartu', 'dmr-parnu') },
          ],
          OPERATOR,
        );
        const ids_ = async (page: Promise<{ items: { spec: { id: string } }[] }>) =>
          (await page).items.map((item) => item.spec.id);
        assert.deepEqual(await ids_(store.list('Client', { filter: { organisation: 'police' } })), [
          'police-2',
          'police-bot',
        ]);
        assert.deepEqual(await ids_(store.list('Client', { filter: { homeNode: 'dmr-tallinn' } })), [
          'police-bot',
          'tax-bot',
        ]);
        assert.deepEqual(
          await ids_(store.list('Client', { filter: { organisation: 'police', homeNode: 'dmr-tallinn' } })),
          ['police-bot'],
        );
        assert.deepEqual(await ids_(store.list('Link', { filter: { node: 'dmr-tartu' } })), [
          'dmr-parnu--dmr-tartu',
          'dmr-tallinn--dmr-tartu',
        ]);
        const filtered = await store.list('Client', { filter: { organisation: 'police' }, limit: 1 });
        assert.deepEqual(
          await ids_(store.list('Client', { filter: { organisation: 'police' }, cursor: filtered.nextCursor ?? '' })),
          ['police-bot'],
        );
        await rejectsWith(store.list('Client', { filter: { colour: 'red' } as never }), 'INVALID_ARGUMENT');
      }));

    it('keeps organisation, client and node ids in one namespace, and link ids in their own', () =>
      withStore(async (store) => {
        await store.create('Organisation', organisation('shared'), OPERATOR);
        await store.create('Node', node('dmr-a'), OPERATOR);
        const clash = await rejectsWith(store.create('Node', node('shared'), OPERATOR), 'CONFLICT');
        assert.deepEqual((clash.details.conflicts as { takenBy: unknown }[])[0]?.takenBy, {
          kind: 'Organisation',
          id: 'shared',
        });
        await rejectsWith(store.create('Client', client('shared', 'shared', 'dmr-a'), OPERATOR), 'CONFLICT');
        await rejectsWith(
          store.applyChanges([{ op: 'upsert', kind: 'Client', spec: client('dmr-a', 'shared', 'dmr-a') }], OPERATOR),
          'CONFLICT',
        );
        // Two new resources with one id in the same batch: a validation problem.
        const batch = await rejectsWith(
          store.applyChanges(
            [
              { op: 'create', kind: 'Organisation', spec: organisation('twin') },
              { op: 'create', kind: 'Node', spec: node('twin') },
            ],
            OPERATOR,
          ),
          'VALIDATION_FAILED',
        );
        assert.deepEqual(
          (batch.details.problems as { path: string }[]).map((p) => p.path),
          ['Node/twin.id'],
        );

        // A link id may equal a principal id: links have their own namespace.
        await store.create('Node', node('dmr-b'), OPERATOR);
        await store.create('Organisation', organisation('dmr-a--dmr-b'), OPERATOR);
        await store.create('Link', link('dmr-b', 'dmr-a'), OPERATOR);
        assert.equal((await store.get('Link', 'dmr-a--dmr-b')).spec.cost, 10);
        assert.equal(await store.revision(), 5);

        // A batch may free an id and hand it to another kind.
        await store.create('Node', node('dmr-c'), OPERATOR);
        const swapped = await store.applyChanges(
          [
            { op: 'create', kind: 'Organisation', spec: organisation('dmr-c') },
            { op: 'delete', kind: 'Node', id: 'dmr-c' },
          ],
          OPERATOR,
        );
        assert.deepEqual(
          swapped.diff.map((d) => [d.kind, d.action]),
          [
            ['Organisation', 'created'],
            ['Node', 'deleted'],
          ],
        );
        assert.equal((await store.get('Organisation', 'dmr-c')).version, 1);
      }));

    it('refuses a stale expectedVersion with PRECONDITION_FAILED', () =>
      withStore(async (store) => {
        await store.create('Organisation', organisation('police'), OPERATOR);
        await store.update('Organisation', organisation('police', { name: 'v2' }), OPERATOR, { expectedVersion: 1 });
        const stale = await rejectsWith(
          store.update('Organisation', organisation('police', { name: 'v3' }), OPERATOR, { expectedVersion: 1 }),
          'PRECONDITION_FAILED',
        );
        assert.equal(stale.httpStatus, 412);
        assert.deepEqual((stale.details.mismatches as Record<string, unknown>[])[0], {
          kind: 'Organisation',
          id: 'police',
          expectedVersion: 1,
          currentVersion: 2,
        });
        await rejectsWith(
          store.delete('Organisation', 'police', OPERATOR, { expectedVersion: 1 }),
          'PRECONDITION_FAILED',
        );
        assert.equal((await store.get('Organisation', 'police')).spec.name, 'v2');
        assert.equal(await store.revision(), 2);

        // Two writers that read version 2: exactly one wins.
        const results = await Promise.allSettled(
          ['a', 'b'].map((name) =>
            store.update('Organisation', organisation('police', { name }), OPERATOR, { expectedVersion: 2 }),
          ),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        const failure = results.find((r) => r.status === 'rejected');
        assert.ok(failure && isDmrError(failure.reason) && failure.reason.code === 'PRECONDITION_FAILED');
        assert.equal(await store.revision(), 3);
      }));

    it('applies a batch all or nothing, listing every problem', () =>
      withStore(async (store) => {
        await store.applyChanges(SEED, OPERATOR);
        const auditBefore = (await allAudit(store)).length;
        const error = await rejectsWith(
          store.applyChanges(
            [
              { op: 'create', kind: 'Organisation', spec: organisation('health-board') },
              { op: 'upsert', kind: 'Client', spec: client('health-bot', 'health-board', 'dmr-nowhere') },
              { op: 'upsert', kind: 'Link', spec: { ...link('dmr-tallinn', 'dmr-tartu'), cost: 0 } },
              { op: 'upsert', kind: 'Node', spec: node('dmr-parnu', { amqpsEndpoint: 'amqp://dmr-parnu:5672' }) },
              { op: 'delete', kind: 'Node', id: 'dmr-tartu' },
              { op: 'upsert', kind: 'Organisation', spec: organisation('health-board') },
            ],
            OPERATOR,
          ),
          'VALIDATION_FAILED',
        );
        const problems = (error.details.problems as { path: string; message: string }[]).map((p) => p.path);
        assert.deepEqual(problems.sort(), [
          'Client/health-bot.homeNode',
          'Client/tax-bot.homeNode',
          'Link/dmr-tallinn--dmr-tartu.nodes[1]',
          'changes[2].spec.cost',
          'changes[3].spec.amqpsEndpoint',
          'changes[5]',
        ]);
        assert.equal(await store.revision(), 1);
        assert.equal(await store.find('Organisation', 'health-board'), undefined);
        assert.ok(await store.find('Node', 'dmr-tartu'));
        assert.equal((await allAudit(store)).length, auditBefore);
      }));

    it('returns a diff, bumps the revision once, and audits every change', () =>
      withStore(async (store, clock) => {
        const seeded = await store.applyChanges(SEED, OPERATOR);
        assert.equal(seeded.revision, 1);
        assert.deepEqual(
          seeded.diff.map((d) => d.action),
          SEED.map(() => 'created'),
        );
        const seq = (await allAudit(store)).at(-1)?.seq ?? 0;
        clock.advance(HOUR);
        const batch: Change[] = [
          { op: 'upsert', kind: 'Organisation', spec: organisation('police') },
          { op: 'upsert', kind: 'Organisation', spec: organisation('tax-board', { name: 'Tax and Customs Board' }) },
          { op: 'create', kind: 'Client', spec: client('tax-bot-2', 'tax-board', 'dmr-tallinn') },
          { op: 'delete', kind: 'Link', id: 'dmr-tallinn--dmr-tartu', expectedVersion: 1 },
        ];
        const dry = await store.applyChanges(batch, OPERATOR, { dryRun: true });
        assert.equal(await store.revision(), 1);
        assert.equal(await store.find('Client', 'tax-bot-2'), undefined);
        assert.equal((await allAudit(store)).at(-1)?.seq, seq);

        const applied = await store.applyChanges(batch, OPERATOR);
        // The dry run predicted exactly what happened.
        assert.deepEqual({ ...dry, dryRun: false }, applied);
        assert.equal(applied.previousRevision, 1);
        assert.equal(applied.revision, 2);
        assert.deepEqual(
          applied.diff.map((d) => [d.kind, d.id, d.action]),
          [
            ['Organisation', 'police', 'unchanged'],
            ['Organisation', 'tax-board', 'updated'],
            ['Client', 'tax-bot-2', 'created'],
            ['Link', 'dmr-tallinn--dmr-tartu', 'deleted'],
          ],
        );
        const updated = applied.diff[1];
        assert.equal(updated?.before?.version, 1);
        assert.equal(updated?.after?.version, 2);
        assert.equal(updated?.after?.revision, 2);
        assert.equal((await store.get('Organisation', 'police')).revision, 1);
        assert.equal((await store.get('Organisation', 'tax-board')).revision, 2);
        await rejectsWith(store.get('Link', 'dmr-tallinn--dmr-tartu'), 'NOT_FOUND');

        const entries = (await allAudit(store)).filter((entry) => entry.seq > seq);
        assert.deepEqual(
          entries.map((e) => [e.action, e.kind, e.id, e.revision, e.actor]),
          [
            ['update', 'Organisation', 'tax-board', 2, OPERATOR],
            ['create', 'Client', 'tax-bot-2', 2, OPERATOR],
            ['delete', 'Link', 'dmr-tallinn--dmr-tartu', 2, OPERATOR],
            ['apply', null, null, 2, OPERATOR],
          ],
        );
        assert.deepEqual(entries[3]?.detail, { created: 1, updated: 1, deleted: 1, unchanged: 1 });

        // A batch of nothing new is not a change.
        const again = await store.applyChanges(
          [
            ...batch.slice(0, 2),
            { op: 'upsert', kind: 'Client', spec: client('tax-bot-2', 'tax-board', 'dmr-tallinn') },
          ],
          OPERATOR,
        );
        assert.deepEqual(
          again.diff.map((d) => d.action),
          ['unchanged', 'unchanged', 'unchanged'],
        );
        assert.equal(again.revision, 2);
      }));

    it('refuses to delete a node that clients or links still use, and accepts deleting them together', () =>
      withStore(async (store) => {
        await store.applyChanges(SEED, OPERATOR);
        const refused = await rejectsWith(store.delete('Node', 'dmr-tartu', OPERATOR), 'VALIDATION_FAILED');
        const problems = refused.details.problems as { path: string; message: string }[];
        assert.deepEqual(
          problems.map((p) => p.path),
          ['Client/tax-bot.homeNode', 'Link/dmr-tallinn--dmr-tartu.nodes[1]'],
        );
        assert.ok(problems.every((p) => p.message.includes('which this change deletes')));
        await rejectsWith(store.delete('Organisation', 'tax-board', OPERATOR), 'VALIDATION_FAILED');

        // Listed parent first: references are checked for the end state, not statement by statement.
        const result = await store.applyChanges(
          [
            { op: 'delete', kind: 'Node', id: 'dmr-tartu' },
            { op: 'delete', kind: 'Organisation', id: 'tax-board' },
            { op: 'delete', kind: 'Client', id: 'tax-bot' },
            { op: 'delete', kind: 'Link', id: 'dmr-tallinn--dmr-tartu' },
          ],
          OPERATOR,
        );
        assert.equal(result.revision, 2);
        const snapshot = await store.snapshot();
        assert.deepEqual(
          snapshot.resources.Node.map((n) => n.spec.id),
          ['dmr-tallinn'],
        );
        assert.deepEqual(snapshot.resources.Link, []);

        // Moving a client to a new node and dropping the old one in one batch.
        const moved = await store.applyChanges(
          [
            { op: 'delete', kind: 'Node', id: 'dmr-tallinn' },
            { op: 'upsert', kind: 'Client', spec: client('police-bot', 'police', 'dmr-narva') },
            { op: 'create', kind: 'Node', spec: node('dmr-narva') },
          ],
          OPERATOR,
        );
        assert.deepEqual(
          moved.diff.map((d) => d.action),
          ['deleted', 'updated', 'created'],
        );
      }));

    it('bumps the revision exactly once per accepted change, never for a refused one', () =>
      withStore(async (store) => {
        const steps: [string, () => Promise<unknown>, number][] = [
          ['create', () => store.create('Organisation', organisation('police'), OPERATOR), 1],
          ['update', () => store.update('Organisation', organisation('police', { name: 'P' }), OPERATOR), 2],
          ['unchanged', () => store.update('Organisation', organisation('police', { name: 'P' }), OPERATOR), 2],
          [
            'refused',
            () =>
              assert.rejects(
                store.create('Organisation', organisation('police'), OPERATOR),
                (error: unknown) => isDmrError(error) && error.code === 'CONFLICT',
              ),
            2,
          ],
          [
            'batch of three',
            () =>
              store.applyChanges(
                [
                  { op: 'create', kind: 'Node', spec: node('dmr-tallinn') },
                  { op: 'create', kind: 'Client', spec: client('police-bot', 'police', 'dmr-tallinn') },
                  { op: 'create', kind: 'Organisation', spec: organisation('tax-board') },
                ],
                OPERATOR,
              ),
            3,
          ],
          [
            'dry run',
            () =>
              store.applyChanges([{ op: 'delete', kind: 'Organisation', id: 'tax-board' }], OPERATOR, { dryRun: true }),
            3,
          ],
          [
            'denylist add',
            () => store.addToDenylist({ id: 'rogue-bot', kind: 'client', reason: 'key leaked' }, OPERATOR),
            4,
          ],
          ['denylist remove', () => store.removeFromDenylist('rogue-bot', OPERATOR), 5],
          [
            'token (not config)',
            () => store.createBootstrapToken({ id: 'police-bot', kind: 'client', ttl: '1h' }, OPERATOR),
            5,
          ],
          ['delete', () => store.delete('Organisation', 'tax-board', OPERATOR), 6],
        ];
        for (const [name, step, expected] of steps) {
          await step();
          assert.equal(await store.revision(), expected, name);
        }
        const revisions = (await allAudit(store)).map((e) => e.revision).filter((r) => r !== null);
        assert.deepEqual([...new Set(revisions)], [1, 2, 3, 4, 5, 6]);
      }));

    it('audits with digests of the canonical JSON, filtered and paged', () =>
      withStore(async (store, clock) => {
        const spec = organisation('police', { labels: { b: '2', a: '1' } });
        await store.create('Organisation', spec, OPERATOR);
        const since = clock.advance(HOUR);
        const renamed = { ...spec, name: 'PPA' };
        await store.update('Organisation', renamed, 'spiffe://dmr.example.ee/client/ops-bob');
        await store.create('Node', node('dmr-tallinn'), OPERATOR);
        clock.advance(HOUR);
        await store.delete('Organisation', 'police', OPERATOR);

        const sha = (value: unknown) => createHash('sha256').update(canonicalJson(value)).digest('hex');
        const police = (await store.listAudit({ kind: 'Organisation', id: 'police' })).items;
        assert.deepEqual(
          police.map((e) => [e.action, e.beforeDigest, e.afterDigest, e.revision]),
          [
            ['create', null, sha(spec), 1],
            ['update', sha(spec), sha(renamed), 2],
            ['delete', sha(renamed), null, 4],
          ],
        );
        assert.equal(canonicalDigest(spec), sha(spec));
        assert.equal(police[1]?.actor, 'spiffe://dmr.example.ee/client/ops-bob');
        assert.equal(police[0]?.at, '2025-03-01T10:00:00.000Z');
        assert.ok(
          police.every((e) => !JSON.stringify(e).includes('PPA')),
          'audit holds digests, not content',
        );

        const recent = (await store.listAudit({ since })).items;
        assert.deepEqual(
          recent.map((e) => e.action),
          ['update', 'create', 'delete'],
        );
        assert.deepEqual(
          (await store.listAudit({ action: 'create' })).items.map((e) => e.id),
          ['police', 'dmr-tallinn'],
        );

        const first = await store.listAudit({ limit: 3 });
        assert.equal(first.items.length, 3);
        const second = await store.listAudit({ limit: 3, cursor: first.nextCursor ?? '' });
        assert.deepEqual(
          second.items.map((e) => e.action),
          ['delete'],
        );
        assert.equal(second.nextCursor, undefined);
        assert.ok(first.items.every((e, i, all) => i === 0 || e.seq > (all[i - 1]?.seq ?? 0)));
        await rejectsWith(store.listAudit({ since: 'yesterday' }), 'INVALID_ARGUMENT');
        await rejectsWith(
          store.listAudit({ cursor: first.nextCursor ?? '', kind: 'Node', limit: 0 }),
          'INVALID_ARGUMENT',
        );
      }));

    it('consumes a bootstrap token once, refuses used, expired and unknown ones', () =>
      withStore(async (store, clock) => {
        await store.applyChanges(SEED, OPERATOR);
        const issued = await store.createBootstrapToken({ id: 'police-bot', kind: 'client', ttl: '1h' }, OPERATOR);
        assert.match(issued.token, /^dmrbt_[A-Za-z0-9_-]{43}$/);
        assert.equal(issued.expiresAt, '2025-03-01T11:00:00.000Z');
        const listed = await store.listBootstrapTokens('police-bot');
        assert.deepEqual(listed, [
          {
            ref: issued.ref,
            id: 'police-bot',
            kind: 'client',
            createdAt: '2025-03-01T10:00:00.000Z',
            createdBy: OPERATOR,
            expiresAt: issued.expiresAt,
            usedAt: null,
            usedBy: null,
          },
        ]);

        assert.deepEqual(await store.consumeBootstrapToken(issued.token, 'enrol:10.0.0.7'), {
          id: 'police-bot',
          kind: 'client',
        });
        const used = await rejectsWith(store.consumeBootstrapToken(issued.token, 'enrol:10.0.0.8'), 'TOKEN_INVALID');
        assert.equal(used.details.reason, 'used');
        assert.equal(used.httpStatus, 401);
        assert.equal((await store.listBootstrapTokens('police-bot'))[0]?.usedBy, 'enrol:10.0.0.7');

        const expiring = await store.createBootstrapToken({ id: 'dmr-tartu', kind: 'node', ttl: '1h' }, OPERATOR);
        clock.advance(HOUR);
        const expired = await rejectsWith(store.consumeBootstrapToken(expiring.token, 'enrol'), 'TOKEN_INVALID');
        assert.equal(expired.details.reason, 'expired');
        const unknown = await rejectsWith(store.consumeBootstrapToken('dmrbt_nope', 'enrol'), 'TOKEN_INVALID');
        assert.equal(unknown.details.reason, 'unknown');
        await rejectsWith(store.consumeBootstrapToken('', 'enrol'), 'TOKEN_INVALID');

        await rejectsWith(
          store.createBootstrapToken({ id: 'nobody', kind: 'client', ttl: '1h' }, OPERATOR),
          'NOT_FOUND',
        );
        // The id exists, but as a node, not a client.
        await rejectsWith(
          store.createBootstrapToken({ id: 'dmr-tartu', kind: 'client', ttl: '1h' }, OPERATOR),
          'NOT_FOUND',
        );
        await rejectsWith(
          store.createBootstrapToken({ id: 'police-bot', kind: 'client', ttl: '8d' }, OPERATOR),
          'INVALID_ARGUMENT',
        );

        const audit = await allAudit(store);
        assert.deepEqual(
          audit.filter((e) => e.kind === 'BootstrapToken').map((e) => [e.action, e.id, e.detail?.reason ?? null]),
          [
            ['token.create', 'police-bot', null],
            ['token.consume', 'police-bot', null],
            ['token.refuse', 'police-bot', 'used'],
            ['token.create', 'dmr-tartu', null],
            ['token.refuse', 'dmr-tartu', 'expired'],
          ],
        );
        const everything = JSON.stringify(audit);
        assert.ok(
          !everything.includes(issued.token) && !everything.includes(expiring.token),
          'no token in the audit log',
        );

        // A token goes with its client.
        await store.createBootstrapToken({ id: 'tax-bot', kind: 'client', ttl: '1h' }, OPERATOR);
        await store.delete('Client', 'tax-bot', OPERATOR);
        assert.deepEqual(await store.listBootstrapTokens('tax-bot'), []);
      }));

    it('lets exactly one of many concurrent consumers have a token', () =>
      withStore(async (store, clock, location) => {
        await store.applyChanges(SEED, OPERATOR);
        const { token } = await store.createBootstrapToken({ id: 'tax-bot', kind: 'client', ttl: '1h' }, OPERATOR);
        // Separate threads with their own connections, racing for real.
        const results = await Promise.all(
          Array.from({ length: 4 }, (_, i) => runWorker(location, token, `enrol:worker-${i}`, clock.now())),
        );
        assert.equal(results.filter((r) => r.ok).length, 1, JSON.stringify(results));
        assert.ok(
          results.filter((r) => !r.ok).every((r) => r.code === 'TOKEN_INVALID'),
          JSON.stringify(results),
        );

        // And within one process, on one store.
        const second = await store.createBootstrapToken({ id: 'tax-bot', kind: 'client', ttl: '1h' }, OPERATOR);
        const local = await Promise.allSettled(
          Array.from({ length: 5 }, () => store.consumeBootstrapToken(second.token, 'enrol')),
        );
        assert.equal(local.filter((r) => r.status === 'fulfilled').length, 1);
      }));

    it('records, lists and revokes certificates; a client’s or node’s is a new revision', () =>
      withStore(async (store) => {
        const fingerprint = createHash('sha256').update('police-bot cert').digest('hex');
        const recorded = await store.recordCertificate(
          {
            serial: '0A:1B:2C',
            kind: 'client',
            id: 'police-bot',
            fingerprint: fingerprint.toUpperCase(),
            notBefore: '2025-03-01T10:00:00Z',
            notAfter: '2025-03-08T10:00:00Z',
          },
          OPERATOR,
        );
        assert.equal(recorded.serial, 'a1b2c');
        assert.equal(await store.revision(), 1, 'the client’s fingerprint is in every node document');
        assert.equal(recorded.fingerprint, fingerprint);
        assert.equal(recorded.notAfter, '2025-03-08T10:00:00.000Z');
        assert.deepEqual(await store.getCertificate('A1B2C'), recorded);
        await rejectsWith(store.recordCertificate({ ...recorded, fingerprint: 'ab'.repeat(32) }, OPERATOR), 'CONFLICT');
        assert.equal(await store.revision(), 1, 'a refused record changes nothing');
        await store.recordCertificate(
          { ...recorded, serial: 'ff01', id: 'dmr-tallinn', kind: 'node', fingerprint: 'cd'.repeat(32) },
          OPERATOR,
        );
        assert.deepEqual(
          (await store.listCertificates({ id: 'police-bot' })).items.map((c) => c.serial),
          ['a1b2c'],
        );
        const page = await store.listCertificates({ limit: 1 });
        assert.deepEqual(
          (await store.listCertificates({ limit: 1, cursor: page.nextCursor ?? '' })).items.map((c) => c.serial),
          ['ff01'],
        );

        assert.equal(await store.revision(), 2);
        const revoked = await store.revokeCertificate('a1b2c', 'keyCompromise', OPERATOR);
        assert.equal(revoked.revocationReason, 'keyCompromise');
        assert.equal(revoked.revokedAt, '2025-03-01T10:00:00.000Z');
        assert.deepEqual([revoked.revision, revoked.denylisted], [3, false]);
        await rejectsWith(store.revokeCertificate('a1b2c', 'superseded', OPERATOR), 'ALREADY_REVOKED');
        await rejectsWith(store.revokeCertificate('dead', 'superseded', OPERATOR), 'UNKNOWN_SERIAL');
        await rejectsWith(store.getCertificate('dead'), 'UNKNOWN_SERIAL');
        assert.deepEqual(
          (await store.listCertificates({ revoked: true })).items.map((c) => c.serial),
          ['a1b2c'],
        );
        assert.deepEqual(
          (await store.listCertificates({ revoked: false })).items.map((c) => c.serial),
          ['ff01'],
        );
        assert.equal(await store.revision(), 3, 'refused revocations change nothing');
        assert.deepEqual(
          (await store.listAudit({ kind: 'Certificate' })).items.map((e) => [
            e.action,
            e.id,
            e.detail?.serial,
            e.revision,
          ]),
          [
            ['certificate.record', 'police-bot', 'a1b2c', 1],
            ['certificate.record', 'dmr-tallinn', 'ff01', 2],
            ['certificate.revoke', 'police-bot', 'a1b2c', 3],
          ],
        );
      }));

    it('keeps a client certificate’s chain and lists an id’s current certificates, newest first', () =>
      withStore(async (store, clock) => {
        const dir = await mkdtemp(join(tmpdir(), 'dmr-store-chain-'));
        try {
          const ca = await CertificateAuthority.init(join(dir, 'pki'), { trustDomain: 'dmr.test' });
          const first = await ca.issueWithKey({ kind: 'client', id: 'police-bot' });
          const second = await ca.issueWithKey({ kind: 'client', id: 'police-bot' });
          const record = (issued: typeof first, notBefore: string, notAfter: string) => ({
            serial: issued.serial,
            kind: 'client' as const,
            id: 'police-bot',
            fingerprint: issued.fingerprintSha256,
            notBefore,
            notAfter,
          });
          const old = await store.recordCertificate(
            { ...record(first, '2025-03-01T10:00:00Z', '2025-03-02T10:00:00Z'), chainPem: first.chainPem },
            OPERATOR,
          );
          assert.equal('chainPem' in old, false, 'records and lists stay without the PEM');
          assert.equal('chainPem' in (await store.getCertificate(first.serial)), false);
          const recorded = (await store.listAudit({ kind: 'Certificate', id: 'police-bot' })).items.at(-1);
          assert.equal(recorded?.detail?.chainKept, true);

          // Only the leaf the fingerprint names, and only certificates: never a key, never another certificate.
          await rejectsWith(
            store.recordCertificate(
              { ...record(second, '2025-03-01T12:00:00Z', '2025-03-02T12:00:00Z'), chainPem: first.chainPem },
              OPERATOR,
            ),
            'INVALID_ARGUMENT',
          );
          await rejectsWith(
            store.recordCertificate(
              {
                ...record(second, '2025-03-01T12:00:00Z', '2025-03-02T12:00:00Z'),
                chainPem: `${second.chainPem}${second.privateKeyPem}`,
              },
              OPERATOR,
            ),
            'INVALID_ARGUMENT',
          );
          await rejectsWith(
            store.recordCertificate(
              { ...record(second, '2025-03-01T12:00:00Z', '2025-03-02T12:00:00Z'), chainPem: 'not a pem' },
              OPERATOR,
            ),
            'INVALID_ARGUMENT',
          );
          await store.recordCertificate(
            { ...record(second, '2025-03-01T12:00:00Z', '2025-03-02T12:00:00Z'), chainPem: second.chainPem },
            OPERATOR,
          );
          // One recorded without a chain (as every row before migration 0004): listed, with a null chain.
          const bare = await ca.issueWithKey({ kind: 'client', id: 'police-bot' });
          await store.recordCertificate(record(bare, '2025-03-01T11:00:00Z', '2025-03-02T11:00:00Z'), OPERATOR);

          const current = await store.certificatesOf('client', 'police-bot');
          assert.deepEqual(
            current.map((c) => [c.serial, c.chainPem]),
            [
              [second.serial, second.chainPem],
              [bare.serial, null],
              [first.serial, first.chainPem],
            ],
          );
          assert.deepEqual(await store.certificatesOf('node', 'police-bot'), []);
          assert.deepEqual(await store.certificatesOf('client', 'tax-bot'), []);

          await store.revokeCertificate(second.serial, 'superseded', OPERATOR);
          clock.advance(24 * HOUR + 30 * 60_000); // the first has expired, the others not yet
          assert.deepEqual(
            (await store.certificatesOf('client', 'police-bot')).map((c) => [c.serial, c.revokedAt !== null]),
            [
              [second.serial, true],
              [bare.serial, false],
            ],
          );
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }));

    it('two certificates of one id issued within the same second: the later record is the newest', () =>
      withStore(async (store, clock) => {
        await store.applyChanges(SEED, OPERATOR);
        // X.509 times have whole seconds, so a renewal right after enrolment has the same notBefore.
        const window = { notBefore: '2025-03-01T10:00:00Z', notAfter: '2025-03-08T10:00:00Z' };
        // Serials chosen so that ordering by serial alone would put the older first.
        await store.recordCertificate(
          { serial: 'a1', kind: 'client', id: 'police-bot', fingerprint: 'a1'.repeat(32), ...window },
          OPERATOR,
        );
        clock.advance(5);
        await store.recordCertificate(
          { serial: 'f2', kind: 'client', id: 'police-bot', fingerprint: 'f2'.repeat(32), ...window },
          OPERATOR,
        );
        assert.deepEqual(
          (await store.certificatesOf('client', 'police-bot')).map((certificate) => certificate.serial),
          ['f2', 'a1'],
        );
      }));

    it('revokes a node certificate and denylists the node in one transaction and one revision', () =>
      withStore(async (store) => {
        await store.applyChanges(SEED, OPERATOR);
        const window = { notBefore: '2025-03-01T10:00:00Z', notAfter: '2025-03-08T10:00:00Z' };
        await store.recordCertificate(
          { serial: 'b1', kind: 'node', id: 'dmr-tartu', fingerprint: 'b1'.repeat(32), ...window },
          OPERATOR,
        );
        await store.recordCertificate(
          { serial: 'b2', kind: 'node', id: 'dmr-tartu', fingerprint: 'b2'.repeat(32), ...window },
          OPERATOR,
        );
        assert.equal(await store.revision(), 3);
        const first = await store.revokeCertificate('b1', 'keyCompromise', OPERATOR, { denylistReason: 'stolen' });
        assert.deepEqual([first.revision, first.denylisted], [4, true]);
        const snapshot = await store.snapshot();
        assert.equal(snapshot.revision, 4);
        assert.deepEqual(
          snapshot.denylist.map((entry) => [entry.id, entry.kind, entry.reason]),
          [['dmr-tartu', 'node', 'stolen']],
        );
        // Already denylisted: the revocation is still a revision, the entry stays as it was.
        const second = await store.revokeCertificate('b2', 'superseded', OPERATOR, { denylistReason: 'again' });
        assert.deepEqual([second.revision, second.denylisted], [5, false]);
        assert.equal((await store.listDenylist())[0]?.reason, 'stolen');
        const audit = (await store.listAudit({ limit: 1000 })).items.filter(
          (e) => e.revision !== null && e.revision >= 4,
        );
        assert.deepEqual(
          audit.map((e) => [e.action, e.id, e.revision]),
          [
            ['certificate.revoke', 'dmr-tartu', 4],
            ['denylist.add', 'dmr-tartu', 4],
            ['certificate.revoke', 'dmr-tartu', 5],
          ],
        );

        // Operators' and CentOps' own certificates are in no node document: no revision.
        const operator = await store.recordCertificate(
          { serial: 'c1', kind: 'operator', id: 'alice', role: 'viewer', fingerprint: 'c1'.repeat(32), ...window },
          OPERATOR,
        );
        await store.recordCertificate(
          { serial: 'c2', kind: 'centops', id: 'api', fingerprint: 'c2'.repeat(32), ...window },
          OPERATOR,
        );
        const revokedOperator = await store.revokeCertificate(operator.serial, 'superseded', OPERATOR, {
          denylistReason: 'ignored for operators',
        });
        assert.deepEqual([revokedOperator.revision, revokedOperator.denylisted], [null, false]);
        assert.equal(await store.revision(), 5);
        assert.equal((await store.listDenylist()).length, 1);
      }));

    it('keeps a denylist that is part of the snapshot and its revision', () =>
      withStore(async (store) => {
        await store.applyChanges(SEED, OPERATOR);
        const entry = await store.addToDenylist({ id: 'tax-bot', kind: 'client', reason: ' key leaked ' }, OPERATOR);
        assert.deepEqual(entry, {
          id: 'tax-bot',
          kind: 'client',
          reason: 'key leaked',
          since: '2025-03-01T10:00:00.000Z',
          addedBy: OPERATOR,
        });
        await rejectsWith(
          store.addToDenylist({ id: 'tax-bot', kind: 'client', reason: 'again' }, OPERATOR),
          'CONFLICT',
        );
        await rejectsWith(store.addToDenylist({ id: 'x', kind: 'client', reason: 'bad id' }, OPERATOR), 'INVALID_ID');

        const snapshot = await store.snapshot();
        assert.equal(snapshot.revision, 2);
        assert.deepEqual(snapshot.denylist, [entry]);
        assert.deepEqual(
          Object.fromEntries(
            Object.entries(snapshot.resources).map(([kind, list]) => [kind, list.map((r) => r.spec.id)]),
          ),
          {
            Organisation: ['police', 'tax-board'],
            Client: ['police-bot', 'tax-bot'],
            Node: ['dmr-tallinn', 'dmr-tartu'],
            Link: ['dmr-tallinn--dmr-tartu'],
          },
        );
        assert.deepEqual(snapshot.resources.Client[0], await store.get('Client', 'police-bot'));

        await store.removeFromDenylist('tax-bot', OPERATOR);
        await rejectsWith(store.removeFromDenylist('tax-bot', OPERATOR), 'NOT_FOUND');
        const after = await store.snapshot();
        assert.equal(after.revision, 3);
        assert.deepEqual(after.denylist, []);
      }));

    it('keeps the status each node reports, and drops it with the node', () =>
      withStore(async (store, clock) => {
        await store.applyChanges(SEED, OPERATOR);
        await store.update('Organisation', organisation('police', { name: 'P' }), OPERATOR);
        clock.advance(60_000);
        const status = await store.reportNodeStatus('dmr-tallinn', {
          appliedRevision: 1,
          refused: { revision: 2, reason: 'policy bundle failed verification' },
          policyRevision: 'bundle-7',
        });
        assert.deepEqual(await store.getNodeStatus('dmr-tallinn'), status);
        assert.equal(status.reportedAt, '2025-03-01T10:01:00.000Z');
        await store.reportNodeStatus('dmr-tallinn', { appliedRevision: 2, refused: null, policyRevision: 'bundle-7' });
        assert.deepEqual((await store.getNodeStatus('dmr-tallinn'))?.refused, null);
        await store.reportNodeStatus('dmr-tartu', { appliedRevision: null, refused: null, policyRevision: null });
        assert.deepEqual(
          (await store.listNodeStatus()).map((s) => [s.nodeId, s.appliedRevision]),
          [
            ['dmr-tallinn', 2],
            ['dmr-tartu', null],
          ],
        );
        await rejectsWith(
          store.reportNodeStatus('dmr-tallinn', { appliedRevision: 9, refused: null, policyRevision: null }),
          'INVALID_ARGUMENT',
        );
        await rejectsWith(
          store.reportNodeStatus('police-bot', { appliedRevision: 1, refused: null, policyRevision: null }),
          'NOT_FOUND',
        );
        await store.applyChanges(
          [
            { op: 'delete', kind: 'Client', id: 'tax-bot' },
            { op: 'delete', kind: 'Link', id: 'dmr-tallinn--dmr-tartu' },
            { op: 'delete', kind: 'Node', id: 'dmr-tartu' },
          ],
          OPERATOR,
        );
        assert.equal(await store.getNodeStatus('dmr-tartu'), undefined);
      }));

    it('keeps data across reopening and refuses a database migrated by a newer version', () =>
      withStore(async (store, _clock, location) => {
        await store.create('Organisation', organisation('police'), OPERATOR);
        const again = await openStore(location);
        try {
          assert.equal((await again.get('Organisation', 'police')).version, 1);
          assert.equal(again.schemaVersion, '0006_audit_logs');
        } finally {
          await again.close();
        }

        const raw = await connect(parseLocation(location));
        try {
          await sql`insert into ${sql.table(MIGRATION_TABLE)} (name, timestamp) values ('0999_from_the_future', ${new Date().toISOString()})`.execute(
            raw,
          );
          const refused = await rejectsWith(openStore(location), 'STORE_TOO_NEW');
          assert.deepEqual(refused.details.unknownMigrations, ['0999_from_the_future']);
          assert.match(refused.hint ?? '', /newer/);
          await sql`delete from ${sql.table(MIGRATION_TABLE)} where name = '0999_from_the_future'`.execute(raw);
        } finally {
          await raw.destroy();
        }
        const reopened = await openStore(location);
        await reopened.close();
      }));

    it('backs validation with database constraints', () =>
      withStore(async (_store, _clock, location) => {
        // Bypassing the store: the schema itself refuses a dangling reference and a namespace clash.
        const raw = await connect(parseLocation(location));
        try {
          const row = (kind: string, id: string, namespace = 'principal') => ({
            kind,
            id,
            namespace,
            spec: '{}',
            version: 1,
            revision: 1,
            created_at: '2025-03-01T10:00:00.000Z',
            updated_at: '2025-03-01T10:00:00.000Z',
          });
          await raw.insertInto('resources').values(row('Organisation', 'police')).execute();
          await assert.rejects(raw.insertInto('resources').values(row('Node', 'police')).execute());
          await assert.rejects(
            raw
              .insertInto('resources')
              .values(row('Link', 'police', 'principal'))
              .execute(),
          );
          await raw.insertInto('resources').values(row('Client', 'police-bot')).execute();
          await assert.rejects(
            raw
              .insertInto('resource_refs')
              .values({ kind: 'Client', id: 'police-bot', field: 'homeNode', target_kind: 'Node', target_id: 'gone' })
              .execute(),
          );
          await raw
            .insertInto('resource_refs')
            .values({
              kind: 'Client',
              id: 'police-bot',
              field: 'organisation',
              target_kind: 'Organisation',
              target_id: 'police',
            })
            .execute();
          await assert.rejects(raw.deleteFrom('resources').where('id', '=', 'police').execute());
        } finally {
          await raw.destroy();
        }
      }));

    it('reports an unreachable or unusable location clearly', async () => {
      if (backend.name === 'SQLite') {
        const error = await rejectsWith(openStore('/nonexistent-dir/centops.db'), 'STORE_UNAVAILABLE');
        assert.match(error.hint ?? '', /directory/);
      } else {
        const error = await rejectsWith(openStore('postgres://postgres:secret@127.0.0.1:1/none'), 'STORE_UNAVAILABLE');
        assert.ok(!error.message.includes('secret'), error.message);
      }
    });
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
