import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import type { CertificateAuthority } from '@dmr/pki';
import { checkServerCertificate, checkTrustBundle, installBrokerTls, trustBundleFor } from './tls-install.js';
import { makeTempDir, makeTestCa } from './testing.js';

function isCode(code: string): (error: unknown) => boolean {
  return (error: unknown) => error instanceof DmrError && error.code === code;
}

describe('installBrokerTls', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: CertificateAuthority;
  let server: { chainPem: string; privateKeyPem: string; serial: string; fingerprintSha256: string };
  let other: { chainPem: string; privateKeyPem: string };
  let tls: { certFile: string; keyFile: string; caFile: string };

  before(async () => {
    temp = await makeTempDir('tls-install');
    ca = await makeTestCa(`${temp.path}/pki`);
    server = await ca.issueWithKey({ kind: 'node', id: 'dmr-broker-1', dns: ['localhost'] });
    other = await ca.issueWithKey({ kind: 'node', id: 'dmr-broker-2', dns: ['localhost'] });
    tls = { certFile: `${temp.path}/server.pem`, keyFile: `${temp.path}/server.key`, caFile: `${temp.path}/ca.pem` };
    for (const file of Object.values(tls)) await writeFile(file, 'old\n', { mode: 0o644 });
  });

  after(async () => {
    await temp?.remove();
  });

  it('describes a matching certificate and key like @dmr/pki does', () => {
    const info = checkServerCertificate(server.chainPem, server.privateKeyPem);
    assert.equal(info.serial, server.serial);
    assert.equal(info.fingerprintSha256, server.fingerprintSha256);
    assert.match(info.subject, /CN=dmr-broker-1/);
  });

  it('refuses a key of another certificate, a broken key, an expired or not yet valid leaf, and no PEM', () => {
    assert.throws(() => checkServerCertificate(server.chainPem, other.privateKeyPem), isCode('CERTIFICATE_INVALID'));
    assert.throws(() => checkServerCertificate(server.chainPem, 'nope'), isCode('KEY_INVALID'));
    assert.throws(
      () => checkServerCertificate(server.chainPem, server.privateKeyPem, new Date(Date.now() + 400 * 86_400_000)),
      isCode('CERTIFICATE_INVALID'),
    );
    assert.throws(
      () => checkServerCertificate(server.chainPem, server.privateKeyPem, new Date(Date.now() - 86_400_000)),
      isCode('CERTIFICATE_INVALID'),
    );
    assert.throws(() => checkServerCertificate('', server.privateKeyPem), isCode('CERTIFICATE_INVALID'));
  });

  it('accepts only CA certificates in a trust bundle', () => {
    assert.equal(checkTrustBundle(trustBundleFor(ca)), 2);
    assert.throws(() => checkTrustBundle(`${trustBundleFor(ca)}${server.chainPem}`), isCode('CERTIFICATE_INVALID'));
  });

  it('writes certificate (0644) and key (0600) by rename, leaving no temporary file', async () => {
    const result = await installBrokerTls({ tls, chainPem: server.chainPem, privateKeyPem: server.privateKeyPem });
    assert.equal(result.certificate?.serial, server.serial);
    assert.equal(result.trustBundle, undefined);
    assert.equal(await readFile(tls.certFile, 'utf8'), `${server.chainPem.trim()}\n`);
    assert.equal(await readFile(tls.keyFile, 'utf8'), `${server.privateKeyPem.trim()}\n`);
    assert.equal((await stat(tls.keyFile)).mode & 0o777, 0o600);
    assert.equal((await readdir(temp.path)).filter((name) => name.endsWith('.tmp')).length, 0);
    assert.equal(await readFile(tls.caFile, 'utf8'), 'old\n');
  });

  it('writes a trust bundle, then reloads (the reload sees the new file)', async () => {
    const bundle = trustBundleFor(ca);
    let seen = '';
    const result = await installBrokerTls({
      tls,
      trustBundlePem: bundle,
      reload: async () => {
        seen = await readFile(tls.caFile, 'utf8');
      },
    });
    assert.deepEqual(result.trustBundle, { certificates: 2 });
    assert.equal(seen, `${bundle.trim()}\n`);
  });

  it('refuses half a pair, nothing at all, or a bundle without reload, before writing anything', async () => {
    const before = await Promise.all(Object.values(tls).map((file) => readFile(file, 'utf8')));
    await assert.rejects(installBrokerTls({ tls, chainPem: other.chainPem }), isCode('INVALID_ARGUMENT'));
    await assert.rejects(installBrokerTls({ tls }), isCode('INVALID_ARGUMENT'));
    await assert.rejects(installBrokerTls({ tls, trustBundlePem: trustBundleFor(ca) }), isCode('INVALID_ARGUMENT'));
    await assert.rejects(
      installBrokerTls({
        tls,
        chainPem: other.chainPem,
        privateKeyPem: other.privateKeyPem,
        trustBundlePem: server.chainPem,
        reload: async () => undefined,
      }),
      isCode('CERTIFICATE_INVALID'),
    );
    assert.deepEqual(await Promise.all(Object.values(tls).map((file) => readFile(file, 'utf8'))), before);
  });
});
