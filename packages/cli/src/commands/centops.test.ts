import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runDmr, runDmrInProcess, words } from '../test-support.js';

// In process: a `dmr centops` child costs a Node start and CentOps' imports, and this file ran 12
// (docs/decisions/0038-ci-time.md). The first init and one refusal stay real children for the
// binary's files, exit code and streams.
function dmr(cwd: string, ...args: string[]) {
  return runDmrInProcess(args, { cwd });
}

function spawned(cwd: string, ...args: string[]) {
  return runDmr(args, { cwd });
}

describe('dmr centops init', () => {
  let cwd: string;
  before(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dmr-cli-centops-'));
  });
  after(() => rm(cwd, { recursive: true, force: true }));

  it('--dev makes database, CA without the root key, server/signer/admin certificates and admin.yaml; keys 0600', async () => {
    const run = await spawned(
      cwd,
      '-o',
      'json',
      'centops',
      'init',
      '--dir',
      'c',
      '--dev',
      '--trust-domain',
      'dmr.test',
    );
    assert.equal(run.status, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { trustDomain: string; admin: { id: string } };
    assert.equal(result.trustDomain, 'dmr.test');
    assert.equal(result.admin.id, 'admin');
    assert.deepEqual((await readdir(join(cwd, 'c', 'ca'))).sort(), [
      'ca.json',
      'intermediate.crt',
      'intermediate.key',
      'root.crt',
    ]);
    for (const key of [
      'tls/api.key',
      'signer/config-signer.key',
      'signer/policy-signer.key',
      'ca/intermediate.key',
      'centops.db',
    ]) {
      assert.equal((await stat(join(cwd, 'c', key))).mode & 0o777, 0o600, key);
    }
    // The first admin's credentials are handed over from beside the CentOps directory, never kept in it.
    await assert.rejects(stat(join(cwd, 'c', 'admin')));
    assert.equal((await stat(join(cwd, 'c-admin', 'admin.key'))).mode & 0o777, 0o600);
    const config = await readFile(join(cwd, 'c-admin', 'admin.yaml'), 'utf8');
    assert.match(config, /^endpoint: https:\/\/127\.0\.0\.1:8443$/m);
    assert.match(config, /^clientCertificate: admin\.crt$/m);
  });

  it('--pki signs the intermediate with an existing root and leaves its key where it is', async () => {
    assert.equal((await dmr(cwd, 'pki', 'init', '--dir', 'root', '--trust-domain', 'dmr.example.ee')).status, 0);
    const run = await dmr(cwd, ...words(`centops init --dir p --pki root --admin ops-alice --listen 127.0.0.1:9443`));
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /next steps/);
    assert.match(run.stdout, /https:\/\/127\.0\.0\.1:9444/);
    assert.ok(!(await readdir(join(cwd, 'p', 'ca'))).includes('root.key'));
    assert.equal(
      await readFile(join(cwd, 'p', 'ca', 'root.crt'), 'utf8'),
      await readFile(join(cwd, 'root', 'root.crt'), 'utf8'),
    );
    await stat(join(cwd, 'p-admin', 'ops-alice.crt'));
  });

  it('refuses to overwrite, and needs exactly one of --pki or --dev', async () => {
    const again = await spawned(cwd, 'centops', 'init', '--dir', 'c', '--dev');
    assert.equal(again.status, 4);
    assert.match(again.stderr, /^error\[ALREADY_EXISTS\]/);
    const neither = await dmr(cwd, 'centops', 'init', '--dir', 'n');
    assert.equal(neither.status, 2);
    assert.match(neither.stderr, /error\[INVALID_ARGUMENT\].*--pki/);
    assert.match(neither.stderr, /hint:/);
  });
});

describe('dmr centops operator add', () => {
  let cwd: string;
  before(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dmr-cli-centops-op-'));
    const init = await dmr(cwd, 'centops', 'init', '--dir', 'c', '--dev', '--trust-domain', 'dmr.test');
    assert.equal(init.status, 0, init.stderr);
  });
  after(() => rm(cwd, { recursive: true, force: true }));

  it('writes key (0600), certificate, trust bundle and a CLI config like admin.yaml; never overwrites', async () => {
    const run = await dmr(
      cwd,
      ...words(`-o json centops operator add --dir c --id alice --role viewer --out-dir alice`),
    );
    assert.equal(run.status, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { id: string; role: string; serial: string };
    assert.deepEqual([result.id, result.role], ['alice', 'viewer']);
    assert.deepEqual((await readdir(join(cwd, 'alice'))).sort(), [
      'alice.crt',
      'alice.key',
      'alice.yaml',
      'trust-bundle.pem',
    ]);
    assert.equal((await stat(join(cwd, 'alice', 'alice.key'))).mode & 0o777, 0o600);
    const config = await readFile(join(cwd, 'alice', 'alice.yaml'), 'utf8');
    assert.match(config, /^kind: CentOpsClientConfig$/m);
    assert.match(config, /^endpoint: https:\/\/127\.0\.0\.1:8443$/m);
    assert.match(config, /^clientCertificate: alice\.crt$/m);
    assert.match(config, /^clientKey: alice\.key$/m);
    assert.match(config, /^caBundle: trust-bundle\.pem$/m);

    const again = await dmr(cwd, ...words(`centops operator add --dir c --id alice --role admin --out-dir alice`));
    assert.equal(again.status, 4, again.stderr);
    assert.match(again.stderr, /^error\[ALREADY_EXISTS\]/);
  });

  it('refuses an unknown role or a missing flag', async () => {
    const role = await dmr(cwd, ...words(`centops operator add --dir c --id bob --role root --out-dir bob`));
    assert.equal(role.status, 2);
    assert.match(role.stderr, /error\[INVALID_ARGUMENT\].*role/);
    const missing = await dmr(cwd, 'centops', 'operator', 'add', '--dir', 'c', '--id', 'bob', '--role', 'viewer');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--out-dir/);
  });
});
