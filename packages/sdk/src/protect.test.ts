import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority } from '@dmr/pki';
import { checkPeerCertificate, describeCertificate } from './certificates.js';
import { protectPayload, protectionStage, unprotectPayload, type MessageBinding } from './protect.js';

interface Identity {
  chainPem: string;
  privateKeyPem: string;
}

describe('end-to-end protection', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let otherCa: CertificateAuthority;
  let ria: Identity;
  let rik: Identity;
  let rsa: Identity;
  let stranger: Identity;
  const binding: MessageBinding = {
    id: '0b5a8f4e-3c43-4d52-9d0e-7e2a0c1f9a11',
    from: 'ria-bot',
    to: 'rik-bot',
    type: 'ChatMessage',
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmr-sdk-protect-'));
    ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: 'dmr.test' });
    otherCa = await CertificateAuthority.init(join(dir, 'other'), { trustDomain: 'dmr.test' });
    ria = await ca.issueWithKey({ kind: 'client', id: 'ria-bot' });
    rik = await ca.issueWithKey({ kind: 'client', id: 'rik-bot' });
    rsa = await ca.issueWithKey({ kind: 'client', id: 'rsa-bot', keyAlgorithm: 'rsa-2048' });
    stranger = await otherCa.issueWithKey({ kind: 'client', id: 'ria-bot' });
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const payload = Buffer.from('{"text":"secret question"}');

  it('round-trips: JWE for the recipient around a JWS by the sender', async () => {
    const body = await protectPayload(payload, binding, { signWith: ria.privateKeyPem, encryptFor: rik.chainPem });
    const text = body.toString('utf8');
    assert.equal(text.split('.').length, 5, 'compact JWE');
    assert.ok(!text.includes('secret'));
    const header = JSON.parse(Buffer.from(text.split('.')[0] ?? '', 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
    assert.equal(header.alg, 'ECDH-ES+A256KW');
    assert.equal(header.enc, 'A256GCM');
    const opened = await unprotectPayload(body, binding, {
      decryptWith: rik.privateKeyPem,
      senderCertificate: ria.chainPem,
    });
    assert.deepEqual(opened, payload);
  });

  it('works with an RSA recipient (RSA-OAEP-256) and an RSA signer (PS256)', async () => {
    const toRsa = { ...binding, to: 'rsa-bot' };
    const body = await protectPayload(payload, toRsa, { signWith: ria.privateKeyPem, encryptFor: rsa.chainPem });
    assert.deepEqual(
      await unprotectPayload(body, toRsa, { decryptWith: rsa.privateKeyPem, senderCertificate: ria.chainPem }),
      payload,
    );
    const fromRsa = { ...binding, from: 'rsa-bot' };
    const signed = await protectPayload(payload, fromRsa, { signWith: rsa.privateKeyPem, encryptFor: rik.chainPem });
    assert.deepEqual(
      await unprotectPayload(signed, fromRsa, { decryptWith: rik.privateKeyPem, senderCertificate: rsa.chainPem }),
      payload,
    );
  });

  it('refuses a tampered ciphertext', async () => {
    const body = await protectPayload(payload, binding, { signWith: ria.privateKeyPem, encryptFor: rik.chainPem });
    const parts = body.toString('utf8').split('.');
    const ciphertext = Buffer.from(parts[3] ?? '', 'base64url');
    ciphertext[0] = (ciphertext[0] ?? 0) ^ 0x01;
    parts[3] = ciphertext.toString('base64url');
    await assert.rejects(
      unprotectPayload(Buffer.from(parts.join('.')), binding, {
        decryptWith: rik.privateKeyPem,
        senderCertificate: ria.chainPem,
      }),
      { code: 'PROTECTION_INVALID' },
    );
  });

  it('refuses the wrong recipient key, a forged signer and a replay under another id or recipient', async () => {
    const body = await protectPayload(payload, binding, { signWith: ria.privateKeyPem, encryptFor: rik.chainPem });
    await assert.rejects(
      unprotectPayload(body, binding, { decryptWith: ria.privateKeyPem, senderCertificate: ria.chainPem }),
      { code: 'PROTECTION_INVALID' },
    );
    await assert.rejects(
      unprotectPayload(body, binding, { decryptWith: rik.privateKeyPem, senderCertificate: stranger.chainPem }),
      { code: 'PROTECTION_INVALID' },
    );
    for (const changed of [
      { id: '1b5a8f4e-3c43-4d52-9d0e-7e2a0c1f9a11' },
      { to: 'ppa-bot' },
      { type: 'Other' },
      { from: 'ppa-bot' },
    ]) {
      await assert.rejects(
        unprotectPayload(
          body,
          { ...binding, ...changed },
          { decryptWith: rik.privateKeyPem, senderCertificate: ria.chainPem },
        ),
        { code: 'PROTECTION_INVALID' },
        JSON.stringify(changed),
      );
    }
  });

  it('tries several own keys and several sender certificates (renewals), and says which stage failed', async () => {
    const renewedRik = await ca.issueWithKey({ kind: 'client', id: 'rik-bot' });
    const renewedRia = await ca.issueWithKey({ kind: 'client', id: 'ria-bot' });
    // Encrypted for rik's previous certificate, signed with ria's renewed key.
    const body = await protectPayload(payload, binding, {
      signWith: renewedRia.privateKeyPem,
      encryptFor: rik.chainPem,
    });
    const opened = await unprotectPayload(body, binding, {
      decryptWith: [renewedRik.privateKeyPem, rik.privateKeyPem],
      senderCertificate: [ria.chainPem, renewedRia.chainPem],
    });
    assert.deepEqual(opened, payload);
    const stageOf = async (promise: Promise<unknown>): Promise<string | undefined> => {
      try {
        await promise;
        return 'opened';
      } catch (error) {
        return protectionStage(error);
      }
    };
    assert.equal(
      await stageOf(
        unprotectPayload(body, binding, { decryptWith: [renewedRik.privateKeyPem], senderCertificate: ria.chainPem }),
      ),
      'decrypt',
    );
    assert.equal(
      await stageOf(
        unprotectPayload(body, binding, { decryptWith: rik.privateKeyPem, senderCertificate: [ria.chainPem] }),
      ),
      'verify',
    );
    assert.equal(
      await stageOf(
        unprotectPayload(
          body,
          { ...binding, type: 'Other' },
          { decryptWith: rik.privateKeyPem, senderCertificate: renewedRia.chainPem },
        ),
      ),
      'binding',
    );
  });

  it('checks peer certificates: id, validity, chain to the trust bundle', () => {
    checkPeerCertificate(rik.chainPem, 'rik-bot', ca.trustBundlePem());
    assert.throws(() => checkPeerCertificate(rik.chainPem, 'ria-bot', ca.trustBundlePem()), {
      code: 'CERTIFICATE_INVALID',
    });
    assert.throws(() => checkPeerCertificate(stranger.chainPem, 'ria-bot', ca.trustBundlePem()), {
      code: 'CERTIFICATE_INVALID',
    });
    assert.throws(() => checkPeerCertificate(rik.chainPem, 'rik-bot', ca.trustBundlePem(), new Date('2099-01-01')), {
      code: 'CERTIFICATE_INVALID',
    });
    const info = describeCertificate(rik.chainPem);
    assert.equal(info.id, 'rik-bot');
    assert.equal(info.trustDomain, 'dmr.test');
  });
});
