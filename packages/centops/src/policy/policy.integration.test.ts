/**
 * Policies in CentOps over the real mTLS API, on SQLite and PostgreSQL:
 * the default pack seeded at init; a change with a failing Rego test (or a
 * strict-check failure) refused with OPA's output and nothing changed; an
 * accepted change producing a new signed bundle that @dmr/policy's engine
 * verifies and activates; ETag / If-None-Match; who may do what.
 */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { PolicyEngine, parseBundle, policySignerSpiffeId } from '@dmr/policy';
import { postgresBackend, sqliteBackend, type Backend } from '../store/test-support/backends.js';
import { TD, errorOf, samplePolicyInput, startPolicyCentOps, type PolicyCentOps } from './test-support.js';

type Files = Record<string, string>;
interface PolicyBody {
  version: number;
  registryRevision: number;
  digest: string;
  bundle: { revision: string; digest: string };
  files: Files;
}

const FAILING_TEST = `
test_deliberately_wrong if {
	authz.decision.allow with input as msg("ria", "ppa", "ChatMessage", 10)
}
`;

function suite(backend: Backend): void {
  describe(`policies in CentOps on ${backend.name}`, { skip: backend.skip }, () => {
    let centops: PolicyCentOps;
    let seeded: PolicyBody;

    const revision = async () => ((await centops.api('/v1/status')).json as { revision: number }).revision;
    const policy = async () => (await centops.api('/v1/policy')).json as PolicyBody;
    const put = (files: Files, headers: Record<string, string> = {}, query = '') =>
      centops.api(`/v1/policy${query}`, { method: 'PUT', body: { files }, headers });

    before(async () => {
      await backend.setup();
      centops = await startPolicyCentOps(backend);
      seeded = await policy();
    });
    after(async () => {
      await centops?.close();
      await backend.teardown();
    });

    it('init seeds the default pack as version 1 (Rego, data and tests), without a registry revision', async () => {
      const response = await centops.api('/v1/policy');
      assert.equal(response.status, 200, response.text);
      assert.equal(response.headers.etag, '"1"');
      assert.equal(seeded.version, 1);
      assert.equal(seeded.registryRevision, 0);
      assert.equal(seeded.bundle.revision, '1');
      assert.match(seeded.bundle.digest, /^sha256:[0-9a-f]{64}$/);
      for (const path of ['dmr/authz/decision.rego', 'dmr/authz/decision_test.rego', 'dmr/data.json']) {
        assert.ok(path in seeded.files, `${path} is in the seeded set`);
      }
    });

    it('refuses a change whose Rego test fails: 422 with OPA’s output, nothing changed', async () => {
      const before = await revision();
      const files = { ...seeded.files };
      files['dmr/authz/decision_test.rego'] = `${files['dmr/authz/decision_test.rego']}${FAILING_TEST}`;
      const refused = await put(files);
      assert.equal(refused.status, 422, refused.text);
      const error = errorOf(refused);
      assert.equal(error.code, 'POLICY_INVALID');
      const output = String(error.details?.output ?? '');
      assert.match(output, /test_deliberately_wrong/, output);
      assert.match(output, /FAIL/, output);

      assert.equal(await revision(), before, 'the registry revision is unchanged');
      const now = await policy();
      assert.equal(now.version, seeded.version);
      assert.equal(now.digest, seeded.digest);
      assert.equal(now.bundle.digest, seeded.bundle.digest);
      const audit = (await centops.api('/v1/audit?action=policy.update&limit=1000')).json as { items: unknown[] };
      assert.equal(audit.items.length, 1, 'only the seed is audited');
    });

    it('refuses Rego that fails opa check --strict, and malformed sets with every problem', async () => {
      const unused = { ...seeded.files, 'dmr/extra/extra.rego': 'package dmr.extra\n\nx if {\n\ty := 1\n}\n' };
      const strict = await put(unused);
      assert.equal(strict.status, 422, strict.text);
      assert.equal(errorOf(strict).code, 'POLICY_INVALID');
      assert.match(String(errorOf(strict).details?.output ?? ''), /unused|assigned/i);

      const malformed = await put({ '../escape.rego': 'package x', 'notes.txt': 'hi', 'dmr/data.json': '[1]' });
      assert.equal(malformed.status, 422, malformed.text);
      assert.equal(errorOf(malformed).code, 'VALIDATION_FAILED');
      const problems = errorOf(malformed).details?.problems as Array<{ path: string }>;
      assert.ok(problems.length >= 3, JSON.stringify(problems));
      assert.equal((await policy()).version, seeded.version);
    });

    it('POST /v1/policy/test runs check and tests and stores nothing', async () => {
      const ok = await centops.api('/v1/policy/test', { method: 'POST', body: { files: seeded.files } });
      assert.equal(ok.status, 200, ok.text);
      const report = ok.json as { passed: number; failed: number };
      assert.ok(report.passed > 10, ok.text);
      assert.equal(report.failed, 0);
      const files = { ...seeded.files };
      files['dmr/authz/decision_test.rego'] = `${files['dmr/authz/decision_test.rego']}${FAILING_TEST}`;
      const failed = await centops.api('/v1/policy/test', { method: 'POST', body: { files } });
      assert.equal(failed.status, 422);
      assert.match(String(errorOf(failed).details?.output), /test_deliberately_wrong/);
    });

    it('an accepted change is a new version and revision, and a signed bundle the node engine verifies and activates', async () => {
      const engine = new PolicyEngine({
        verification: { trustBundlePem: centops.ca, expectedSigner: policySignerSpiffeId(TD) },
      });
      const first = await centops.api('/v1/policy/bundle', { credentials: centops.node });
      assert.equal(first.status, 200);
      assert.equal(first.headers['content-type'], 'application/gzip');
      const firstBundle = Buffer.from(await fetchBinary(centops, centops.node));
      await engine.swap(firstBundle);
      assert.equal(engine.activeRevision, '1');
      assert.deepEqual(engine.evaluate(samplePolicyInput('sk', 'rik')), {
        allow: false,
        reasons: ['NO_GRANT'],
        revision: '1',
      });

      const before = await revision();
      const data = JSON.parse(seeded.files['dmr/data.json'] ?? '{}') as { grants: unknown[] };
      data.grants.push({ from: 'sk', to: 'rik' });
      const files = { ...seeded.files, 'dmr/data.json': `${JSON.stringify(data, null, 2)}\n` };

      const dry = await put(files, {}, '?dryRun=true');
      assert.equal(dry.status, 200, dry.text);
      assert.equal((dry.json as { changed: boolean }).changed, false);
      assert.equal((await policy()).version, 1, 'a dry run stores nothing');

      const stale = await put(files, { 'if-match': '"7"' });
      assert.equal(stale.status, 412, stale.text);

      const accepted = await put(files, { 'if-match': '"1"' });
      assert.equal(accepted.status, 200, accepted.text);
      const result = accepted.json as { changed: boolean; policy: PolicyBody; tests: { passed: number } };
      assert.equal(result.changed, true);
      assert.equal(result.policy.version, 2);
      assert.equal(accepted.headers.etag, '"2"');
      assert.ok(result.tests.passed > 10);
      assert.equal(await revision(), before + 1, 'the registry revision moves on once');
      assert.equal(result.policy.registryRevision, before + 1);

      const again = await put(files);
      assert.equal((again.json as { changed: boolean }).changed, false, 'the same files are no change');
      assert.equal(await revision(), before + 1);

      const archive = await fetchBinary(centops, centops.node);
      assert.equal(parseBundle(archive).revision, '2');
      const swapped = await engine.swap(archive);
      assert.equal(swapped.activated, true);
      assert.equal(swapped.signer?.uri, policySignerSpiffeId(TD));
      assert.deepEqual(engine.evaluate(samplePolicyInput('sk', 'rik')), {
        allow: true,
        reasons: ['GRANT'],
        revision: '2',
      });
      await assert.rejects(engine.swap(firstBundle), /older|revision/i, 'the older bundle is refused');
      await engine.close();

      const audit = (await centops.api('/v1/audit?action=policy.update&kind=PolicySet&limit=1000')).json as {
        items: Array<{ actor: string; revision: number | null; beforeDigest: string; afterDigest: string }>;
      };
      const last = audit.items.at(-1);
      assert.equal(last?.actor, `spiffe://${TD}/operator/admin`);
      assert.equal(last?.revision, before + 1);
      assert.equal(last?.beforeDigest, seeded.digest);
      assert.equal(last?.afterDigest, result.policy.digest);

      const old = await centops.api('/v1/policy?version=1');
      assert.equal((old.json as PolicyBody).digest, seeded.digest, 'older versions stay readable');
    });

    it('serves the bundle with an ETag; If-None-Match answers 304 until it changes', async () => {
      const first = await centops.api('/v1/policy/bundle');
      assert.equal(first.status, 200);
      const tag = String(first.headers.etag);
      assert.match(tag, /^"sha256:[0-9a-f]{64}"$/);
      assert.equal(first.headers['x-dmr-policy-revision'], String((await policy()).version));
      const same = await centops.api('/v1/policy/bundle', { headers: { 'if-none-match': tag } });
      assert.equal(same.status, 304);
      assert.equal(same.text, '');
      const other = await centops.api('/v1/policy/bundle', { headers: { 'if-none-match': '"sha256:00"' } });
      assert.equal(other.status, 200);
    });

    it('the node configuration names the active bundle: revision, digest (= the bundle ETag) and where', async () => {
      const response = await centops.api('/v1/nodes/dmr-tallinn/config', { credentials: centops.node });
      assert.equal(response.status, 200, response.text);
      const payload = JSON.parse(Buffer.from(response.text.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
        revision: number;
        policy?: { revision: string; digest: string; bundle: string };
      };
      const current = await policy();
      assert.deepEqual(payload.policy, {
        revision: String(current.version),
        digest: current.bundle.digest,
        bundle: '/v1/policy/bundle',
      });
      const bundle = await centops.api('/v1/policy/bundle', { credentials: centops.node });
      assert.equal(bundle.headers.etag, `"${current.bundle.digest}"`);
      assert.equal(payload.revision, await revision());
    });

    it('authorization: viewers read but cannot write; nodes read the bundle only; clients nothing', async () => {
      const viewer = centops.viewer;
      assert.equal((await centops.api('/v1/policy', { credentials: viewer })).status, 200);
      assert.equal((await centops.api('/v1/policy/bundle', { credentials: viewer })).status, 200);
      const write = await centops.api('/v1/policy', {
        method: 'PUT',
        body: { files: seeded.files },
        credentials: viewer,
      });
      assert.equal(write.status, 403, write.text);
      assert.equal(errorOf(write).code, 'FORBIDDEN');
      const test = await centops.api('/v1/policy/test', {
        method: 'POST',
        body: { files: seeded.files },
        credentials: viewer,
      });
      assert.equal(test.status, 403);

      assert.equal((await centops.api('/v1/policy', { credentials: centops.node })).status, 403);
      assert.equal((await centops.api('/v1/policy/bundle', { credentials: centops.node })).status, 200);
      const client = await centops.api('/v1/policy/bundle', { credentials: centops.client });
      assert.equal(client.status, 403, client.text);
      assert.equal((await centops.api('/v1/policy', { credentials: centops.client })).status, 403);
    });
  });
}

/** The bundle as bytes (the shared test client decodes bodies as text). */
async function fetchBinary(centops: PolicyCentOps, credentials: { cert: string; key: string }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${centops.server.apiUrl}/v1/policy/bundle`,
      { ca: centops.ca, cert: credentials.cert, key: credentials.key, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`status ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

suite(sqliteBackend());
suite(await postgresBackend());
