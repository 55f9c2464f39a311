/**
 * Migrations run on databases that hold data, on SQLite and PostgreSQL:
 * 0002 (operator and CentOps certificates) keeps every certificate row that
 * 0001 recorded, and its constraints back the store's rules; 0004 (kept
 * certificate chains) keeps earlier rows, with no chain.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Migrator } from 'kysely';
import { isDmrError } from '@dmr/core';
import { connect } from './connect.js';
import { parseLocation } from './location.js';
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE } from './migrate.js';
import { InCodeMigrationProvider } from './migrations/index.js';
import { openStore } from './store.js';
import { postgresBackend, sqliteBackend, type Backend } from './test-support/backends.js';

const ACTOR = 'spiffe://dmr.test/operator/admin';
const FP = (char: string) => char.repeat(64);
const WINDOW = { notBefore: '2025-03-01T10:00:00.000Z', notAfter: '2025-03-08T10:00:00.000Z' };

type RawDatabase = Awaited<ReturnType<typeof connect>>;

/** A `certificates` row as the migrations' tables hold it (client police-bot, WINDOW), with `fields` changed. */
function certificateRow(fields: Record<string, unknown>): never {
  return {
    principal_kind: 'client',
    principal_id: 'police-bot',
    not_before: WINDOW.notBefore,
    not_after: WINDOW.notAfter,
    recorded_at: WINDOW.notBefore,
    revoked_at: null,
    revocation_reason: null,
    ...fields,
  } as never;
}

/**
 * A fresh database migrated up to `migration` and no further, holding what `write` put in it: as a
 * deployment of that version left it, for the migrations after it to run on.
 */
async function databaseAt(
  backend: Backend,
  migration: string,
  write: (raw: RawDatabase) => Promise<void>,
): Promise<{ location: string; parsed: ReturnType<typeof parseLocation> }> {
  const location = await backend.fresh();
  const parsed = parseLocation(location);
  const raw = await connect(parsed);
  try {
    const migrator = new Migrator({
      db: raw,
      provider: new InCodeMigrationProvider(parsed.dialect),
      migrationTableName: MIGRATION_TABLE,
      migrationLockTableName: MIGRATION_LOCK_TABLE,
    });
    const { error } = await migrator.migrateTo(migration);
    assert.equal(error, undefined);
    await write(raw);
  } finally {
    await raw.destroy();
  }
  return { location, parsed };
}

function suite(backend: Backend): void {
  describe(`store migrations on ${backend.name}`, { skip: backend.skip }, () => {
    before(() => backend.setup());
    after(() => backend.teardown());

    it('0002 keeps 0001 certificate rows and records operators (with role) and CentOps certificates', async () => {
      // As 0001 left it: no role column yet.
      const { location, parsed } = await databaseAt(backend, '0001_initial', async (raw) => {
        await raw
          .insertInto('certificates')
          .values(certificateRow({ serial: 'a1', fingerprint: FP('a') }))
          .execute();
      });

      const store = await openStore(location);
      try {
        assert.equal(store.schemaVersion, '0006_audit_logs');
        const kept = await store.getCertificate('a1');
        assert.deepEqual([kept.kind, kept.id, kept.role, kept.fingerprint], ['client', 'police-bot', null, FP('a')]);

        const operator = await store.recordCertificate(
          { serial: 'b2', kind: 'operator', id: 'alice', role: 'viewer', fingerprint: FP('b'), ...WINDOW },
          ACTOR,
        );
        assert.equal(operator.role, 'viewer');
        await store.recordCertificate(
          { serial: 'c3', kind: 'centops', id: 'api', fingerprint: FP('c'), ...WINDOW },
          ACTOR,
        );
        for (const wrong of [
          { serial: 'd4', kind: 'operator', id: 'bob', fingerprint: FP('d') },
          { serial: 'd4', kind: 'node', id: 'dmr-tartu', role: 'admin', fingerprint: FP('d') },
          { serial: 'd4', kind: 'centops', id: 'anything', fingerprint: FP('d') },
        ] as const) {
          await assert.rejects(
            store.recordCertificate({ ...wrong, ...WINDOW }, ACTOR),
            (error) => isDmrError(error) && error.code === 'INVALID_ARGUMENT',
            JSON.stringify(wrong),
          );
        }
        assert.deepEqual(
          (await store.listCertificates({ kind: 'operator' })).items.map((record) => [record.id, record.role]),
          [['alice', 'viewer']],
        );
        const revoked = await store.revokeCertificate('b2', 'superseded', ACTOR);
        assert.equal(revoked.role, 'viewer');
        const audit = (await store.listAudit({ kind: 'Certificate', id: 'alice' })).items;
        assert.deepEqual(
          audit.map((entry) => entry.action),
          ['certificate.record', 'certificate.revoke'],
        );
        const [recorded, revocation] = audit;
        assert.match(recorded?.afterDigest ?? '', /^[0-9a-f]{64}$/);
        assert.equal(recorded?.detail?.role, 'viewer');
        assert.equal(revocation?.beforeDigest, recorded?.afterDigest, 'the revocation starts from the recorded state');
        assert.notEqual(revocation?.afterDigest, revocation?.beforeDigest);
      } finally {
        await store.close();
      }

      // The database refuses what the store refuses, should a bug bypass the store.
      const direct = await connect(parsed);
      try {
        const row = (kind: string, role: string | null) =>
          certificateRow({ serial: 'e5', principal_kind: kind, principal_id: 'eve', fingerprint: FP('e'), role });
        await assert.rejects(direct.insertInto('certificates').values(row('operator', null)).execute());
        await assert.rejects(direct.insertInto('certificates').values(row('operator', 'root')).execute());
        await assert.rejects(direct.insertInto('certificates').values(row('client', 'admin')).execute());
        await assert.rejects(direct.insertInto('certificates').values(row('robot', null)).execute());
        await direct.insertInto('certificates').values(row('operator', 'admin')).execute();
      } finally {
        await direct.destroy();
      }
    });

    it('0004 keeps certificate rows recorded before it, without a chain', async () => {
      // As 0003 left it: no chain_pem column yet.
      const { location } = await databaseAt(backend, '0003_policies', async (raw) => {
        await raw
          .insertInto('certificates')
          .values(
            certificateRow({ serial: 'f6', fingerprint: FP('f'), not_after: '2999-03-08T10:00:00.000Z', role: null }),
          )
          .execute();
      });
      const store = await openStore(location);
      try {
        assert.equal(store.schemaVersion, '0006_audit_logs');
        const [kept, ...others] = await store.certificatesOf('client', 'police-bot');
        assert.deepEqual(others, []);
        assert.deepEqual([kept?.serial, kept?.fingerprint, kept?.chainPem], ['f6', FP('f'), null]);
      } finally {
        await store.close();
      }
    });
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
