/**
 * The enrolment listener as an attacker meets it (the listener is reachable
 * without a client certificate, so it is the exposed surface), over
 * real TLS against a real CentOps on SQLite and PostgreSQL: the token is
 * checked before anything else and every token failure is one generic 401;
 * a mistake found after the token check does not spend the token; bodies
 * are capped at 64 KiB; each source address and each id's renewals have a
 * budget. The clock of the store and the certificate service is moved by
 * the test, never waited for.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { KeyAlgorithm } from '@dmr/pki';
import { postgresBackend, sqliteBackend, type Backend } from '../store/test-support/backends.js';
import { client, node, organisation } from '../store/test-support/fixtures.js';
import { startEmptyCentOps, type EmptyCentOps, type TestCallOptions } from './test-support/empty-centops.js';
import { call, type Credentials, type Response } from './test-support/https.js';

const TD = 'dmr.test';
const ACTOR = `spiffe://${TD}/operator/admin`;
const ENROL_PER_MINUTE = 40;
const RENEWALS_PER_HOUR = 3;

function errorOf(response: Response): { code?: string; message?: string; details?: Record<string, unknown> } {
  return ((response.json as { error?: object } | undefined)?.error ?? {}) as {
    code?: string;
    message?: string;
    details?: Record<string, unknown>;
  };
}

function suite(backend: Backend): void {
  describe(`enrolment listener hardening on ${backend.name}`, { skip: backend.skip }, () => {
    let centops: EmptyCentOps;
    let skewMs = 0;
    const now = () => new Date(Date.now() + skewMs);
    const enrol = (body: unknown) =>
      call(`${centops.server.enrolUrl}/v1/enroll`, { ca: centops.rootPem, method: 'POST', body });
    const api = (path: string, options: TestCallOptions = {}) => centops.api(path, options);
    const token = (id: string) => centops.token(id);

    async function csrFor(
      id: string,
      kind: 'client' | 'node',
      algorithm: KeyAlgorithm = 'ecdsa-p256',
    ): Promise<{ csr: string; key: string }> {
      return centops.csr(id, { kind, algorithm, dns: kind === 'node' ? [`${id}.dmr.example.ee`] : [] });
    }

    before(async () => {
      await backend.setup();
      centops = await startEmptyCentOps({
        label: 'centops-enrol',
        trustDomain: TD,
        database: await backend.fresh(),
        configure: (config) => {
          config.limits = { enrolRequestsPerMinute: ENROL_PER_MINUTE, renewalsPerHour: RENEWALS_PER_HOUR };
        },
        storeNow: now,
        server: { now },
      });
      await centops.store.create('Organisation', organisation('police'), ACTOR);
      await centops.store.create('Node', node('dmr-tallinn'), ACTOR);
      await centops.store.create('Client', client('police-bot', 'police', 'dmr-tallinn'), ACTOR);
      await centops.store.create(
        'Client',
        client('sleepy-bot', 'police', 'dmr-tallinn', { status: 'suspended' }),
        ACTOR,
      );
      await centops.store.create('Client', client('banned-bot', 'police', 'dmr-tallinn'), ACTOR);
      await centops.store.addToDenylist({ id: 'banned-bot', kind: 'client', reason: 'test' }, ACTOR);
    });
    after(async () => {
      await centops?.close();
      await backend.teardown();
    });

    it('without a usable token every enrolment gets the same 401, whatever the id is', async () => {
      const used = await token('police-bot');
      const first = await csrFor('police-bot', 'client');
      assert.equal((await enrol({ token: used, csr: first.csr })).status, 201);
      const tokens = ['dmrbt_not-a-token', 'no-prefix-at-all', used];
      const ids: Array<[string, 'client' | 'node']> = [
        ['police-bot', 'client'], // registered and active
        ['sleepy-bot', 'client'], // suspended
        ['banned-bot', 'client'], // denylisted
        ['nobody-here', 'client'], // not registered
        ['dmr-tallinn', 'node'],
      ];
      const answers = new Set<string>();
      for (const secret of tokens) {
        for (const [id, kind] of ids) {
          const { csr } = await csrFor(id, kind);
          const answer = await enrol({ token: secret, csr });
          assert.equal(answer.status, 401, `${id} with ${secret.slice(0, 10)}: ${answer.text}`);
          answers.add(answer.text);
        }
        const malformed = await enrol({ token: secret, csr: 'not a CSR' });
        assert.equal(malformed.status, 401, malformed.text);
        answers.add(malformed.text);
      }
      assert.equal(answers.size, 1, `one generic answer, got: ${[...answers].join(' | ')}`);
      const [only] = [...answers];
      const body = JSON.parse(only as string) as { error: { code: string; details: Record<string, unknown> } };
      assert.equal(body.error.code, 'TOKEN_INVALID');
      assert.deepEqual(body.error.details, {}, 'no reason, id or status is named');
    });

    it('a CSR for another id or with the wrong key algorithm is refused before the token is spent', async () => {
      const secret = await token('dmr-tallinn');
      const otherId = await csrFor('police-bot', 'client');
      const wrongId = await enrol({ token: secret, csr: otherId.csr });
      assert.equal(wrongId.status, 400, wrongId.text);
      assert.equal(errorOf(wrongId).code, 'CSR_MISMATCH');

      const p384 = await csrFor('dmr-tallinn', 'node', 'ecdsa-p384');
      const wrongKey = await enrol({ token: secret, csr: p384.csr });
      assert.equal(wrongKey.status, 400, wrongKey.text);
      assert.equal(errorOf(wrongKey).code, 'CSR_MISMATCH');
      assert.deepEqual(errorOf(wrongKey).details, { csrKey: 'ecdsa-p384', profileKey: 'ecdsa-p256' });

      const tokens = await api('/v1/tokens?id=dmr-tallinn');
      const listed = (tokens.json as { items: Array<{ usedAt: string | null }> }).items;
      assert.ok(
        listed.every((item) => item.usedAt === null),
        'the token is still unused',
      );
      const right = await csrFor('dmr-tallinn', 'node');
      const enrolled = await enrol({ token: secret, csr: right.csr });
      assert.equal(enrolled.status, 201, enrolled.text);
    });

    it('a token for a suspended client names the problem only to its holder, and stays unspent', async () => {
      const secret = await token('sleepy-bot');
      const { csr } = await csrFor('sleepy-bot', 'client');
      const refused = await enrol({ token: secret, csr });
      assert.equal(refused.status, 403, refused.text);
      assert.match(errorOf(refused).message ?? '', /suspended/);
      await centops.store.update('Client', client('sleepy-bot', 'police', 'dmr-tallinn'), ACTOR);
      assert.equal((await enrol({ token: secret, csr })).status, 201);
    });

    it('renewals are limited per id in the store, and allowed again an hour later', async () => {
      const secret = await token('police-bot');
      const first = await csrFor('police-bot', 'client');
      const enrolled = await enrol({ token: secret, csr: first.csr });
      assert.equal(enrolled.status, 201, enrolled.text);
      let credentials: Credentials = { cert: (enrolled.json as { chain: string }).chain, key: first.key };
      // police-bot already has certificates from the tests before: count what is left of its hour.
      const since = new Date(now().getTime() - 3_600_000);
      const left = RENEWALS_PER_HOUR - (await centops.store.countCertificatesSince('client', 'police-bot', since));
      for (let attempt = 0; attempt < left; attempt++) {
        const next = await csrFor('police-bot', 'client');
        const renewed = await api('/v1/certificates/renew', { method: 'POST', body: { csr: next.csr }, credentials });
        assert.equal(renewed.status, 201, renewed.text);
        credentials = { cert: (renewed.json as { chain: string }).chain, key: next.key };
      }
      const more = await csrFor('police-bot', 'client');
      const limited = await api('/v1/certificates/renew', { method: 'POST', body: { csr: more.csr }, credentials });
      assert.equal(limited.status, 429, limited.text);
      assert.equal(errorOf(limited).code, 'RATE_LIMITED');
      assert.equal(errorOf(limited).details?.limit, RENEWALS_PER_HOUR);

      skewMs = 61 * 60_000;
      try {
        const later = await api('/v1/certificates/renew', { method: 'POST', body: { csr: more.csr }, credentials });
        assert.equal(later.status, 201, later.text);
      } finally {
        skewMs = 0;
      }
    });

    it('bodies over 64 KiB are refused before they are parsed', async () => {
      const big = await enrol({ token: 'dmrbt_x', csr: 'A'.repeat(70 * 1024) });
      assert.equal(big.status, 413, big.text);
      assert.equal(errorOf(big).code, 'REQUEST_TOO_LARGE');
      const small = await enrol({ token: 'dmrbt_x', csr: 'A'.repeat(1024) });
      assert.equal(small.status, 401, 'a body under the limit reaches the token check');
    });

    // Last: it spends this source's budget for the minute.
    it('each source address has a budget of requests per minute on the enrolment listener', async () => {
      const answers: number[] = [];
      for (let i = 0; i < ENROL_PER_MINUTE + 2; i++) {
        answers.push((await call(`${centops.server.enrolUrl}/v1/pki/trust-bundle`, { ca: centops.rootPem })).status);
      }
      const limited = await enrol({ token: 'dmrbt_x', csr: 'x' });
      assert.equal(limited.status, 429, limited.text);
      assert.equal(errorOf(limited).code, 'RATE_LIMITED');
      assert.ok(Number(errorOf(limited).details?.retryAfterSeconds) > 0);
      assert.ok(limited.headers['retry-after'] !== undefined);
      assert.ok(answers.includes(429), 'the public documents count too');
      // The mutual-TLS API has no such budget: authenticated callers are limited per id instead.
      assert.equal((await api('/v1/status')).status, 200);
    });
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
