/**
 * The certificate directory (GET /v1/directory/clients/:id/certificate) over
 * real HTTPS with client certificates issued by a real CentOps CA, on SQLite
 * and PostgreSQL: who may read it, what it serves, and each refusal.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority, createCsr, generatePrivateKey } from '@dmr/pki';
import type { CentOpsServer } from '../server/app.js';
import { startEmptyCentOps, type EmptyCentOps } from '../server/test-support/empty-centops.js';
import { call, type Credentials, type Response } from '../server/test-support/https.js';
import type { Store } from '../store/index.js';
import { postgresBackend, sqliteBackend, type Backend } from '../store/test-support/backends.js';
import { client, node, organisation } from '../store/test-support/fixtures.js';

const TD = 'dmr.test';

interface Enrolled extends Credentials {
  serial: string;
  chain: string;
}

interface Entry {
  id: string;
  kind: string;
  serial: string;
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  chainPem: string;
  status: string;
  earlier: Array<{ serial: string; chainPem: string }>;
}

function error(response: Response): { code?: string; details?: Record<string, unknown> } {
  return (response.json as { error?: { code?: string; details?: Record<string, unknown> } } | undefined)?.error ?? {};
}

function suite(backend: Backend): void {
  describe(`certificate directory on ${backend.name}`, { skip: backend.skip }, () => {
    let centops: EmptyCentOps;
    let server: CentOpsServer;
    let store: Store;
    let ca: string;
    let admin: Credentials;
    const api = (
      path: string,
      credentials: Credentials | undefined,
      options: { method?: string; body?: unknown } = {},
    ) => call(`${server.apiUrl}${path}`, { ca, ...options, ...(credentials === undefined ? {} : { credentials }) });
    const entryOf = (id: string, credentials: Credentials | undefined) =>
      api(`/v1/directory/clients/${id}/certificate`, credentials);

    async function enrolClient(id: string): Promise<Enrolled> {
      const enrolled = await centops.enrol(id);
      return { ...enrolled, chain: enrolled.cert };
    }

    before(async () => {
      await backend.setup();
      centops = await startEmptyCentOps({
        label: 'centops-directory',
        trustDomain: TD,
        database: await backend.fresh(),
        server: { pollIntervalMs: 50 },
      });
      ({ server, store, rootPem: ca, admin } = centops);
      const applied = await api('/v1/apply', admin, {
        method: 'POST',
        body: [
          { kind: 'Organisation', spec: organisation('police') },
          { kind: 'Organisation', spec: organisation('tax-board') },
          { kind: 'Node', spec: node('dmr-tallinn') },
          ...['police-bot', 'idle-bot', 'gone-bot', 'lost-bot'].map((id) => ({
            kind: 'Client',
            spec: client(id, 'police', 'dmr-tallinn'),
          })),
          { kind: 'Client', spec: client('tax-bot', 'tax-board', 'dmr-tallinn') },
          { kind: 'Client', spec: client('sleepy-bot', 'tax-board', 'dmr-tallinn', { status: 'suspended' }) },
        ],
      });
      assert.equal(applied.status, 200, applied.text);
    });

    after(async () => {
      await centops?.close();
      await backend.teardown();
    });

    it('a client reads another client’s current certificate; an operator may too; a renewal replaces it', async () => {
      const police = await enrolClient('police-bot');
      const tax = await enrolClient('tax-bot');

      const read = await entryOf('police-bot', tax);
      assert.equal(read.status, 200, read.text);
      const entry = read.json as Entry;
      assert.deepEqual(
        [entry.id, entry.kind, entry.serial, entry.chainPem, entry.status],
        ['police-bot', 'client', police.serial, police.chain, 'active'],
      );
      assert.match(entry.fingerprint, /^[0-9a-f]{64}$/);
      assert.ok(new Date(entry.notAfter) > new Date(entry.notBefore));
      assert.equal((await entryOf('police-bot', admin)).status, 200, 'operators read it too');
      assert.equal((await entryOf('tax-bot', tax)).status, 200, 'and a client its own');
      const openapi = (await api('/v1/openapi.json', admin)).json as { paths: Record<string, unknown> };
      assert.ok(openapi.paths['/v1/directory/clients/{id}/certificate'], 'the endpoint is in the OpenAPI document');

      const key = await generatePrivateKey();
      const csr = await createCsr({ id: 'police-bot', kind: 'client', trustDomain: TD, privateKeyPem: key });
      const renewed = await api('/v1/certificates/renew', police, { method: 'POST', body: { csr } });
      assert.equal(renewed.status, 201, renewed.text);
      const after = (await entryOf('police-bot', tax)).json as Entry;
      assert.equal(after.serial, (renewed.json as { serial: string }).serial, 'the newest certificate is served');
      assert.equal(after.chainPem, (renewed.json as { chain: string }).chain);
      // The replaced one is still valid and unrevoked: listed for verifying what was signed before the renewal.
      assert.deepEqual(
        after.earlier.map((item) => [item.serial, item.chainPem]),
        [[police.serial, police.chain]],
      );
      assert.deepEqual(entry.earlier, [], 'nothing earlier before the renewal');
    });

    it('serves a suspended client’s certificate with its status, for the caller to refuse', async () => {
      // A suspended client cannot enrol; its certificate from before the suspension stays in the directory.
      const issuer = await CertificateAuthority.open(join(centops.centopsDir, 'ca'));
      const issued = await issuer.issueWithKey({ kind: 'client', id: 'sleepy-bot' });
      await store.recordCertificate(
        {
          serial: issued.serial,
          kind: 'client',
          id: 'sleepy-bot',
          fingerprint: issued.fingerprintSha256,
          notBefore: issued.notBefore.toISOString(),
          notAfter: issued.notAfter.toISOString(),
          chainPem: issued.chainPem,
        },
        'spiffe://dmr.test/operator/admin',
      );
      const response = await entryOf('sleepy-bot', admin);
      assert.equal(response.status, 200, response.text);
      assert.equal((response.json as Entry).status, 'suspended');
    });

    it('unknown ids and ids without a current certificate are 404 with the reason; a malformed id is 422', async () => {
      const tax = await enrolClient('tax-bot');
      const unknown = await entryOf('nobody-bot', tax);
      assert.equal(unknown.status, 404, unknown.text);
      assert.deepEqual([error(unknown).code, error(unknown).details?.reason], ['NOT_FOUND', 'unknown-id']);
      const idle = await entryOf('idle-bot', tax);
      assert.equal(idle.status, 404, idle.text);
      assert.deepEqual([error(idle).code, error(idle).details?.reason], ['NOT_FOUND', 'no-current-certificate']);
      const malformed = await entryOf('Not_An_Id', tax);
      assert.equal(malformed.status, 422, malformed.text);
      assert.equal(error(malformed).code, 'VALIDATION_FAILED');
    });

    it('a revoked client is refused: denylisted while it is on the denylist, revoked once it is lifted', async () => {
      const tax = await enrolClient('tax-bot');
      const gone = await enrolClient('gone-bot');
      assert.equal((await entryOf('gone-bot', tax)).status, 200);
      const revoked = await api(`/v1/certificates/${gone.serial}/revoke`, admin, {
        method: 'POST',
        body: { reason: 'keyCompromise' },
      });
      assert.equal(revoked.status, 200, revoked.text);
      const denied = await entryOf('gone-bot', tax);
      assert.equal(denied.status, 403, denied.text);
      assert.equal(error(denied).code, 'PRINCIPAL_DENIED');
      const itself = await entryOf('tax-bot', gone);
      assert.equal(itself.status, 401, 'a revoked certificate reads nothing');
      assert.equal(error(itself).code, 'UNAUTHENTICATED');

      const lifted = await api('/v1/denylist/gone-bot', admin, { method: 'DELETE' });
      assert.equal(lifted.status, 204, lifted.text);
      const stillRevoked = await entryOf('gone-bot', tax);
      assert.equal(stillRevoked.status, 410, stillRevoked.text);
      assert.equal(error(stillRevoked).code, 'CERTIFICATE_REVOKED');
      assert.deepEqual(error(stillRevoked).details?.serials, [gone.serial]);

      // Put on the denylist without a revocation (its certificate is still valid): refused all the same.
      await enrolClient('lost-bot');
      await store.addToDenylist({ id: 'lost-bot', kind: 'client', reason: 'test' }, 'spiffe://dmr.test/operator/admin');
      const lost = await entryOf('lost-bot', tax);
      assert.equal(lost.status, 403, lost.text);
      assert.equal(error(lost).code, 'PRINCIPAL_DENIED');
    });

    it('refuses callers without a certificate of this CentOps', async () => {
      await assert.rejects(entryOf('police-bot', undefined), 'no client certificate: the TLS layer refuses');
      const foreignDir = join(centops.dir, 'foreign');
      const foreign = await CertificateAuthority.init(foreignDir, { trustDomain: TD });
      const stranger = await foreign.issueWithKey({ kind: 'client', id: 'tax-bot' });
      await assert.rejects(
        entryOf('police-bot', { cert: stranger.chainPem, key: stranger.privateKeyPem }),
        'a certificate of another CA: the TLS layer refuses',
      );
    });
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
