import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spiffeId } from '@dmr/core';
import { CertificateAuthority, type IssuedCertificate } from './authority.js';
import { inspectCertificate } from './inspect.js';
import { rejectsWith, tempDir } from './test-support.js';

const TD = 'dmr.test';
const DAY = 86_400_000;

describe('inspectCertificate', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  let ca: CertificateAuthority;
  let other: CertificateAuthority;
  let node: IssuedCertificate & { privateKeyPem: string };
  let client: IssuedCertificate;

  before(async () => {
    scratch = await tempDir();
    ca = await CertificateAuthority.init(join(scratch.path, 'ca'), { trustDomain: TD });
    // Same trust domain, so the same subject names: only keys tell the two CAs apart.
    other = await CertificateAuthority.init(join(scratch.path, 'other'), { trustDomain: TD });
    node = await ca.issueWithKey({ kind: 'node', id: 'dmr-tallinn', dns: ['localhost'], ips: ['127.0.0.1', '::1'] });
    client = await ca.issueWithKey({ kind: 'client', id: 'police-bot' });
  });
  after(() => scratch.cleanup());

  it('reports subject, SANs, spiffe identity, validity, key, fingerprint and usages', async () => {
    const report = await inspectCertificate(node.chainPem, { trustBundlePem: ca.trustBundlePem() });
    assert.equal(report.subject, 'CN=dmr-tallinn');
    assert.equal(report.commonName, 'dmr-tallinn');
    assert.equal(report.issuer, `CN=DMR Intermediate CA (${TD})`);
    assert.equal(report.serial, node.serial);
    assert.deepEqual(report.san, {
      dns: ['localhost'],
      ip: ['127.0.0.1', '::1'],
      uri: [spiffeId(TD, 'node', 'dmr-tallinn')],
      other: [],
    });
    assert.deepEqual(report.spiffe, {
      trustDomain: TD,
      kind: 'node',
      id: 'dmr-tallinn',
      uri: spiffeId(TD, 'node', 'dmr-tallinn'),
    });
    assert.equal(report.notBefore.getTime(), node.notBefore.getTime());
    assert.equal(report.notAfter.getTime(), node.notAfter.getTime());
    assert.equal(report.expired, false);
    assert.equal(report.notYetValid, false);
    assert.equal(report.keyAlgorithm, 'ecdsa-p256');
    assert.equal(report.fingerprintSha256, node.fingerprintSha256);
    assert.equal(report.isCa, false);
    assert.deepEqual(report.keyUsage, ['digitalSignature']);
    assert.deepEqual(report.extendedKeyUsage, ['serverAuth', 'clientAuth']);
    assert.deepEqual(report.chain, {
      verified: true,
      path: ['CN=dmr-tallinn', `CN=DMR Intermediate CA (${TD})`, `CN=DMR Root CA (${TD})`],
    });
  });

  it('reports a CA certificate as such', async () => {
    const report = await inspectCertificate(ca.rootCertificatePem, { trustBundlePem: ca.trustBundlePem() });
    assert.equal(report.isCa, true);
    assert.deepEqual(report.keyUsage, ['keyCertSign', 'cRLSign']);
    assert.equal(report.chain.verified, true);
    assert.equal(report.spiffe, undefined);
  });

  it('verifies with intermediates given separately, and not without them or a trust bundle', async () => {
    const separate = await inspectCertificate(client.certificatePem, {
      trustBundlePem: ca.trustBundlePem(),
      intermediatePems: [ca.intermediateCertificatePem],
    });
    assert.equal(separate.chain.verified, true);
    const noIntermediate = await inspectCertificate(client.certificatePem, { trustBundlePem: ca.trustBundlePem() });
    assert.equal(noIntermediate.chain.verified, false);
    assert.match(noIntermediate.chain.problem ?? '', /no trusted or given certificate for the issuer/);
    const noBundle = await inspectCertificate(client.chainPem);
    assert.deepEqual(noBundle.chain, { verified: false, problem: 'no trust bundle given', path: ['CN=police-bot'] });
  });

  it('does not verify against another CA whose names are identical', async () => {
    const report = await inspectCertificate(client.chainPem, { trustBundlePem: other.trustBundlePem() });
    assert.equal(report.chain.verified, false);
    assert.match(report.chain.problem ?? '', /does not verify|no trusted/);
    const crossed = await inspectCertificate(client.certificatePem, {
      trustBundlePem: ca.trustBundlePem(),
      intermediatePems: [other.intermediateCertificatePem],
    });
    assert.equal(crossed.chain.verified, false);
    assert.match(crossed.chain.problem ?? '', /signature .* does not verify/);
  });

  it('verifies against a rollover bundle holding old and new roots', async () => {
    const bundle = other.trustBundlePem() + ca.trustBundlePem();
    assert.equal((await inspectCertificate(client.chainPem, { trustBundlePem: bundle })).chain.verified, true);
    const fromOther = await other.issueWithKey({ kind: 'client', id: 'police-bot' });
    assert.equal((await inspectCertificate(fromOther.chainPem, { trustBundlePem: bundle })).chain.verified, true);
  });

  it('flags expired and not-yet-valid certificates and fails their chain', async () => {
    const expired = await ca.issueWithKey({
      kind: 'client',
      id: 'expired-bot',
      notBefore: new Date(Date.now() - 3 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const report = await inspectCertificate(expired.chainPem, { trustBundlePem: ca.trustBundlePem() });
    assert.equal(report.expired, true);
    assert.equal(report.chain.verified, false);
    assert.match(report.chain.problem ?? '', /expired at/);
    const later = await inspectCertificate(client.chainPem, {
      trustBundlePem: ca.trustBundlePem(),
      now: new Date(Date.now() - DAY),
    });
    assert.equal(later.notYetValid, true);
    assert.match(later.chain.problem ?? '', /not valid before/);
  });

  it('revocation: unknown without a CRL, good when a valid CRL does not list it, revoked with reason and date', async () => {
    const target = await ca.issueWithKey({ kind: 'client', id: 'stolen-bot' });
    const options = { trustBundlePem: ca.trustBundlePem() };
    const none = await inspectCertificate(target.chainPem, options);
    assert.equal(none.revocation, 'unknown');
    assert.equal(none.revocationProblem, 'no CRL given');

    const before = await ca.createCrl();
    const good = await inspectCertificate(target.chainPem, { ...options, crlPems: [before] });
    assert.equal(good.revocation, 'good');
    assert.equal(good.revocationSource, 'crl');

    await ca.revoke(target.serial, 'keyCompromise');
    const after = await ca.createCrl();
    const revoked = await inspectCertificate(target.chainPem, { ...options, crlPems: [before, after] });
    assert.equal(revoked.revocation, 'revoked', 'the newest CRL decides');
    assert.equal(revoked.revocationReason, 'keyCompromise');
    assert.ok(revoked.revokedAt && Math.abs(revoked.revokedAt.getTime() - Date.now()) < 10_000);
    assert.equal(revoked.chain.verified, true, 'revocation is reported apart from the chain');
  });

  it('revocation: a CRL signed by another key is not believed', async () => {
    const victim = await other.issueWithKey({ kind: 'client', id: 'victim' });
    // The forged CRL lists the victim's serial and carries the right issuer name, but the wrong CA signed it.
    await ca.issueWithKey({ kind: 'client', id: 'decoy' });
    const forged = await forgeCrlListing(ca, victim.serial);
    const report = await inspectCertificate(victim.chainPem, {
      trustBundlePem: other.trustBundlePem(),
      crlPems: [forged],
    });
    assert.equal(report.revocation, 'unknown');
    assert.match(report.revocationProblem ?? '', /signature does not verify/);
  });

  it('revocation: a stale CRL gives unknown, but a listed certificate stays revoked', async () => {
    const crl = await ca.createCrl({ nextUpdateMs: 3_600_000 });
    const later = new Date(Date.now() + 2 * 3_600_000);
    const stale = await inspectCertificate(node.chainPem, {
      trustBundlePem: ca.trustBundlePem(),
      crlPems: [crl],
      now: later,
    });
    assert.equal(stale.revocation, 'unknown');
    assert.match(stale.revocationProblem ?? '', /CRL expired/);

    const listed = await ca.issueWithKey({ kind: 'client', id: 'listed-bot' });
    await ca.revoke(listed.serial, 'superseded');
    const crl2 = await ca.createCrl({ nextUpdateMs: 3_600_000 });
    const report = await inspectCertificate(listed.chainPem, {
      trustBundlePem: ca.trustBundlePem(),
      crlPems: [crl2],
      now: later,
    });
    assert.equal(report.revocation, 'revoked');
    assert.equal(report.revocationReason, 'superseded');
  });

  it('revocation: a CRL of another CA (same issuer name, other key) says nothing', async () => {
    const crl = await other.createCrl();
    const report = await inspectCertificate(client.chainPem, { trustBundlePem: ca.trustBundlePem(), crlPems: [crl] });
    assert.equal(report.revocation, 'unknown');
    assert.match(report.revocationProblem ?? '', /not signed/);
  });

  it('refuses input that is not a certificate (CERTIFICATE_INVALID) or a CRL that is not one (CRL_INVALID)', async () => {
    await rejectsWith(inspectCertificate('hello'), 'CERTIFICATE_INVALID');
    await rejectsWith(inspectCertificate(node.privateKeyPem), 'CERTIFICATE_INVALID', /PRIVATE KEY/);
    await rejectsWith(inspectCertificate(client.chainPem, { crlPems: ['garbage'] }), 'CRL_INVALID');
    await rejectsWith(inspectCertificate(client.chainPem, { trustBundlePem: 'nope' }), 'CERTIFICATE_INVALID');
  });
});

/** A CRL from `signer` that lists `serial` even though `signer` never issued it: what an attacker with the wrong key could make. */
async function forgeCrlListing(signer: CertificateAuthority, serial: string): Promise<string> {
  const { readFile, writeFile } = await import('node:fs/promises');
  const statePath = join(signer.dir, 'ca.json');
  const state = JSON.parse(await readFile(statePath, 'utf8')) as { issued: Array<Record<string, unknown>> };
  const template = state.issued[0] ?? {};
  state.issued.push({ ...template, serial, revoked: { at: new Date().toISOString(), reason: 'keyCompromise' } });
  await writeFile(statePath, JSON.stringify(state));
  return signer.createCrl();
}
