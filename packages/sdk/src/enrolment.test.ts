/**
 * `enrol` and `renewCertificate` against a real CentOps (in process, real
 * TLS on both listeners): no broker needed, so this stays a unit-speed test.
 * The connection and automatic renewal through a node are in
 * renewal.integration.test.ts.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority } from '@dmr/pki';
import { describeCertificate } from './certificates.js';
import { startTestCentOps, type TestCentOps } from '@dmr/testkit';
import { enrol, renewCertificate } from './enrolment.js';

describe('enrolment and renewal against a real CentOps', () => {
  let centops: TestCentOps;

  before(async () => {
    centops = await startTestCentOps({
      label: 'sdk-enrol',
      organisations: { ria: 'RIA', rik: 'RIK' },
      nodes: ['node-a'],
      clients: [
        { id: 'ria-desk', organisation: 'ria' },
        { id: 'rik-bot', organisation: 'rik' },
      ],
    });
  });

  after(async () => {
    await centops?.close();
  });

  it('enrols with a token and a CSR (the key stays here), then renews with a new key', async () => {
    const token = await centops.token('ria-desk');
    const enrolled = await enrol({
      enrolUrl: centops.server.enrolUrl,
      token,
      id: 'ria-desk',
      caPem: centops.trustBundlePem,
    });
    assert.match(enrolled.keyPem, /BEGIN PRIVATE KEY/);
    const info = describeCertificate(enrolled.chainPem);
    assert.equal(info.id, 'ria-desk');
    assert.equal(info.trustDomain, 'dmr.test', 'trust domain read from the root name');
    assert.equal(enrolled.serial, info.serial);
    assert.ok(enrolled.notAfter > new Date());
    assert.equal(enrolled.trustBundlePem, centops.trustBundlePem);
    // The certificate is for the key made here: only the CSR travelled.
    assert.ok(new X509Certificate(enrolled.chainPem).checkPrivateKey(createPrivateKey(enrolled.keyPem)));
    // CentOps recorded it (the directory and the audit see the enrolment).
    const listed = await centops.api('/v1/certificates?id=ria-desk');
    assert.equal(listed.status, 200, listed.text);
    assert.ok(listed.text.includes(enrolled.serial.replace(/^0+/, '')), 'the new serial is listed');

    const renewed = await renewCertificate({
      apiUrl: centops.server.apiUrl,
      current: { cert: enrolled.chainPem, key: enrolled.keyPem, ca: enrolled.trustBundlePem },
    });
    assert.notEqual(renewed.serial, enrolled.serial);
    assert.notEqual(renewed.keyPem, enrolled.keyPem);
    assert.equal(describeCertificate(renewed.chainPem).id, 'ria-desk');
    assert.ok(new X509Certificate(renewed.chainPem).checkPrivateKey(createPrivateKey(renewed.keyPem)));
  });

  it('maps a used or unknown token to TOKEN_INVALID and an unreachable CentOps to CENTOPS_UNREACHABLE', async () => {
    const token = await centops.token('rik-bot');
    const options = { enrolUrl: centops.server.enrolUrl, token, id: 'rik-bot', caPem: centops.trustBundlePem };
    await enrol(options);
    await assert.rejects(enrol(options), (error: unknown) => {
      assert.equal((error as { code?: unknown }).code, 'TOKEN_INVALID');
      assert.match((error as { hint?: string }).hint ?? '', /new one/);
      return true;
    });
    await assert.rejects(enrol({ ...options, token: 'not-a-token' }), { code: 'TOKEN_INVALID' });
    await assert.rejects(enrol({ ...options, enrolUrl: 'https://localhost:1' }), { code: 'CENTOPS_UNREACHABLE' });
    await assert.rejects(enrol({ ...options, enrolUrl: 'http://localhost:1' }), { code: 'INVALID_ARGUMENT' });
  });

  it("sends the token only to CentOps: another node's certificate on the enrolment address is refused", async () => {
    const stolen = await centops.server.ca.issueWithKey({
      kind: 'node',
      id: 'node-a',
      dns: ['localhost'],
      ips: ['127.0.0.1'],
    });
    const received: string[] = [];
    const impostor = createServer({ cert: stolen.chainPem, key: stolen.privateKeyPem }, (request, response) => {
      request.on('data', (chunk: Buffer) => received.push(chunk.toString('utf8')));
      request.on('end', () => response.writeHead(404).end());
    });
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    try {
      const token = await centops.token('ria-desk');
      const { port } = impostor.address() as AddressInfo;
      await assert.rejects(
        enrol({ enrolUrl: `https://localhost:${port}`, token, id: 'ria-desk', caPem: centops.trustBundlePem }),
        (error: unknown) => {
          assert.equal((error as { code?: unknown }).code, 'SERVER_IDENTITY_MISMATCH');
          assert.match((error as Error).message, /node\/node-a, not spiffe:\/\/dmr\.test\/centops\/api/);
          return true;
        },
      );
      assert.ok(!received.join('').includes(token));
    } finally {
      impostor.closeAllConnections();
      await new Promise<void>((resolve) => impostor.close(() => resolve()));
    }
  });

  it('refuses a renewal without a certificate CentOps issued (the TLS handshake fails: CENTOPS_UNREACHABLE)', async () => {
    // A certificate for the same id from a CA CentOps does not know: CentOps' TLS listener refuses the handshake.
    const dir = await mkdtemp(join(tmpdir(), 'dmr-sdk-stranger-'));
    try {
      const stranger = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: 'dmr.test' });
      const forged = await stranger.issueWithKey({ kind: 'client', id: 'ria-desk' });
      await assert.rejects(
        renewCertificate({
          apiUrl: centops.server.apiUrl,
          current: { cert: forged.chainPem, key: forged.privateKeyPem, ca: centops.trustBundlePem },
        }),
        { code: 'CENTOPS_UNREACHABLE' },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
