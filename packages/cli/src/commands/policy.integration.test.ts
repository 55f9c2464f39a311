/**
 * `dmr policy check | test | eval | build` with the real (pinned) opa on
 * copies of the default pack, and `--centops` / `dmr ctl policy` against a
 * real CentOps (mTLS, SQLite) started in this process. The CLI runs in this
 * process (runDmrInProcess: a child costs a Node start and the group's
 * imports, docs/decisions/0038-ci-time.md); a refusal of each group is also
 * run as a real child (asynchronously: the server shares this event loop),
 * for the binary's exit code and report.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { defaultPackDir, type CentOpsServer } from '@dmr/centops';
import { samplePolicyInput, startEmptyCentOps, type EmptyCentOps } from '@dmr/testkit';
import { CertificateAuthority } from '@dmr/pki';
import { dmrCli, runDmrInProcess, words, type DmrRun as Run } from '../test-support.js';

const TD = 'dmr.test';
const SIGNER = `spiffe://${TD}/centops/policy-signer`;

let cwd = '';
const { dmr, ok, json } = dmrCli(() => ({ cwd }), runDmrInProcess);
const spawned = dmrCli(() => ({ cwd }));

async function refused(code: string, exit: number, args: string[], via = dmr): Promise<Run> {
  const run = await via(...args);
  assert.equal(run.status, exit, `dmr ${args.join(' ')} should exit ${exit}\n${run.stderr}`);
  assert.match(run.stderr, new RegExp(`^error\\[${code}\\]: `), run.stderr);
  return run;
}

const FAILING_TEST = `
test_deliberately_wrong if {
	authz.decision.allow with input as msg("ria", "ppa", "ChatMessage", 10)
}
`;

/** A copy of the default pack under `name`, optionally changed. */
async function pack(name: string, change?: (dir: string) => Promise<void>): Promise<string> {
  const dir = join(cwd, name);
  await cp(defaultPackDir(), dir, { recursive: true });
  await change?.(dir);
  return name;
}

async function addGrant(dir: string, grant: Record<string, unknown>): Promise<void> {
  const file = join(dir, 'dmr', 'data.json');
  const data = JSON.parse(await readFile(file, 'utf8')) as { grants: unknown[] };
  data.grants.push(grant);
  await writeFile(file, JSON.stringify(data, null, 2));
}

async function appendFailingTest(dir: string): Promise<void> {
  const file = join(dir, 'dmr', 'authz', 'decision_test.rego');
  await writeFile(file, `${await readFile(file, 'utf8')}${FAILING_TEST}`);
}

describe('dmr policy on local files (real opa)', () => {
  before(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dmr-cli-policy-'));
    await pack('good');
    await pack('failing', appendFailingTest);
    await pack('unstrict', (dir) => writeFile(join(dir, 'dmr', 'x.rego'), 'package dmr.x\n\nx if {\n\ty := 1\n}\n'));
    await writeFile(join(cwd, 'same-org.json'), JSON.stringify(samplePolicyInput('ria', 'ria')));
    await writeFile(join(cwd, 'no-grant.json'), JSON.stringify(samplePolicyInput('sk', 'rik')));
    await writeFile(join(cwd, 'broken.json'), JSON.stringify({ sender: { id: 'a-bot' } }));
    const ca = await CertificateAuthority.init(join(cwd, 'ca'), { trustDomain: TD });
    const signer = await ca.issueWithKey({ kind: 'centops', id: 'policy-signer' });
    await writeFile(join(cwd, 'signer.crt'), signer.chainPem);
    await writeFile(join(cwd, 'signer.key'), signer.privateKeyPem, { mode: 0o600 });
    await writeFile(join(cwd, 'root.crt'), ca.rootCertificatePem);
  });
  after(async () => {
    await rm(cwd, { recursive: true, force: true });
  });

  it('check: passes the default pack; refuses non-strict Rego with opa’s output (exit 12)', async () => {
    assert.match((await ok('policy', 'check', '--dir', 'good')).stdout, /^ok: good passes opa check --strict/);
    assert.deepEqual(await json('policy', 'check', '--dir', 'good'), { dir: 'good', ok: true });
    const run = await refused('POLICY_INVALID', 12, ['policy', 'check', '--dir', 'unstrict'], spawned.dmr);
    assert.match(run.stderr, /x\.rego/);
    const jsonRun = await dmr('-o', 'json', 'policy', 'check', '--dir', 'unstrict');
    assert.equal(jsonRun.status, 12);
    const { error } = JSON.parse(jsonRun.stderr) as { error: { code: string; details: { output: string } } };
    assert.equal(error.code, 'POLICY_INVALID');
    assert.match(error.details.output, /x\.rego/);
  });

  it('test: reports every passing test; a failing one exits 12 with opa’s verbose output', async () => {
    const text = await ok('policy', 'test', '--dir', 'good');
    assert.match(text.stdout, /^PASS: (\d+)\/\1$/m);
    const report = await json<{ passed: number; failed: number; tests: unknown[] }>('policy', 'test', '--dir', 'good');
    assert.ok(report.passed > 10);
    assert.equal(report.failed, 0);
    assert.equal(report.tests.length, report.passed);
    const run = await refused('POLICY_INVALID', 12, ['policy', 'test', '--dir', 'failing']);
    assert.match(run.stderr, /test_deliberately_wrong/);
    assert.match(run.stderr, /FAIL/);
  });

  it('eval: allow and deny with reasons; broken input is INPUT_INVALID with the problems', async () => {
    const allow = await ok('policy', 'eval', '--dir', 'good', '--input', 'same-org.json');
    assert.match(allow.stdout, /^decision: +allow$/m);
    assert.match(allow.stdout, /^reasons: +SAME_ORGANISATION$/m);
    const deny = await json<{ allow: boolean; reasons: string[]; problems: unknown[] }>(
      'policy',
      'eval',
      '--dir',
      'good',
      '--input',
      'no-grant.json',
    );
    assert.equal(deny.allow, false, 'a deny is a decision, not an error (exit 0)');
    assert.deepEqual(deny.reasons, ['NO_GRANT']);
    assert.deepEqual(deny.problems, []);
    const broken = await json<{ allow: boolean; reasons: string[]; problems: unknown[] }>(
      'policy',
      'eval',
      '--dir',
      'good',
      '--input',
      'broken.json',
    );
    assert.deepEqual(broken.reasons, ['INPUT_INVALID']);
    assert.ok(broken.problems.length > 0);
  });

  it('build: a signed bundle that eval verifies; a wrong signer or an existing --out is refused', async () => {
    const built = await json<{ out: string; revision: string; signed: boolean; files: string[] }>(
      'policy',
      'build',
      '--dir',
      'good',
      '--out',
      'b.tar.gz',
      '--revision',
      '7',
      '--signing-key',
      'signer.key',
      '--signing-cert',
      'signer.crt',
    );
    assert.equal(built.revision, '7');
    assert.equal(built.signed, true);
    assert.ok(built.files.includes('/policy.wasm'));
    assert.ok(built.files.includes('/.signatures.json'));
    assert.ok(!built.files.some((file) => file.endsWith('_test.rego')), 'tests stay out of the bundle');
    assert.ok((await stat(join(cwd, 'b.tar.gz'))).size > 0);

    const decision = await json<{ allow: boolean; revision: string }>(
      'policy',
      'eval',
      '--bundle',
      'b.tar.gz',
      '--trust-bundle',
      'root.crt',
      '--signer',
      SIGNER,
      '--input',
      'same-org.json',
    );
    assert.equal(decision.allow, true);
    assert.equal(decision.revision, '7');
    const wrong = await refused(
      'POLICY_BUNDLE_INVALID',
      12,
      words(
        `policy eval --bundle b.tar.gz --trust-bundle root.crt --signer spiffe://${TD}/centops/config-signer --input same-org.json`,
      ),
    );
    assert.match(wrong.stderr, /signer/);
    await refused('ALREADY_EXISTS', 4, ['policy', 'build', '--dir', 'good', '--out', 'b.tar.gz']);
    await refused('POLICY_INVALID', 12, ['policy', 'build', '--dir', 'failing', '--out', 'f.tar.gz']);
    await assert.rejects(stat(join(cwd, 'f.tar.gz')), /ENOENT/, 'a failing pack builds nothing');
  });
});

describe('dmr policy --centops and dmr ctl policy against a real CentOps', () => {
  let centops: EmptyCentOps | undefined;
  let server: CentOpsServer;
  let admin = '';
  let viewer = '';

  before(async () => {
    centops = await startEmptyCentOps({ label: 'cli-policy-centops', trustDomain: TD, server: { pollIntervalMs: 50 } });
    ({ dir: cwd, server } = centops);
    const { centopsDir } = centops;
    const write = async (name: string, fields: Record<string, unknown>) => {
      const file = join(cwd, name);
      const document = { apiVersion: 'dmr/v1', kind: 'CentOpsClientConfig', endpoint: server.apiUrl, ...fields };
      await writeFile(file, stringify(document), { mode: 0o600 });
      return file;
    };
    admin = await write('admin.yaml', {
      caBundle: join(centopsDir, 'ca/root.crt'),
      clientCertificate: join(`${centopsDir}-admin`, 'admin.crt'),
      clientKey: join(`${centopsDir}-admin`, 'admin.key'),
    });
    const vera = await server.ca.issueWithKey({ kind: 'operator', id: 'vera', role: 'viewer' });
    await writeFile(join(cwd, 'vera.crt'), vera.chainPem);
    await writeFile(join(cwd, 'vera.key'), vera.privateKeyPem, { mode: 0o600 });
    viewer = await write('viewer.yaml', {
      caBundle: join(centopsDir, 'ca/root.crt'),
      clientCertificate: 'vera.crt',
      clientKey: 'vera.key',
    });
    await writeFile(join(cwd, 'no-grant.json'), JSON.stringify(samplePolicyInput('sk', 'rik')));
    await pack('granted', (dir) => addGrant(dir, { from: 'sk', to: 'rik' }));
    await pack('failing', appendFailingTest);
  });
  after(async () => {
    await centops?.close();
  });

  it('test/check --centops run on the seeded policy set; eval --centops on its verified bundle', async () => {
    const report = await json<{ passed: number; centops: { version: number } }>(
      'policy',
      'test',
      '--centops',
      '--config',
      admin,
    );
    assert.ok(report.passed > 10);
    assert.equal(report.centops.version, 1);
    assert.match((await ok('policy', 'check', '--centops', '--config', viewer)).stdout, /CentOps policy version 1/);
    const decision = await json<{ allow: boolean; reasons: string[]; revision: string }>(
      'policy',
      'eval',
      '--centops',
      '--config',
      viewer,
      '--input',
      'no-grant.json',
    );
    assert.deepEqual([decision.allow, decision.reasons, decision.revision], [false, ['NO_GRANT'], '1']);
  });

  it('ctl policy apply: a failing Rego test is refused with opa’s output; a passing change is a new bundle', async () => {
    const failed = await refused('POLICY_INVALID', 12, ['ctl', '--config', admin, 'policy', 'apply', 'failing']);
    assert.match(failed.stderr, /test_deliberately_wrong/);
    const forbidden = await refused(
      'FORBIDDEN',
      9,
      ['ctl', '--config', viewer, 'policy', 'apply', 'granted'],
      spawned.dmr,
    );
    assert.match(forbidden.stderr, /viewer/);

    const dry = await json<{ changed: boolean; dryRun: boolean }>(
      'ctl',
      '--config',
      admin,
      'policy',
      'apply',
      'granted',
      '--dry-run',
    );
    assert.deepEqual([dry.changed, dry.dryRun], [false, true]);
    const applied = await ok('ctl', '--config', admin, 'policy', 'apply', 'granted', '--if-version', '1');
    assert.match(applied.stdout, /^result: +applied$/m);
    assert.match(applied.stdout, /^version: +2$/m);
    const again = await ok('ctl', '--config', admin, 'policy', 'apply', 'granted');
    assert.match(again.stdout, /unchanged/);
    await refused('PRECONDITION_FAILED', 4, [
      'ctl',
      '--config',
      admin,
      ...words('policy apply granted --if-version 1'),
    ]);

    const decision = await json<{ allow: boolean; reasons: string[]; revision: string }>(
      'policy',
      'eval',
      '--centops',
      '--config',
      admin,
      '--input',
      'no-grant.json',
    );
    assert.deepEqual([decision.allow, decision.reasons, decision.revision], [true, ['GRANT'], '2']);

    const got = await json<{ version: number; files: Record<string, string> }>(
      'ctl',
      '--config',
      viewer,
      'policy',
      'get',
      '--out-dir',
      'fetched',
    );
    assert.equal(got.version, 2);
    const data = JSON.parse(await readFile(join(cwd, 'fetched', 'dmr', 'data.json'), 'utf8')) as { grants: unknown[] };
    assert.deepEqual(data.grants.at(-1), { from: 'sk', to: 'rik' });
    const old = await json<{ version: number }>('ctl', '--config', viewer, 'policy', 'get', '--policy-version', '1');
    assert.equal(old.version, 1);

    const bundle = await json<{ revision: string; bytes: number }>(
      'ctl',
      '--config',
      viewer,
      'policy',
      'bundle',
      '--out',
      'current.tar.gz',
    );
    assert.equal(bundle.revision, '2');
    assert.equal((await stat(join(cwd, 'current.tar.gz'))).size, bundle.bytes);
  });
});
