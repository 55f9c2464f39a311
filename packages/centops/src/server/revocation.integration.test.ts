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
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCsr, generatePrivateKey, normaliseSerial, parseCrls } from '@dmr/pki';
import { openStore, type Store } from '../store/index.js';
import { postgresBackend, sqliteBackend, type Backend } from '../store/test-support/backends.js';
import { client, node, organisation } from '../store/test-support/fixtures.js';
import { startServer, type CentOpsServer } from './app.js';
import { CONFIG_FILE, loadConfig } from './config.js';
import { recordIssued } from './credentials.js';
import { initCentOps } from './init.js';
import { call, type Credentials } from './test-support/https.js';

const TD = 'dmr.test';
const ACTOR = `spiffe://${TD}/operator/admin`;
const OVERLAP_MS = 10 * 60_000;

function suite(backend: Backend): void {
  describe(`revocation by identity on ${backend.name}`, { skip: backend.skip }, () => {
    let dir: string;
    let server: CentOpsServer;
    let store: Store;
    let ca: string;
    let admin: Credentials;
    let skewMs = 0;
    const now = () => new Date(Date.now() + skewMs);
    const api = (path: string, options: Partial<Parameters<typeof call>[1]> = {}) =>
      call(`${server.apiUrl}${path}`, { ...options, ca, credentials: options.credentials ?? admin });

    async function enrol(id: string): Promise<Credentials & { serial: string }> {
      const token = await api('/v1/tokens', { method: 'POST', body: { id } });
      assert.equal(token.status, 201, token.text);
      const key = await generatePrivateKey();
      const csr = await createCsr({ id, kind: 'client', trustDomain: TD, privateKeyPem: key });
      const answer = await call(`${server.enrolUrl}/v1/enroll`, {
        ca,
        method: 'POST',
        body: { token: (token.json as { token: string }).token, csr },
      });
      assert.equal(answer.status, 201, answer.text);
      const issued = answer.json as { chain: string; serial: string };
      return { cert: issued.chain, key, serial: issued.serial };
    }

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
      const pem = (await call(`${server.enrolUrl}/v1/pki/crl`, { ca })).text;
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
      dir = await mkdtemp(join(tmpdir(), 'dmr-centops-revocation-'));
      const location = await backend.fresh();
      const made = await initCentOps({ dir: join(dir, 'c'), dev: true, trustDomain: TD, database: location });
      const config = await loadConfig(join(dir, 'c', CONFIG_FILE));
      config.listen.port = 0;
      config.enrolListen.port = 0;
      config.renewalOverlap = '10m';
      store = await openStore(config.database, { now });
      server = await startServer(config, { store, now, pollIntervalMs: 50 });
      ca = await readFile(join(dir, 'c', 'ca', 'root.crt'), 'utf8');
      admin = { cert: await readFile(made.admin.certificate, 'utf8'), key: await readFile(made.admin.key, 'utf8') };
      await store.create('Organisation', organisation('police'), ACTOR);
      await store.create('Node', node('dmr-tallinn'), ACTOR);
      for (const id of ['police-bot', 'tax-bot', 'gone-bot', 'renew-bot', 'race-bot']) {
        await store.create('Client', client(id, 'police', 'dmr-tallinn'), ACTOR);
      }
    });
    after(async () => {
      await server?.close();
      await store?.close();
      await rm(dir, { recursive: true, force: true });
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
      const revisionBefore = await store.revision();
      await server.certificates.sweep();
      assert.ok(!(await crlSerials()).has(first.serial));
      skewMs = OVERLAP_MS + 60_000;
      try {
        await server.certificates.sweep();
        assert.ok((await store.revision()) > revisionBefore, 'nodes get a revision without the old fingerprint');
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
      const signed = await server.ca.issueWithKey({ kind: 'client', id: 'race-bot' });
      // The revocation lands after the signature: the store's clock is a second ahead.
      skewMs = 1000;
      try {
        await store.revokeIdentity({ kind: 'client', id: 'race-bot' }, 'keyCompromise', ACTOR);
      } finally {
        skewMs = 0;
      }
      const recorded = await recordIssued(store, { kind: 'client', id: 'race-bot' }, signed, ACTOR);
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
      assert.ok(!(await store.listDenylist()).some((entry) => entry.id === 'olga'), 'nodes never see operators');
      const three = await issue();
      assert.equal((await api('/v1/status', { credentials: three })).status, 200);
    });
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
