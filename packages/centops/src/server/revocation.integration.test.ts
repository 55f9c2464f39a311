/**
 * Revocation is by identity (docs/decisions/0012-revocation-by-identity.md), against a real CentOps over
 * mutual TLS on SQLite and PostgreSQL: revoking one certificate revokes
 * every unexpired certificate of the id and the CRL lists them all; a denied
 * and lifted id's earlier certificates stay refused; deleting a client
 * revokes its certificates; a renewal supersedes its predecessor once the
 * overlap has passed (the clock is moved, never waited for); an operator is
 * denied like any id. The broker side (CentOps' CRL installed on a real
 * RabbitMQ) is packages/node/src/agent/revocation.integration.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createCsr, generatePrivateKey, normaliseSerial, parseCrls } from '@dmr/pki';
import { postgresBackend, sqliteBackend, type Backend } from '../store/test-support/backends.js';
import { client, node, organisation } from '../store/test-support/fixtures.js';
import { recordIssued } from './credentials.js';
import { startEmptyCentOps, type EmptyCentOps, type TestCallOptions } from './test-support/empty-centops.js';
import { call, type Credentials } from './test-support/https.js';

const TD = 'dmr.test';
const ACTOR = `spiffe://${TD}/operator/admin`;
const OVERLAP_MS = 10 * 60_000;

function suite(backend: Backend): void {
  describe(`revocation by identity on ${backend.name}`, { skip: backend.skip }, () => {
    let centops: EmptyCentOps;
    let skewMs = 0;
    const now = () => new Date(Date.now() + skewMs);
    const api = (path: string, options: TestCallOptions = {}) => centops.api(path, options);
    const enrol = (id: string) => centops.enrol(id);

    async function renew(id: string, credentials: Credentials): Promise<Credentials & { serial: string }> {
      const key = await generatePrivateKey();
      const csr = await createCsr({ id, kind: 'client', trustDomain: TD, privateKeyPem: key });
      const answer = await api('/v1/certificates/renew', { method: 'POST', body: { csr }, credentials });
      assert.equal(answer.status, 201, answer.text);
      const issued = answer.json as { chain: string; serial: string };
      return { cert: issued.chain, key, serial: issued.serial };
    }

    /** Whether CentOps accepts the certificate (any mesh principal may read the directory). */
    async function accepted(credentials: Credentials): Promise<boolean> {
      const answer = await api('/v1/directory/clients/police-bot/certificate', { credentials }).catch(() => undefined);
      return answer !== undefined && answer.status !== 401;
    }

    async function crlSerials(): Promise<Map<string, string>> {
      const pem = (await call(`${centops.server.enrolUrl}/v1/pki/crl`, { ca: centops.rootPem })).text;
      const [crl] = parseCrls(pem);
      return new Map(
        (crl?.entries ?? []).map((entry) => [
          normaliseSerial(entry.serialNumber),
          String(entry.reason ?? 'unspecified'),
        ]),
      );
    }

    before(async () => {
      await backend.setup();
      centops = await startEmptyCentOps({
        label: 'centops-revocation',
        trustDomain: TD,
        database: await backend.fresh(),
        configure: (config) => {
          config.renewalOverlap = '10m';
        },
        storeNow: now,
        server: { now, pollIntervalMs: 50 },
      });
      await centops.store.create('Organisation', organisation('police'), ACTOR);
      await centops.store.create('Node', node('dmr-tallinn'), ACTOR);
      for (const id of ['police-bot', 'tax-bot', 'gone-bot', 'renew-bot', 'race-bot']) {
        await centops.store.create('Client', client(id, 'police', 'dmr-tallinn'), ACTOR);
      }
    });
    after(async () => {
      await centops?.close();
      await backend.teardown();
    });

    it('revoking one certificate revokes every unexpired certificate of the id, and the CRL lists them all', async () => {
      const first = await enrol('police-bot');
      const second = await renew('police-bot', first);
      assert.ok(await accepted(second));
      const revoked = await api(`/v1/certificates/${first.serial}/revoke`, {
        method: 'POST',
        body: { reason: 'keyCompromise' },
      });
      assert.equal(revoked.status, 200, revoked.text);
      const body = revoked.json as { serials: string[]; denylisted: boolean; notBefore: string };
      assert.deepEqual(body.serials, [first.serial, second.serial].sort());
      assert.equal(body.denylisted, true);
      assert.equal(await accepted(second), false, 'the newer certificate is refused too');
      const listed = await crlSerials();
      assert.ok(listed.has(first.serial) && listed.has(second.serial), 'both serials are on the CRL');
      const records = await api(`/v1/certificates?id=police-bot`);
      const items = (records.json as { items: Array<{ revokedAt: string | null }> }).items;
      assert.ok(items.every((item) => item.revokedAt !== null));
    });

    it('after deny and lift, the earlier certificates stay refused; a new enrolment is accepted', async () => {
      const old = await enrol('tax-bot');
      const denied = await api('/v1/denylist', {
        method: 'POST',
        body: { id: 'tax-bot', kind: 'client', reason: 'compromised host' },
      });
      assert.equal(denied.status, 201, denied.text);
      assert.deepEqual((denied.json as { serials: string[] }).serials, [old.serial]);
      assert.equal((await api('/v1/denylist/tax-bot', { method: 'DELETE' })).status, 204);
      assert.equal(await accepted(old), false, 'lifting the entry does not re-admit an earlier certificate');
      assert.ok((await crlSerials()).has(old.serial));
      const fresh = await enrol('tax-bot');
      assert.ok(await accepted(fresh), 'a certificate issued after the not-before is accepted');
    });

    it('deleting a client revokes its certificates', async () => {
      const held = await enrol('gone-bot');
      assert.ok(await accepted(held));
      assert.equal((await api('/v1/clients/gone-bot', { method: 'DELETE' })).status, 204);
      assert.equal(await accepted(held), false);
      const listed = await crlSerials();
      assert.equal(listed.get(held.serial), String(5), 'on the CRL as cessationOfOperation (5)');
    });

    it('a renewal supersedes the previous certificate once the overlap has passed', async () => {
      const first = await enrol('renew-bot');
      const second = await renew('renew-bot', first);
      assert.ok(await accepted(first), 'within the overlap the previous certificate still works');
      const revisionBefore = await centops.store.revision();
      await centops.server.certificates.sweep();
      assert.ok(!(await crlSerials()).has(first.serial));
      skewMs = OVERLAP_MS + 60_000;
      try {
        await centops.server.certificates.sweep();
        assert.ok(
          (await centops.store.revision()) > revisionBefore,
          'nodes get a revision without the old fingerprint',
        );
        const listed = await crlSerials();
        assert.equal(listed.get(first.serial), String(4), 'on the CRL as superseded (4)');
        assert.ok(!listed.has(second.serial));
        assert.equal(await accepted(first), false);
        assert.ok(await accepted(second));
        const record = (await api(`/v1/certificates/${first.serial}`)).json as { revocationReason: string };
        assert.equal(record.revocationReason, 'superseded');
      } finally {
        skewMs = 0;
      }
    });

    it('reason superseded revokes that serial alone, and only while a newer certificate exists', async () => {
      const older = await renew('renew-bot', await enrol('renew-bot'));
      const newest = await renew('renew-bot', older);
      const early = await api(`/v1/certificates/${older.serial}/revoke`, {
        method: 'POST',
        body: { reason: 'superseded' },
      });
      assert.equal(early.status, 200, early.text);
      assert.deepEqual((early.json as { serials: string[] }).serials, [older.serial]);
      assert.equal(await accepted(older), false);
      assert.ok(await accepted(newest), 'the newer certificate is untouched');
      const last = await api(`/v1/certificates/${newest.serial}/revoke`, {
        method: 'POST',
        body: { reason: 'superseded' },
      });
      assert.equal(last.status, 409, 'nothing supersedes the newest certificate');
      assert.ok(await accepted(newest));
    });

    it('a certificate signed before its identity was revoked (a renewal racing the revocation) is born revoked', async () => {
      const signed = await centops.server.ca.issueWithKey({ kind: 'client', id: 'race-bot' });
      // The revocation lands after the signature: the store's clock is a second ahead.
      skewMs = 1000;
      try {
        await centops.store.revokeIdentity({ kind: 'client', id: 'race-bot' }, 'keyCompromise', ACTOR);
      } finally {
        skewMs = 0;
      }
      const recorded = await recordIssued(centops.store, { kind: 'client', id: 'race-bot' }, signed, ACTOR);
      assert.ok(recorded.revokedAt !== null, 'recorded as revoked');
      assert.equal(recorded.revocationReason, 'keyCompromise');
      assert.ok((await crlSerials()).has(signed.serial), 'and on the CRL');
      assert.equal(await accepted({ cert: signed.chainPem, key: signed.privateKeyPem }), false);
    });

    it('an operator is denied by identity: all its certificates are refused until an admin issues a new one', async () => {
      const issue = async () => {
        const key = await generatePrivateKey();
        const csr = await createCsr({
          id: 'olga',
          kind: 'operator',
          role: 'viewer',
          trustDomain: TD,
          privateKeyPem: key,
        });
        const answer = await api('/v1/operators/certificates', {
          method: 'POST',
          body: { id: 'olga', role: 'viewer', csr },
        });
        assert.equal(answer.status, 201, answer.text);
        return { cert: (answer.json as { chain: string }).chain, key };
      };
      const one = await issue();
      const two = await issue();
      assert.equal((await api('/v1/status', { credentials: one })).status, 200);
      const denied = await api('/v1/denylist', {
        method: 'POST',
        body: { id: 'olga', kind: 'operator', reason: 'left' },
      });
      assert.equal(denied.status, 201, denied.text);
      assert.equal((denied.json as { serials: string[] }).serials.length, 2);
      assert.equal((await api('/v1/status', { credentials: one })).status, 401);
      assert.equal((await api('/v1/status', { credentials: two })).status, 401);
      assert.ok(
        !(await centops.store.listDenylist()).some((entry) => entry.id === 'olga'),
        'nodes never see operators',
      );
      const three = await issue();
      assert.equal((await api('/v1/status', { credentials: three })).status, 200);
    });
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
