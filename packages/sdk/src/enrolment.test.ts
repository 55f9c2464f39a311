import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority } from '@dmr/pki';
import { describeCertificate } from './certificates.js';
import { enrol, renewCertificate } from './enrolment.js';
import { startFakeCentOps, type FakeCentOps } from './fake-centops.js';

describe('enrolment and renewal', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let centops: FakeCentOps;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-sdk-enrol-'));
    ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: 'dmr.test' });
    centops = await startFakeCentOps(ca, { token: 'the-token' });
  });

  after(async () => {
    await centops.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('enrols with a token and a CSR (the key stays here), then renews with a new key', async () => {
    const enrolled = await enrol({
      enrolUrl: centops.url,
      token: 'the-token',
      id: 'ria-bot',
      caPem: ca.trustBundlePem(),
    });
    assert.match(enrolled.keyPem, /BEGIN PRIVATE KEY/);
    const info = describeCertificate(enrolled.chainPem);
    assert.equal(info.id, 'ria-bot');
    assert.equal(info.trustDomain, 'dmr.test', 'trust domain read from the root name');
    assert.equal(enrolled.serial, info.serial);
    assert.ok(enrolled.notAfter > new Date());
    assert.equal(enrolled.trustBundlePem, ca.trustBundlePem());
    const sent = centops.bodies.at(-1) as Record<string, unknown>;
    assert.deepEqual(Object.keys(sent).sort(), ['csr', 'token']);
    assert.ok(!JSON.stringify(centops.bodies).includes('PRIVATE KEY'));

    const renewed = await renewCertificate({
      apiUrl: centops.url,
      current: { cert: enrolled.chainPem, key: enrolled.keyPem, ca: enrolled.trustBundlePem },
    });
    assert.notEqual(renewed.serial, enrolled.serial);
    assert.notEqual(renewed.keyPem, enrolled.keyPem);
    assert.equal(describeCertificate(renewed.chainPem).id, 'ria-bot');
    assert.deepEqual(Object.keys(centops.bodies.at(-1) ?? {}), ['csr']);
  });

  it('maps a refused token to TOKEN_INVALID and an unreachable CentOps to CENTOPS_UNREACHABLE', async () => {
    await assert.rejects(enrol({ enrolUrl: centops.url, token: 'wrong', id: 'ria-bot', caPem: ca.trustBundlePem() }), {
      code: 'TOKEN_INVALID',
    });
    await assert.rejects(
      enrol({ enrolUrl: 'https://localhost:1', token: 'the-token', id: 'ria-bot', caPem: ca.trustBundlePem() }),
      { code: 'CENTOPS_UNREACHABLE' },
    );
  });
});
