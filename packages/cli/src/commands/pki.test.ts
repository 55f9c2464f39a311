import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dmrCli, helpOf, runDmrInProcess, words, type DmrRun as Run } from '../test-support.js';

const TD = 'dmr.test';

let cwd = '';
// In process: a `dmr pki` child costs about 1 s of CPU, mostly importing the x509 stack, and this file ran
// about 55 (docs/decisions/0038-ci-time.md). `spawned` keeps the real binary where its process is the
// contract: the group's help, a first CA written with its file modes, an exit code with a hint, and a
// JSON error on stderr with nothing on stdout.
const { dmr, ok, json } = dmrCli(() => ({ cwd }), runDmrInProcess);
const spawned = dmrCli(() => ({ cwd }));

/** Asserts a refusal: exit code, `error[CODE]` with a hint on stderr, and that none of `absent` was written. */
/** Runs `dmr <command>` (one line, or its words) and checks it is refused with `code`. */
async function refused(code: string, exit: number, command: string | string[], absent: string[] = []): Promise<Run> {
  const args = typeof command === 'string' ? words(command) : command;
  const run = await dmr(...args);
  assert.equal(run.status, exit, `dmr ${args.join(' ')} should exit ${exit}\n${run.stderr}`);
  assert.match(run.stderr, new RegExp(`^error\\[${code}\\]: `), run.stderr);
  for (const file of absent) await assert.rejects(stat(join(cwd, file)), /ENOENT/, `${file} must not be written`);
  return run;
}

async function exists(file: string): Promise<boolean> {
  return stat(join(cwd, file)).then(
    () => true,
    () => false,
  );
}

describe('dmr pki', () => {
  before(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dmr-cli-pki-'));
  });
  after(() => rm(cwd, { recursive: true, force: true }));

  it('every pki subcommand has a description and option help; --generate-key is labelled development-only', async () => {
    // The binary for the group, the subcommands in process (main.test.ts spawns each group once).
    const help = await spawned.ok('pki', '--help');
    for (const name of ['init', 'keygen', 'csr', 'issue', 'revoke', 'crl', 'inspect', 'list']) {
      assert.match(help.stdout, new RegExp(`\\n  ${name}\\b.*\\S`), name);
      const sub = await helpOf(['pki', name]);
      assert.match(sub, /Usage: dmr pki /);
      assert.match(sub, /Options:\n(?:\s+-.*\S\n)+/);
    }
    const issue = await helpOf(['pki', 'issue']);
    assert.match(issue, /--generate-key\s+DEVELOPMENT ONLY/);
    assert.match(issue, /--key-out <file>\s+DEVELOPMENT ONLY/);
  });

  it('init creates a CA and refuses to do it twice', async () => {
    const result = await spawned.json<{ dir: string; trustDomain: string; root: { fingerprintSha256: string } }>(
      'pki',
      'init',
      '--dir',
      'ca',
      '--trust-domain',
      TD,
      '--root-ttl',
      '3650d',
      '--intermediate-ttl',
      '365d',
    );
    assert.equal(result.trustDomain, TD);
    assert.equal(result.dir, join(cwd, 'ca'));
    assert.match(result.root.fingerprintSha256, /^[0-9a-f]{64}$/);
    assert.equal((await stat(join(cwd, 'ca'))).mode & 0o777, 0o700);
    assert.equal((await stat(join(cwd, 'ca', 'root.key'))).mode & 0o777, 0o600);
    const again = await spawned.dmr(...words(`pki init --dir ca --trust-domain ${TD}`));
    assert.equal(again.status, 4, again.stderr);
    assert.match(again.stderr, /^error\[ALREADY_EXISTS\]: .*\n {2}hint: /);
    assert.equal(again.stdout, '');
    assert.deepEqual(await runDmrInProcess(words(`pki init --dir ca --trust-domain ${TD}`), { cwd }), again);
    await refused('INVALID_ARGUMENT', 2, `pki init --dir ca2 --trust-domain ${TD} --root-ttl 10y`, ['ca2']);
    await refused('INVALID_ARGUMENT', 2, 'pki init --dir ca3', ['ca3']);
    const text = await ok('pki', 'init', '--dir', 'ca-text', '--trust-domain', TD);
    assert.match(text.stdout, /created CA: +.*ca-text\n/);
    assert.match(text.stdout, /root sha256: +[0-9a-f]{64}/);
  });

  it('keygen writes a 0600 key, refuses to overwrite without --force, and refuses unknown algorithms', async () => {
    const result = await json('pki', 'keygen', '--out', 'bot.key');
    assert.deepEqual(result, { out: 'bot.key', algorithm: 'ecdsa-p256', mode: '0600' });
    assert.equal((await stat(join(cwd, 'bot.key'))).mode & 0o777, 0o600);
    const before = await readFile(join(cwd, 'bot.key'), 'utf8');
    await refused('ALREADY_EXISTS', 4, 'pki keygen --out bot.key');
    assert.equal(await readFile(join(cwd, 'bot.key'), 'utf8'), before);
    await ok('pki', 'keygen', '--out', 'bot.key', '--force');
    assert.notEqual(await readFile(join(cwd, 'bot.key'), 'utf8'), before);
    assert.equal((await stat(join(cwd, 'bot.key'))).mode & 0o777, 0o600);
    await ok('pki', 'keygen', '--out', 'rsa.key', '--algorithm', 'rsa-2048');
    await refused('INVALID_ARGUMENT', 2, 'pki keygen --out dsa.key --algorithm dsa', ['dsa.key']);
    await refused('NOT_FOUND', 3, 'pki keygen --out no/such/dir.key');
  });

  it('csr + issue: signs the CSR and writes leaf + intermediate; prints serial, fingerprint and validity', async () => {
    await ok('pki', 'keygen', '--out', 'police.key');
    const csr = await json<{ out: string; spiffeId: string }>(
      'pki',
      'csr',
      '--id',
      'police-bot',
      '--kind',
      'client',
      '--key',
      'police.key',
      '--trust-domain',
      TD,
      '--out',
      'police.csr',
    );
    assert.equal(csr.spiffeId, `spiffe://${TD}/client/police-bot`);
    assert.match(await readFile(join(cwd, 'police.csr'), 'utf8'), /BEGIN CERTIFICATE REQUEST/);

    const issued = await ok(
      'pki',
      'issue',
      '--dir',
      'ca',
      '--csr',
      'police.csr',
      '--kind',
      'client',
      '--id',
      'police-bot',
      '--ttl',
      '12h',
      '--out',
      'police.crt',
    );
    assert.match(issued.stdout, /serial: +[1-7][0-9a-f]{31}\n/);
    assert.match(issued.stdout, /sha256: +[0-9a-f]{64}\n/);
    assert.match(issued.stdout, /not before: +\d{4}-/);
    assert.match(issued.stdout, /not after: +\d{4}-/);
    const chain = await readFile(join(cwd, 'police.crt'), 'utf8');
    assert.equal(chain.match(/BEGIN CERTIFICATE/g)?.length, 2);
    assert.ok(chain.endsWith(await readFile(join(cwd, 'ca', 'intermediate.crt'), 'utf8')));

    const report = await json<{
      subject: string;
      spiffe: { kind: string };
      chain: { verified: boolean };
      notAfter: string;
      notBefore: string;
    }>('pki', 'inspect', 'police.crt', '--dir', 'ca');
    assert.equal(report.subject, 'CN=police-bot');
    assert.equal(report.spiffe.kind, 'client');
    assert.equal(report.chain.verified, true);
    const hours = (Date.parse(report.notAfter) - Date.now()) / 3_600_000;
    assert.ok(hours > 11.9 && hours <= 12, `12h ttl, got ${hours}`);
  });

  it('issue --generate-key (development) writes a 0600 key and a node chain with DNS/IP SANs', async () => {
    const result = await json<{ out: string; keyOut: string; serial: string }>(
      'pki',
      'issue',
      '--dir',
      'ca',
      '--generate-key',
      '--key-out',
      'node.key',
      '--kind',
      'node',
      '--id',
      'dmr-tallinn',
      '--dns',
      'localhost',
      '--ip',
      '127.0.0.1',
      '--ip',
      '::1',
      '--out',
      'node.crt',
    );
    assert.equal(result.keyOut, 'node.key');
    assert.equal((await stat(join(cwd, 'node.key'))).mode & 0o777, 0o600);
    const report = await json<{ san: { dns: string[]; ip: string[] }; extendedKeyUsage: string[] }>(
      'pki',
      'inspect',
      'node.crt',
      '--trust-bundle',
      'ca/root.crt',
    );
    assert.deepEqual(report.san.dns, ['localhost']);
    assert.deepEqual(report.san.ip, ['127.0.0.1', '::1']);
    assert.deepEqual(report.extendedKeyUsage, ['serverAuth', 'clientAuth']);
  });

  it('bad input: error[CODE] with a hint, non-zero exit, and no output file', async () => {
    const base = 'pki issue --dir ca --csr police.csr --out bad.crt';
    const mismatch = await refused('CSR_MISMATCH', 5, `${base} --kind client --id tax-bot`, ['bad.crt']);
    assert.match(mismatch.stderr, /\n {2}hint: /);
    await refused('SAN_NOT_ALLOWED', 5, `${base} --kind client --id police-bot --dns x.dmr.test`, ['bad.crt']);
    await refused('INVALID_ID', 2, `${base} --kind client --id Police_Bot`, ['bad.crt']);
    await refused('INVALID_ARGUMENT', 2, `${base} --kind robot --id police-bot`, ['bad.crt']);
    await refused('INVALID_ARGUMENT', 2, `${base} --kind client --id police-bot --ttl 24`, ['bad.crt']);
    await writeFile(join(cwd, 'garbage.csr'), 'not a csr\n');
    await refused(
      'CSR_MALFORMED',
      5,
      'pki issue --dir ca --csr garbage.csr --kind client --id police-bot --out bad.crt',
      ['bad.crt'],
    );
    await refused(
      'NOT_FOUND',
      3,
      'pki issue --dir no-ca --csr police.csr --kind client --id police-bot --out bad.crt',
      ['bad.crt'],
    );
    await refused('NOT_FOUND', 3, 'pki issue --dir ca --csr missing.csr --kind client --id police-bot --out bad.crt', [
      'bad.crt',
    ]);
    await refused(
      'ALREADY_EXISTS',
      4,
      'pki issue --dir ca --csr police.csr --kind client --id police-bot --out police.crt',
    );
    await refused('INVALID_ARGUMENT', 2, 'pki issue --dir ca --kind client --id police-bot --out bad.crt', ['bad.crt']);
    // With --generate-key neither the key nor the chain may be left behind when issuing fails.
    await refused(
      'SAN_NOT_ALLOWED',
      5,
      'pki issue --dir ca --generate-key --key-out bad.key --kind client --id x-bot --ip 10.0.0.1 --out bad.crt',
      ['bad.key', 'bad.crt'],
    );
    await refused(
      'SAN_NOT_ALLOWED',
      5,
      `pki csr --id police-bot --kind client --key police.key --trust-domain ${TD} --dns a.b --out bad.csr`,
      ['bad.csr'],
    );
    await writeFile(join(cwd, 'bad-key.pem'), 'nope');
    await refused(
      'KEY_INVALID',
      5,
      `pki csr --id police-bot --kind client --key bad-key.pem --trust-domain ${TD} --out bad.csr`,
      ['bad.csr'],
    );
    assert.deepEqual(
      (await readdir(cwd)).filter((name) => name.endsWith('.tmp')),
      [],
    );
  });

  it('-o json reports errors as {error:{code,message,hint}} on stderr', async () => {
    const run = await spawned.dmr(
      '-o',
      'json',
      'pki',
      'revoke',
      '--dir',
      'ca',
      '--serial',
      'abcdef',
      '--reason',
      'superseded',
    );
    assert.equal(run.status, 3);
    assert.equal(run.stdout, '');
    const body = JSON.parse(run.stderr) as { error: { code: string; message: string; hint?: string } };
    assert.equal(body.error.code, 'UNKNOWN_SERIAL');
    assert.ok(body.error.hint);
  });

  it('revoke + crl + inspect: the CRL lists the serial and inspect reports it revoked', async () => {
    const list = await json<Array<{ serial: string; id: string; status: string }>>('pki', 'list', '--dir', 'ca');
    const police = list.find((record) => record.id === 'police-bot');
    assert.ok(police);
    assert.equal(police.status, 'valid');

    const revoked = await json<{ serial: string; reason: string; id: string }>(
      'pki',
      'revoke',
      '--dir',
      'ca',
      '--serial',
      police.serial.toUpperCase(),
      '--reason',
      'keyCompromise',
    );
    assert.deepEqual([revoked.serial, revoked.reason, revoked.id], [police.serial, 'keyCompromise', 'police-bot']);
    await refused('ALREADY_REVOKED', 4, `pki revoke --dir ca --serial ${police.serial} --reason superseded`);
    await refused('INVALID_ARGUMENT', 2, `pki revoke --dir ca --serial ${police.serial} --reason bored`);
    await refused('UNKNOWN_SERIAL', 3, 'pki revoke --dir ca --serial 1234 --reason superseded');

    const crl = await json<{ crlNumber: number; revoked: number; nextUpdate: string; thisUpdate: string }>(
      'pki',
      'crl',
      '--dir',
      'ca',
      '--out',
      'crl.pem',
      '--next-update',
      '2d',
    );
    assert.equal(crl.crlNumber, 1);
    assert.equal(crl.revoked, 1);
    assert.equal(Date.parse(crl.nextUpdate) - Date.parse(crl.thisUpdate), 2 * 86_400_000);
    assert.match(await readFile(join(cwd, 'crl.pem'), 'utf8'), /^-----BEGIN X509 CRL-----/);
    assert.equal(
      (await json<{ crlNumber: number }>('pki', 'crl', '--dir', 'ca', '--out', 'crl.pem')).crlNumber,
      2,
      'republishing replaces the file',
    );

    const report = await json<{ revocation: string; revocationReason: string; revocationSource: string }>(
      'pki',
      'inspect',
      'police.crt',
      '--trust-bundle',
      'ca/root.crt',
      '--crl',
      'crl.pem',
    );
    assert.deepEqual(
      [report.revocation, report.revocationReason, report.revocationSource],
      ['revoked', 'keyCompromise', 'crl'],
    );
    const text = await ok('pki', 'inspect', 'police.crt', '--dir', 'ca');
    assert.match(text.stdout, /revocation: +REVOKED \(keyCompromise at .*\) \[CA records\]/);
    assert.match(text.stdout, /chain: +verified/);
    assert.match(text.stdout, /spiffe id: +spiffe:\/\/dmr\.test\/client\/police-bot/);
    const node = await ok('pki', 'inspect', 'node.crt', '--dir', 'ca', '--crl', 'crl.pem');
    assert.match(node.stdout, /revocation: +good \[CRL #2\]/);
    assert.match(node.stdout, /dns names: +localhost/);
    await refused('CERTIFICATE_INVALID', 5, 'pki inspect police.crt --dir ca --check');
    await ok('pki', 'inspect', 'node.crt', '--dir', 'ca', '--check');
    const listed = await ok('pki', 'list', '--dir', 'ca');
    assert.match(listed.stdout, /SERIAL +KIND +ID/);
    assert.match(listed.stdout, /police-bot .* revoked \(keyCompromise\)/);
  });

  it('inspect refuses what is not a certificate and conflicting trust options', async () => {
    await refused('CERTIFICATE_INVALID', 5, ['pki', 'inspect', 'police.key']);
    await refused('CRL_INVALID', 5, 'pki inspect police.crt --crl police.crt');
    await refused('INVALID_ARGUMENT', 2, 'pki inspect police.crt --dir ca --trust-bundle ca/root.crt');
    await refused('NOT_FOUND', 3, ['pki', 'inspect', 'nothing.crt']);
  });

  it('crl writes nothing when the CA cannot be opened', async () => {
    await refused('NOT_FOUND', 3, 'pki crl --dir no-ca --out no.crl', ['no.crl']);
    await refused('INVALID_ARGUMENT', 2, 'pki crl --dir ca --out no.crl --next-update soon', ['no.crl']);
  });

  it('every pki command answers -o json with JSON', async () => {
    assert.ok(Array.isArray(await json('pki', 'list', '--dir', 'ca')));
    for (const args of [
      ['pki', 'init', '--dir', 'ca-json', '--trust-domain', TD],
      ['pki', 'keygen', '--out', 'j.key'],
      ['pki', 'csr', '--id', 'j-bot', '--kind', 'client', '--key', 'j.key', '--trust-domain', TD, '--out', 'j.csr'],
      ['pki', 'issue', '--dir', 'ca-json', '--csr', 'j.csr', '--kind', 'client', '--id', 'j-bot', '--out', 'j.crt'],
      ['pki', 'crl', '--dir', 'ca-json', '--out', 'j.crl'],
      ['pki', 'inspect', 'j.crt', '--dir', 'ca-json', '--crl', 'j.crl'],
    ]) {
      const value = await json(...args);
      assert.equal(typeof value, 'object', args.join(' '));
    }
    const [record] = await json<Array<{ serial: string }>>('pki', 'list', '--dir', 'ca-json');
    assert.ok(record);
    assert.equal(
      (
        await json<{ reason: string }>(
          'pki',
          'revoke',
          '--dir',
          'ca-json',
          '--serial',
          record.serial,
          '--reason',
          'superseded',
        )
      ).reason,
      'superseded',
    );
    assert.ok(await exists('j.crl'));
  });
});
