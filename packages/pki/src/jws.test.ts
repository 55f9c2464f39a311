import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spiffeId } from '@dmr/core';
import { CompactSign, compactVerify, decodeProtectedHeader } from 'jose';
import { CertificateAuthority } from './authority.js';
import { X5cJwsSigner, jwsAlgorithmFor, splitJws, verifyJwsSignature, verifyX5cJws, type JwsCheck } from './jws.js';
import type { KeyAlgorithm } from './keys.js';
import { loadSigningIdentity, type SigningIdentity } from './signer.js';
import { tempDir } from './test-support.js';

const TD = 'dmr.test';
const SIGNER = `spiffe://${TD}/centops/config-signer`;

class Refused extends Error {
  constructor(readonly check: JwsCheck) {
    super(check);
  }
}
const fail = (check: JwsCheck): Error => new Refused(check);
const refusedWith = (check: JwsCheck) => (error: unknown) => error instanceof Refused && error.check === check;

describe('x5c JWS', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  let ca: CertificateAuthority;
  const identities = new Map<KeyAlgorithm, SigningIdentity>();

  before(async () => {
    scratch = await tempDir();
    ca = await CertificateAuthority.init(join(scratch.path, 'ca'), { trustDomain: TD });
    for (const keyAlgorithm of ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'] as const) {
      const issued = await ca.issueWithKey({ kind: 'centops', id: 'config-signer', keyAlgorithm });
      identities.set(keyAlgorithm, loadSigningIdentity(issued.chainPem, issued.privateKeyPem, 'the test signer'));
    }
  });
  after(() => scratch.cleanup());

  const identity = (algorithm: KeyAlgorithm): SigningIdentity => identities.get(algorithm) as SigningIdentity;
  const expectation = () => ({ trustBundlePem: ca.trustBundlePem(), expectedSigner: SIGNER, typ: 'test+jws' });

  it('picks the algorithm from the key: ES256, ES384, PS256 (or RS256 on request, none when RSA is not allowed)', () => {
    assert.equal(jwsAlgorithmFor(identity('ecdsa-p256').key), 'ES256');
    assert.equal(jwsAlgorithmFor(identity('ecdsa-p384').key), 'ES384');
    assert.equal(jwsAlgorithmFor(identity('rsa-2048').key), 'PS256');
    assert.equal(jwsAlgorithmFor(identity('rsa-2048').key, 'RS256'), 'RS256');
    assert.equal(jwsAlgorithmFor(identity('rsa-2048').key, null), undefined);
  });

  for (const [keyAlgorithm, alg] of [
    ['ecdsa-p256', 'ES256'],
    ['ecdsa-p384', 'ES384'],
    ['rsa-2048', 'PS256'],
    ['rsa-2048', 'RS256'],
  ] as const) {
    it(`signs ${alg} that jose verifies, and verifies ${alg} that jose signs`, async () => {
      const signer = new X5cJwsSigner(identity(keyAlgorithm), alg);
      const jws = signer.compact(signer.header('test+jws'), '{"a":1}');
      const leaf = identity(keyAlgorithm).leaf;
      const verified = await compactVerify(jws, leaf.publicKey, { algorithms: [alg] });
      assert.equal(Buffer.from(verified.payload).toString('utf8'), '{"a":1}');
      assert.deepEqual(decodeProtectedHeader(jws), { alg, typ: 'test+jws', kid: signer.keyId, x5c: [...signer.x5c] });

      const byJose = await new CompactSign(Buffer.from('{"b":2}'))
        .setProtectedHeader({ alg, typ: 'test+jws', kid: signer.keyId, x5c: [...signer.x5c] })
        .sign(identity(keyAlgorithm).key);
      const ours = await verifyX5cJws(byJose, { ...expectation(), algorithms: [alg] }, fail);
      assert.equal(ours.payload.toString('utf8'), '{"b":2}');
      assert.equal(ours.signer.fingerprintSha256, signer.keyId);
    });
  }

  it('signs a detached payload that verifies with the payload put back', () => {
    const signer = new X5cJwsSigner(identity('ecdsa-p256'), 'ES256');
    const payload = Buffer.from('["dmr-hop-sig/1"]');
    const jws = signer.detached(signer.header('test+jws', { x5c: false }), payload);
    const parts = splitJws(jws, true);
    assert.ok(parts !== undefined && splitJws(jws) === undefined);
    const key = identity('ecdsa-p256').leaf.publicKey;
    const encoded = payload.toString('base64url');
    assert.equal(verifyJwsSignature('ES256', key, parts.encodedHeader, encoded, parts.encodedSignature), true);
    const other = Buffer.from('["dmr-hop-sig/2"]').toString('base64url');
    assert.equal(verifyJwsSignature('ES256', key, parts.encodedHeader, other, parts.encodedSignature), false);
    // A signature made for another algorithm is refused, never thrown.
    assert.equal(verifyJwsSignature('PS256', key, parts.encodedHeader, encoded, parts.encodedSignature), false);
  });

  it('refuses, naming the check: format, header, kid, signature, and the signer checks', async () => {
    const signer = new X5cJwsSigner(identity('ecdsa-p256'), 'ES256');
    const good = signer.compact(signer.header('test+jws'), '{}');
    const options = { ...expectation(), algorithms: ['ES256'] as const };
    await assert.rejects(verifyX5cJws('a.b', options, fail), refusedWith('format'));
    await assert.rejects(verifyX5cJws(`e30.${good.split('.')[1]}.AA`, options, fail), refusedWith('header'));
    await assert.rejects(verifyX5cJws(good, { ...options, algorithms: ['ES384'] }, fail), refusedWith('header'));
    await assert.rejects(verifyX5cJws(good, { ...options, typ: 'other+jws' }, fail), refusedWith('header'));
    const noChain = signer.compact(signer.header('test+jws', { x5c: false }), '{}');
    await assert.rejects(verifyX5cJws(noChain, options, fail), refusedWith('x5c'));
    const wrongKid = signer.compact(
      Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'test+jws', kid: 'ab', x5c: signer.x5c })).toString('base64url'),
      '{}',
    );
    await assert.rejects(verifyX5cJws(wrongKid, options, fail), refusedWith('kid'));
    const [head, , signature] = good.split('.');
    const tampered = `${head}.${Buffer.from('{"x":1}').toString('base64url')}.${signature}`;
    await assert.rejects(verifyX5cJws(tampered, options, fail), refusedWith('signature'));
    await assert.rejects(
      verifyX5cJws(good, { ...options, expectedSigner: spiffeId(TD, 'node', 'n1') }, fail),
      refusedWith('signer'),
    );
    const stranger = await CertificateAuthority.init(join(scratch.path, 'stranger'), { trustDomain: TD });
    await assert.rejects(
      verifyX5cJws(good, { ...options, trustBundlePem: stranger.trustBundlePem() }, fail),
      refusedWith('chain'),
    );
    const withoutKid = signer.compact(signer.header('test+jws', { kid: false }), '{}');
    assert.equal((await verifyX5cJws(withoutKid, { ...options, kid: false }, fail)).payload.toString(), '{}');
    await assert.rejects(verifyX5cJws(withoutKid, options, fail), refusedWith('header'));
  });
});
