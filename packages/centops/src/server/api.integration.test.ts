/**
 * The CentOps API over real HTTPS with client certificates, against SQLite
 * and PostgreSQL: the server is built by initCentOps (as `dmr centops init`
 * does) and started on ephemeral ports (startEmptyCentOps).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCsr, generatePrivateKey, normaliseSerial, parseCrls } from '@dmr/pki';
import type { Store } from '../store/index.js';
import { postgresBackend, sqliteBackend, type Backend } from '../store/test-support/backends.js';
import { client, node, organisation } from '../store/test-support/fixtures.js';
import type { CentOpsServer } from './app.js';
import { loadClientConfig } from './config.js';
import { addOperator } from './operators.js';
import { startEmptyCentOps, type EmptyCentOps, type TestCallOptions } from './test-support/empty-centops.js';
import { call, type Credentials, type Response } from './test-support/https.js';

const TD = 'dmr.test';

function errorCode(response: Response): string | undefined {
  const body = response.json as { error?: { code?: string } } | undefined;
  return body?.error?.code;
}

function suite(backend: Backend): void {
  describe(`CentOps API on ${backend.name}`, { skip: backend.skip }, () => {
    let centops: EmptyCentOps;
    let server: CentOpsServer;
    let store: Store;
    let ca: string;
    let skewMs = 0;
    const api = (path: string, options: TestCallOptions = {}) => centops.api(path, options);
    const enrol = (body: unknown) => call(`${server.enrolUrl}/v1/enroll`, { ca, method: 'POST', body });
    const token = (id: string, ttl = '1h') => centops.token(id, { ttl });

    async function enrolAs(
      id: string,
      kind: 'client' | 'node',
      secret: string,
      dns: string[] = [],
    ): Promise<Response & { credentials?: Credentials }> {
      const { csr, key } = await centops.csr(id, { kind, dns });
      const response = await enrol({ token: secret, csr });
      const chain = (response.json as { chain?: string } | undefined)?.chain;
      return { ...response, credentials: chain === undefined ? undefined : { cert: chain, key } };
    }

    before(async () => {
      await backend.setup();
      centops = await startEmptyCentOps({
        label: 'centops-api',
        trustDomain: TD,
        database: await backend.fresh(),
        storeNow: () => new Date(Date.now() + skewMs),
        server: { pollIntervalMs: 50 },
      });
      ({ server, store, rootPem: ca } = centops);
    });
    after(async () => {
      await centops?.close();
      await backend.teardown();
    });

    it('refuses a caller without a client certificate at the TLS layer; enrolment needs none', async () => {
      await assert.rejects(call(`${server.apiUrl}/v1/status`, { ca }));
      const bundle = await call(`${server.enrolUrl}/v1/pki/trust-bundle`, { ca });
      assert.equal(bundle.status, 200);
      assert.equal(bundle.text, ca);
      const notThere = await call(`${server.enrolUrl}/v1/organisations`, { ca });
      assert.equal(notThere.status, 404, 'the enrolment listener serves nothing of the API');
    });

    it('apply: a dry run shows the diff and writes nothing; an invalid batch lists every problem and changes nothing', async () => {
      const batch = [
        { kind: 'Organisation', spec: organisation('police') },
        { kind: 'Node', spec: node('dmr-tallinn') },
        { kind: 'Node', spec: node('dmr-tartu') },
        { kind: 'Client', spec: client('police-bot', 'police', 'dmr-tallinn') },
      ];
      const dry = await api('/v1/apply?dryRun=true', { ca, method: 'POST', body: batch });
      assert.equal(dry.status, 200, dry.text);
      const dryResult = dry.json as { dryRun: boolean; diff: Array<{ action: string }>; revision: number };
      assert.equal(dryResult.dryRun, true);
      assert.deepEqual(
        dryResult.diff.map((entry) => entry.action),
        ['created', 'created', 'created', 'created'],
      );
      assert.equal(
        (await api('/v1/organisations')).json &&
          ((await api('/v1/organisations')).json as { items: unknown[] }).items.length,
        0,
      );

      const invalid = [
        ...batch,
        { kind: 'Client', spec: client('tax-bot', 'no-such-org', 'no-such-node') },
        { kind: 'Link', spec: { id: 'dmr-tallinn--dmr-tartu', nodes: ['dmr-tallinn', 'dmr-tartu'], cost: 0 } },
      ];
      const refused = await api('/v1/apply', { ca, method: 'POST', body: invalid });
      assert.equal(refused.status, 422, refused.text);
      const problems = (refused.json as { error: { details: { problems: Array<{ path: string }> } } }).error.details
        .problems;
      assert.ok(problems.length >= 3, JSON.stringify(problems));
      assert.ok(problems.some((problem) => problem.path.includes('organisation')));
      assert.ok(problems.some((problem) => problem.path.includes('homeNode')));
      assert.ok(problems.some((problem) => problem.path.includes('cost')));
      const status = (await api('/v1/status')).json as { revision: number };
      assert.equal(status.revision, 0, 'nothing changed');

      const applied = await api('/v1/apply', { ca, method: 'POST', body: batch });
      assert.equal(applied.status, 200, applied.text);
      assert.equal((applied.json as { revision: number }).revision, 1);
    });

    it('schema validation reports every field problem as VALIDATION_FAILED', async () => {
      const response = await api('/v1/clients', {
        ca,
        method: 'POST',
        body: { id: 'x1', organisation: 5, status: 'sleeping', unknown: true },
      });
      assert.equal(response.status, 422);
      const paths = (
        response.json as { error: { details: { problems: Array<{ path: string }> } } }
      ).error.details.problems.map((problem) => problem.path);
      for (const expected of ['body.organisation', 'body.homeNode', 'body.unknown', 'body.status']) {
        assert.ok(paths.includes(expected), `${expected} in ${paths.join(', ')}`);
      }
    });

    it('bodies are not coerced and unknown body fields are refused, each problem named; queries are coerced', async () => {
      const problemsOf = (response: Response) =>
        (response.json as { error: { details: { problems: Array<{ path: string; message: string }> } } }).error.details
          .problems;
      for (const name of [3, true, ['Police'], null]) {
        const response = await api('/v1/organisations', {
          ca,
          method: 'POST',
          body: { id: 'coerced', name, labels: {} },
        });
        assert.equal(response.status, 422, `name ${JSON.stringify(name)}: ${response.text}`);
        assert.equal(errorCode(response), 'VALIDATION_FAILED');
        assert.deepEqual(
          problemsOf(response).map((problem) => problem.path),
          ['body.name'],
        );
      }
      const unknown = await api('/v1/organisations', {
        ca,
        method: 'POST',
        body: { id: 'coerced', name: 'C', labels: {}, colour: 'red', owner: 'x' },
      });
      assert.equal(unknown.status, 422, unknown.text);
      assert.deepEqual(
        problemsOf(unknown)
          .map((problem) => [problem.path, problem.message])
          .sort(),
        [
          ['body.colour', 'is not a known field'],
          ['body.owner', 'is not a known field'],
        ],
      );
      const nested = await api('/v1/apply', {
        ca,
        method: 'POST',
        body: [{ kind: 'Organisation', spec: organisation('coerced'), expectedVersion: '1', extra: 1 }],
      });
      assert.equal(nested.status, 422, nested.text);
      assert.deepEqual(
        problemsOf(nested)
          .map((problem) => problem.path)
          .sort(),
        ['body[0].expectedVersion', 'body[0].extra'],
      );
      const token = await api('/v1/tokens', { ca, method: 'POST', body: { id: 5 } });
      assert.equal(token.status, 422);
      assert.deepEqual(
        problemsOf(token).map((problem) => problem.path),
        ['body.id'],
      );
      assert.equal(((await api('/v1/organisations')).json as { items: unknown[] }).items.length, 1, 'nothing made');
      // Querystrings arrive as text: ?limit=1 and ?dryRun=true still mean a number and a boolean.
      const page = await api('/v1/nodes?limit=1');
      assert.equal(page.status, 200, page.text);
      assert.equal((page.json as { items: unknown[] }).items.length, 1);
      const dry = await api('/v1/apply?dryRun=true', {
        ca,
        method: 'POST',
        body: [{ kind: 'Organisation', spec: organisation('dry') }],
      });
      assert.equal((dry.json as { dryRun: boolean }).dryRun, true);
      const badLimit = await api('/v1/nodes?limit=many');
      assert.equal(badLimit.status, 422);
      assert.deepEqual(
        problemsOf(badLimit).map((problem) => problem.path),
        ['querystring.limit'],
      );
    });

    it('ETag and If-Match: a stale version answers 412; pagination continues with next', async () => {
      const got = await api('/v1/organisations/police');
      assert.equal(got.headers.etag, '"1"');
      const spec = { ...organisation('police'), name: 'Politsei' };
      const put = await api('/v1/organisations/police', {
        ca,
        method: 'PUT',
        body: spec,
        headers: { 'if-match': '"1"' },
      });
      assert.equal(put.status, 200, put.text);
      assert.equal(put.headers.etag, '"2"');
      const stale = await api('/v1/organisations/police', {
        ca,
        method: 'PUT',
        body: spec,
        headers: { 'if-match': '"1"' },
      });
      assert.equal(stale.status, 412);
      assert.equal(errorCode(stale), 'PRECONDITION_FAILED');
      const staleDelete = await api('/v1/organisations/police', {
        ca,
        method: 'DELETE',
        headers: { 'if-match': '"1"' },
      });
      assert.equal(staleDelete.status, 412);

      const first = (await api('/v1/nodes?limit=1')).json as {
        items: Array<{ spec: { id: string } }>;
        next: string | null;
      };
      assert.deepEqual(
        first.items.map((item) => item.spec.id),
        ['dmr-tallinn'],
      );
      assert.ok(first.next);
      const second = (await api(`/v1/nodes?limit=1&cursor=${encodeURIComponent(first.next)}`)).json as typeof first;
      assert.deepEqual(
        second.items.map((item) => item.spec.id),
        ['dmr-tartu'],
      );
    });

    it('publishes an OpenAPI 3 document covering the routes', async () => {
      const response = await api('/v1/openapi.json');
      assert.equal(response.status, 200);
      const document = response.json as { openapi: string; paths: Record<string, Record<string, unknown>> };
      assert.match(document.openapi, /^3\./);
      for (const path of [
        '/v1/organisations',
        '/v1/clients/{id}',
        '/v1/nodes/{id}',
        '/v1/links',
        '/v1/apply',
        '/v1/audit',
        '/v1/status',
        '/v1/tokens',
        '/v1/certificates/renew',
        '/v1/certificates/{serial}/revoke',
        '/v1/pki/crl',
        '/v1/pki/trust-bundle',
        '/v1/operators/certificates',
        '/v1/denylist',
        '/v1/denylist/{id}',
      ]) {
        assert.ok(document.paths[path], `${path} is documented`);
      }
      assert.ok(document.paths['/v1/clients/{id}']?.put);
    });

    it('enrolment: a token for an id gives that id a certificate once; wrong id, reuse and expiry are refused', async () => {
      const secret = await token('police-bot');
      const wrong = await enrolAs('dmr-tartu', 'node', secret, ['dmr-tartu.dmr.example.ee']);
      assert.equal(wrong.status, 400, wrong.text);
      assert.equal(errorCode(wrong), 'CSR_MISMATCH', 'refused before the token is spent');

      const fresh = secret;
      const ok = await enrolAs('police-bot', 'client', fresh);
      assert.equal(ok.status, 201, ok.text);
      assert.ok(ok.credentials);
      const again = await enrolAs('police-bot', 'client', fresh);
      assert.equal(errorCode(again), 'TOKEN_INVALID');

      const expiring = await token('police-bot', '15m');
      skewMs = 20 * 60_000;
      try {
        const expired = await enrolAs('police-bot', 'client', expiring);
        assert.equal(errorCode(expired), 'TOKEN_INVALID');
      } finally {
        skewMs = 0;
      }

      // A client is authenticated, but has no business with the registry.
      const asClient = await api('/v1/clients', { ca, credentials: ok.credentials });
      assert.equal(asClient.status, 403);
    });

    it('renewal: a node renews itself with its certificate, and cannot get one for another id', async () => {
      const secret = await token('dmr-tallinn');
      const enrolled = await enrolAs('dmr-tallinn', 'node', secret, ['dmr-tallinn.dmr.example.ee']);
      assert.equal(enrolled.status, 201, enrolled.text);
      const credentials = enrolled.credentials as Credentials;
      const key = await generatePrivateKey();
      const own = await createCsr({
        id: 'dmr-tallinn',
        kind: 'node',
        trustDomain: TD,
        privateKeyPem: key,
        dns: ['dmr-tallinn.dmr.example.ee'],
      });
      const renewed = await api('/v1/certificates/renew', { ca, method: 'POST', body: { csr: own }, credentials });
      assert.equal(renewed.status, 201, renewed.text);
      assert.notEqual((renewed.json as { serial: string }).serial, (enrolled.json as { serial: string }).serial);
      const other = await createCsr({ id: 'dmr-tartu', kind: 'node', trustDomain: TD, privateKeyPem: key });
      const refused = await api('/v1/certificates/renew', { ca, method: 'POST', body: { csr: other }, credentials });
      assert.equal(refused.status, 400);
      assert.equal(errorCode(refused), 'CSR_MISMATCH');
      const registry = await api('/v1/nodes', { ca, credentials });
      assert.equal(registry.status, 403, 'a node reads only what the feed gives it');
    });

    it('roles: a viewer reads but cannot write', async () => {
      const viewer = await server.ca.issueWithKey({ kind: 'operator', id: 'vera', role: 'viewer' });
      const credentials = { cert: viewer.chainPem, key: viewer.privateKeyPem };
      assert.equal((await api('/v1/organisations', { ca, credentials })).status, 200);
      const write = await api('/v1/organisations', {
        ca,
        credentials,
        method: 'POST',
        body: organisation('tax-board'),
      });
      assert.equal(write.status, 403);
      assert.equal(errorCode(write), 'FORBIDDEN');
      const tokenAttempt = await api('/v1/tokens', { ca, credentials, method: 'POST', body: { id: 'police-bot' } });
      assert.equal(tokenAttempt.status, 403);
    });

    it('revocation: the serial is on the CRL, the id on the denylist, and the certificate is refused', async () => {
      const secret = await token('police-bot');
      const enrolled = await enrolAs('police-bot', 'client', secret);
      const serial = (enrolled.json as { serial: string }).serial;
      const credentials = enrolled.credentials as Credentials;
      assert.equal(
        (await api('/v1/certificates/renew', { ca, credentials, method: 'POST', body: { csr: 'x' } })).status,
        400,
      );

      const revoked = await api(`/v1/certificates/${serial}/revoke`, {
        ca,
        method: 'POST',
        body: { reason: 'keyCompromise' },
      });
      assert.equal(revoked.status, 200, revoked.text);
      assert.equal((revoked.json as { denylisted: boolean }).denylisted, true);
      const crl = await call(`${server.enrolUrl}/v1/pki/crl`, { ca });
      const [parsed] = parseCrls(crl.text);
      assert.ok(parsed?.entries.some((entry) => normaliseSerial(entry.serialNumber) === serial));
      assert.ok((await store.listDenylist()).some((entry) => entry.id === 'police-bot'));
      const after = await api('/v1/certificates/renew', { ca, credentials, method: 'POST', body: { csr: 'x' } });
      assert.equal(after.status, 401);
      const twice = await api(`/v1/certificates/${serial}/revoke`, {
        ca,
        method: 'POST',
        body: { reason: 'keyCompromise' },
      });
      assert.equal(twice.status, 409);
      const reEnrol = await enrolAs('police-bot', 'client', await token('police-bot'));
      assert.equal(reEnrol.status, 403, 'a denylisted id cannot enrol');
    });

    it('a revoked operator certificate is refused; only an admin revokes operator certificates', async () => {
      const alice = await server.ca.issueWithKey({ kind: 'operator', id: 'alice', role: 'operator' });
      const bob = await server.ca.issueWithKey({ kind: 'operator', id: 'bob', role: 'operator' });
      const asAlice = { cert: alice.chainPem, key: alice.privateKeyPem };
      assert.equal((await api('/v1/status', { ca, credentials: asAlice })).status, 200);
      const notAdmin = await api(`/v1/certificates/${bob.serial}/revoke`, {
        ca,
        credentials: asAlice,
        method: 'POST',
        body: { reason: 'affiliationChanged' },
      });
      assert.equal(notAdmin.status, 403);
      const byAdmin = await api(`/v1/certificates/${alice.serial}/revoke`, {
        ca,
        method: 'POST',
        body: { reason: 'affiliationChanged' },
      });
      assert.equal(byAdmin.status, 200, byAdmin.text);
      assert.equal((await api('/v1/status', { ca, credentials: asAlice })).status, 401);
    });

    it('audit records who changed what; status shows the revision', async () => {
      const audit = (await api('/v1/audit?limit=1000')).json as { items: Array<{ actor: string; action: string }> };
      assert.ok(
        audit.items.some((entry) => entry.action === 'apply' && entry.actor === `spiffe://${TD}/operator/admin`),
      );
      assert.ok(audit.items.some((entry) => entry.action === 'certificate.revoke'));
      const status = (await api('/v1/status')).json as { revision: number; nodes: Array<{ id: string }> };
      assert.ok(status.revision >= 2);
      assert.deepEqual(
        status.nodes.map((entry) => entry.id),
        ['dmr-tallinn', 'dmr-tartu'],
      );
    });
    it('init recorded CentOps’ own certificates and the first admin’s', async () => {
      const centops = (await api('/v1/certificates?kind=centops')).json as { items: Array<{ id: string }> };
      assert.deepEqual(centops.items.map((record) => record.id).sort(), ['api', 'config-signer', 'policy-signer']);
      const operators = (await api('/v1/certificates?kind=operator&id=admin')).json as {
        items: Array<{ id: string; role: string | null; revokedAt: string | null }>;
      };
      assert.deepEqual(
        operators.items.map((record) => [record.id, record.role, record.revokedAt]),
        [['admin', 'admin', null]],
      );
      const audit = (await api('/v1/audit?kind=Certificate&id=admin')).json as { items: Array<{ actor: string }> };
      assert.match(audit.items[0]?.actor ?? '', /^local:.*dmr centops init$/);
    });

    it('an admin issues an operator certificate from the operator’s CSR; recorded, audited, revocable', async () => {
      const key = await generatePrivateKey();
      const csr = (role: 'viewer' | 'admin', id = 'olga') =>
        createCsr({ id, kind: 'operator', role, trustDomain: TD, privateKeyPem: key });
      const issue = (body: unknown, credentials?: Credentials) =>
        api('/v1/operators/certificates', { ca, method: 'POST', body, credentials });

      const created = await issue({ id: 'olga', role: 'viewer', csr: await csr('viewer') });
      assert.equal(created.status, 201, created.text);
      const olga = created.json as { serial: string; kind: string; role: string; chain: string };
      assert.deepEqual([olga.kind, olga.role], ['operator', 'viewer']);
      const asOlga = { cert: olga.chain, key };
      assert.equal((await api('/v1/organisations', { ca, credentials: asOlga })).status, 200);
      const write = await api('/v1/organisations', {
        ca,
        credentials: asOlga,
        method: 'POST',
        body: organisation('olga-org'),
      });
      assert.equal(write.status, 403, 'the role in the certificate is viewer');

      // Only an admin; the CSR must ask for exactly this id and role; the key is never accepted.
      const ops = await server.ca.issueWithKey({ kind: 'operator', id: 'otto', role: 'operator' });
      const byOperator = await issue(
        { id: 'olga2', role: 'viewer', csr: await csr('viewer', 'olga2') },
        {
          cert: ops.chainPem,
          key: ops.privateKeyPem,
        },
      );
      assert.equal(byOperator.status, 403);
      const escalation = await issue({ id: 'olga', role: 'viewer', csr: await csr('admin') });
      assert.equal(escalation.status, 400, escalation.text);
      assert.equal(errorCode(escalation), 'CSR_MISMATCH');
      const otherId = await issue({ id: 'oleg', role: 'viewer', csr: await csr('viewer') });
      assert.equal(errorCode(otherId), 'CSR_MISMATCH');
      const withKey = await issue({ id: 'olga', role: 'viewer', csr: await csr('viewer'), key });
      assert.equal(withKey.status, 422);
      const withKeyProblems = (withKey.json as { error: { details: { problems: Array<{ path: string }> } } }).error
        .details.problems;
      assert.ok(withKeyProblems.some((problem) => problem.path === 'body.key'));

      const listed = (await api('/v1/certificates?kind=operator&id=olga')).json as {
        items: Array<{ serial: string; role: string }>;
      };
      assert.deepEqual(
        listed.items.map((record) => [record.serial, record.role]),
        [[olga.serial, 'viewer']],
      );
      const recorded = (await api('/v1/audit?kind=Certificate&id=olga&action=certificate.record')).json as {
        items: Array<{ actor: string; afterDigest: string | null; detail: { role?: string } }>;
      };
      assert.equal(recorded.items.length, 1);
      assert.equal(recorded.items[0]?.actor, `spiffe://${TD}/operator/admin`);
      assert.match(recorded.items[0]?.afterDigest ?? '', /^[0-9a-f]{64}$/);
      assert.equal(recorded.items[0]?.detail.role, 'viewer');

      const revoked = await api(`/v1/certificates/${olga.serial}/revoke`, {
        ca,
        method: 'POST',
        body: { reason: 'affiliationChanged' },
      });
      assert.equal(revoked.status, 200, revoked.text);
      assert.equal((revoked.json as { denylisted: boolean }).denylisted, false, 'a person is not denylisted');
      const record = (await api(`/v1/certificates/${olga.serial}`)).json as { revokedAt: string | null };
      assert.ok(record.revokedAt);
      const revocation = (await api('/v1/audit?kind=Certificate&id=olga&action=certificate.revoke')).json as {
        items: Array<{ beforeDigest: string; afterDigest: string }>;
      };
      assert.equal(revocation.items[0]?.beforeDigest, recorded.items[0]?.afterDigest);
      assert.notEqual(revocation.items[0]?.afterDigest, revocation.items[0]?.beforeDigest);
      assert.equal((await api('/v1/status', { ca, credentials: asOlga })).status, 401);

      // An operator certificate issued before the store recorded operators is recorded when it is revoked.
      const revokedOtto = await api(`/v1/certificates/${ops.serial}/revoke`, {
        ca,
        method: 'POST',
        body: { reason: 'affiliationChanged' },
      });
      assert.equal(revokedOtto.status, 200, revokedOtto.text);
      const otto = (await api(`/v1/certificates/${ops.serial}`)).json as { role: string; revokedAt: string | null };
      assert.deepEqual([otto.role, Boolean(otto.revokedAt)], ['operator', true]);

      // Renewal keeps the role and is recorded too.
      const adminKey = await generatePrivateKey();
      const renewal = await api('/v1/certificates/renew', {
        ca,
        method: 'POST',
        body: {
          csr: await createCsr({
            id: 'admin',
            kind: 'operator',
            role: 'admin',
            trustDomain: TD,
            privateKeyPem: adminKey,
          }),
        },
      });
      assert.equal(renewal.status, 201, renewal.text);
      const renewed = renewal.json as { serial: string; role: string };
      assert.equal(renewed.role, 'admin');
      assert.equal(((await api(`/v1/certificates/${renewed.serial}`)).json as { role: string }).role, 'admin');
    });

    it('denylist: any role reads it; an operator lifts an entry (audited, new revision); a viewer cannot', async () => {
      const listed = (await api('/v1/denylist')).json as { items: Array<{ id: string; kind: string }> };
      assert.ok(listed.items.some((entry) => entry.id === 'police-bot' && entry.kind === 'client'));
      const viewer = await server.ca.issueWithKey({ kind: 'operator', id: 'vicky', role: 'viewer' });
      const asViewer = { cert: viewer.chainPem, key: viewer.privateKeyPem };
      assert.equal((await api('/v1/denylist', { ca, credentials: asViewer })).status, 200);
      const refused = await api('/v1/denylist/police-bot', { ca, method: 'DELETE', credentials: asViewer });
      assert.equal(refused.status, 403);

      const operator = await server.ca.issueWithKey({ kind: 'operator', id: 'oona', role: 'operator' });
      const asOperator = { cert: operator.chainPem, key: operator.privateKeyPem };
      const before = ((await api('/v1/status')).json as { revision: number }).revision;
      const lifted = await api('/v1/denylist/police-bot', { ca, method: 'DELETE', credentials: asOperator });
      assert.equal(lifted.status, 204, lifted.text);
      const revision = ((await api('/v1/status')).json as { revision: number }).revision;
      assert.equal(revision, before + 1);
      const audit = (await api('/v1/audit?kind=Denylist&id=police-bot&action=denylist.remove')).json as {
        items: Array<{ actor: string; revision: number; beforeDigest: string | null; afterDigest: string | null }>;
      };
      assert.equal(audit.items.length, 1);
      assert.equal(audit.items[0]?.actor, `spiffe://${TD}/operator/oona`);
      assert.equal(audit.items[0]?.revision, revision);
      assert.match(audit.items[0]?.beforeDigest ?? '', /^[0-9a-f]{64}$/);
      assert.equal(audit.items[0]?.afterDigest, null);
      const again = await api('/v1/denylist/police-bot', { ca, method: 'DELETE', credentials: asOperator });
      assert.equal(again.status, 404);
      assert.ok(
        !((await api('/v1/denylist')).json as { items: Array<{ id: string }> }).items.some(
          (e) => e.id === 'police-bot',
        ),
      );

      const reEnrol = await enrolAs('police-bot', 'client', await token('police-bot'));
      assert.equal(reEnrol.status, 201, 'once lifted, the id may enrol again');
    });

    it('operator add (offline) writes credentials that work against the running CentOps and records them', async () => {
      const result = await addOperator({
        dir: centops.centopsDir,
        id: 'oscar',
        role: 'operator',
        outDir: join(centops.dir, 'oscar'),
      });
      const config = await loadClientConfig(result.config);
      const credentials = {
        cert: await readFile(config.clientCertificate, 'utf8'),
        key: await readFile(config.clientKey, 'utf8'),
      };
      const bundle = await readFile(config.caBundle, 'utf8');
      const status = await call(`${server.apiUrl}/v1/status`, { ca: bundle, credentials });
      assert.equal(status.status, 200, status.text);
      const record = (await api(`/v1/certificates/${result.serial}`)).json as { id: string; role: string };
      assert.deepEqual([record.id, record.role], ['oscar', 'operator']);
      const audit = (await api('/v1/audit?kind=Certificate&id=oscar')).json as {
        items: Array<{ actor: string; action: string }>;
      };
      assert.deepEqual(
        audit.items.map((entry) => entry.action),
        ['certificate.record'],
      );
      assert.match(audit.items[0]?.actor ?? '', /^local:.*operator add$/);
    });
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
