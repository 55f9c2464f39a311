import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority } from './authority.js';
import { createCsr } from './csr.js';
import { inspectCertificate } from './inspect.js';
import { generatePrivateKey } from './keys.js';
import { certificateSubject, subjectFromUris, subjectUris } from './profiles.js';
import { rejectsWith, tempDir, throwsWith } from './test-support.js';

const TD = 'dmr.example.ee';

describe('control-plane certificate profiles', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  let ca: CertificateAuthority;
  before(async () => {
    scratch = await tempDir();
    await CertificateAuthority.init(join(scratch.path, 'root'), { trustDomain: TD });
    ca = await CertificateAuthority.initSubordinate(join(scratch.path, 'sub'), { rootDir: join(scratch.path, 'root') });
  });
  after(() => scratch.cleanup());

  it('a subordinate CA holds no root key, opens without it, and its leaves chain to the root', async () => {
    assert.deepEqual((await readdir(ca.dir)).sort(), ['ca.json', 'intermediate.crt', 'intermediate.key', 'root.crt']);
    const reopened = await CertificateAuthority.open(ca.dir);
    const leaf = await reopened.issueWithKey({ kind: 'client', id: 'police-bot' });
    const report = await inspectCertificate(leaf.chainPem, { trustBundlePem: reopened.trustBundlePem() });
    assert.equal(report.chain.verified, true);
    assert.match(report.issuer, /Subordinate/);
    await rejectsWith(CertificateAuthority.initSubordinate(ca.dir, { rootDir: ca.dir }), 'NOT_FOUND', /root\.key/);
  });

  it('operator: spiffe URI plus role URN, clientAuth only; read back by subjectFromUris', async () => {
    const cert = await ca.issueWithKey({ kind: 'operator', id: 'alice', role: 'viewer' });
    const report = await inspectCertificate(cert.chainPem, { trustBundlePem: ca.trustBundlePem() });
    assert.deepEqual(report.san.uri, [`spiffe://${TD}/operator/alice`, 'urn:dmr:role:viewer']);
    assert.deepEqual(report.extendedKeyUsage, ['clientAuth']);
    assert.deepEqual(subjectFromUris(report.san.uri, TD), { kind: 'operator', id: 'alice', role: 'viewer' });
    assert.equal(subjectFromUris(report.san.uri, 'other.example'), undefined);
    assert.equal(subjectFromUris([`spiffe://${TD}/operator/alice`], TD), undefined, 'an operator needs a role');
    assert.equal(subjectFromUris([`spiffe://${TD}/client/bot`, 'urn:dmr:role:admin'], TD), undefined);
    assert.deepEqual(subjectFromUris([`spiffe://${TD}/node/dmr-a`], TD), { kind: 'node', id: 'dmr-a' });
  });

  it('a CSR asking for a higher role than issued is refused', async () => {
    const key = await generatePrivateKey();
    const csrPem = await createCsr({
      id: 'mallory',
      kind: 'operator',
      role: 'admin',
      trustDomain: TD,
      privateKeyPem: key,
    });
    await rejectsWith(ca.issue({ csrPem, kind: 'operator', id: 'mallory', role: 'viewer' }), 'CSR_MISMATCH');
    const ok = await ca.issue({ csrPem, kind: 'operator', id: 'mallory', role: 'admin' });
    assert.ok(ok.serial);
  });

  it('centops api: serverAuth with host names; config-signer: digitalSignature and no EKU', async () => {
    const api = await ca.issueWithKey({ kind: 'centops', id: 'api', dns: ['localhost'], ips: ['127.0.0.1'] });
    const apiReport = await inspectCertificate(api.certificatePem);
    assert.deepEqual(apiReport.extendedKeyUsage, ['serverAuth']);
    assert.deepEqual(apiReport.san.dns, ['localhost']);
    const signer = await ca.issueWithKey({ kind: 'centops', id: 'config-signer' });
    const signerReport = await inspectCertificate(signer.certificatePem);
    assert.deepEqual(signerReport.extendedKeyUsage, []);
    assert.deepEqual(signerReport.keyUsage, ['digitalSignature']);
    assert.deepEqual(signerReport.san.uri, [`spiffe://${TD}/centops/config-signer`]);
    await rejectsWith(ca.issueWithKey({ kind: 'centops', id: 'config-signer', dns: ['x.example'] }), 'SAN_NOT_ALLOWED');
    await rejectsWith(
      ca.issueWithKey({ kind: 'operator', id: 'bob', role: 'admin', dns: ['x.example'] }),
      'SAN_NOT_ALLOWED',
    );
  });

  it('certificateSubject checks roles and service ids', () => {
    throwsWith(() => certificateSubject('operator', 'alice'), 'INVALID_ARGUMENT', /role/);
    throwsWith(() => certificateSubject('client', 'bot', 'admin'), 'INVALID_ARGUMENT');
    throwsWith(() => certificateSubject('centops', 'web'), 'INVALID_ARGUMENT');
    throwsWith(() => certificateSubject('robot', 'x1'), 'INVALID_ARGUMENT');
    assert.deepEqual(subjectUris(TD, { kind: 'centops', id: 'api' }), [`spiffe://${TD}/centops/api`]);
  });
});
