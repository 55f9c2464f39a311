import assert from 'node:assert/strict';
import { generateKeyPairSync, createPrivateKey } from 'node:crypto';
import { describe, it } from 'node:test';
import { KEY_ALGORITHMS, describeKeyObject, generatePrivateKey, loadSigningKey } from './keys.js';
import { rejectsWith } from './test-support.js';

function pem(type: 'rsa' | 'ec' | 'ed25519', options: Record<string, unknown> = {}): string {
  const pair = generateKeyPairSync(type as 'ec', {
    ...(options as { namedCurve: string }),
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return pair.privateKey;
}

describe('private keys', () => {
  it('generates PKCS#8 PEM for every supported algorithm and loads it back for signing', async () => {
    for (const algorithm of KEY_ALGORITHMS) {
      const text = await generatePrivateKey(algorithm);
      assert.match(text, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n$/);
      const key = await loadSigningKey(text);
      assert.equal(key.description.algorithm, algorithm);
      assert.equal(key.description.strong, true);
      assert.equal(key.privateKey.type, 'private');
      assert.equal(key.publicKey.type, 'public');
    }
  });

  it('defaults to ECDSA P-256 and makes a new key every time', async () => {
    const [a, b] = await Promise.all([generatePrivateKey(), generatePrivateKey()]);
    assert.notEqual(a, b);
    assert.equal(describeKeyObject(createPrivateKey(a)).algorithm, 'ecdsa-p256');
  });

  it('signs with the hash matched to the curve', async () => {
    assert.deepEqual((await loadSigningKey(await generatePrivateKey('ecdsa-p384'))).signingAlgorithm, {
      name: 'ECDSA',
      hash: 'SHA-384',
    });
    assert.deepEqual((await loadSigningKey(await generatePrivateKey('ecdsa-p256'))).signingAlgorithm, {
      name: 'ECDSA',
      hash: 'SHA-256',
    });
  });

  it('reads the SEC1 and PKCS#1 forms OpenSSL writes', async () => {
    const ec = createPrivateKey(await generatePrivateKey())
      .export({ type: 'sec1', format: 'pem' })
      .toString();
    assert.match(ec, /BEGIN EC PRIVATE KEY/);
    assert.equal((await loadSigningKey(ec)).description.algorithm, 'ecdsa-p256');
    const rsa = createPrivateKey(await generatePrivateKey('rsa-2048')).export({ type: 'pkcs1', format: 'pem' });
    assert.equal((await loadSigningKey(rsa.toString())).description.algorithm, 'rsa-2048');
  });

  it('refuses an unknown algorithm name', async () => {
    await rejectsWith(generatePrivateKey('dsa-1024' as 'rsa-2048'), 'INVALID_ARGUMENT', /dsa-1024/);
  });

  it('refuses text that is not a private key (KEY_INVALID), with a hint', async () => {
    await rejectsWith(loadSigningKey('hello'), 'KEY_INVALID');
    await rejectsWith(loadSigningKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), 'KEY_INVALID');
  });

  it('refuses weak or unsupported keys (WEAK_KEY)', async () => {
    const weak: Array<[string, string]> = [
      [pem('rsa', { modulusLength: 1024 }), 'rsa-1024'],
      [pem('ec', { namedCurve: 'P-521' }), 'ecdsa-p521'],
      [pem('ec', { namedCurve: 'secp256k1' }), 'ecdsa-secp256k1'],
      [pem('ed25519'), 'ed25519'],
    ];
    for (const [text, algorithm] of weak) {
      await rejectsWith(loadSigningKey(text), 'WEAK_KEY', new RegExp(algorithm));
    }
  });
});
