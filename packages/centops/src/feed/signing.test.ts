import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isDmrError, type ErrorCode } from '@dmr/core';
import { client, link, node } from '../store/test-support/fixtures.js';
import { buildNodeConfig, type NodeConfig } from './node-config.js';
import { ConfigSigner, configSignerSpiffeId, verifyNodeConfig, type VerifyOptions } from './signing.js';
import { TEST_SIGNER_URI, TRUST_DOMAIN, snapshotOf, testPki, type TestPki } from './test-support.js';

const NOW = new Date();

function configFor(nodeId: string, revision = 5): NodeConfig {
  const snapshot = snapshotOf({
    revision,
    nodes: [node('dmr-tallinn'), node('dmr-tartu')],
    clients: [client('police-bot', 'police', 'dmr-tallinn')],
    links: [link('dmr-tallinn', 'dmr-tartu')],
  });
  return buildNodeConfig(snapshot, [], nodeId, NOW, { trustDomain: TRUST_DOMAIN });
}

async function refused(jws: string, options: VerifyOptions, code: ErrorCode, check: string): Promise<void> {
  await assert.rejects(verifyNodeConfig(jws, options), (error: unknown) => {
    assert.ok(isDmrError(error), String(error));
    assert.equal(error.code, code, error.message);
    assert.equal(error.details.check, check, error.message);
    assert.match(error.message, new RegExp(`\\(${check}\\)`));
    return true;
  });
}

function b64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}

describe('node configuration signing', () => {
  let pki: TestPki;
  let other: TestPki;
  let options: VerifyOptions;

  before(async () => {
    pki = await testPki();
    other = await testPki();
    options = {
      trustBundlePem: pki.ca.trustBundlePem(),
      expectedSigner: TEST_SIGNER_URI,
      expectedNodeId: 'dmr-tallinn',
      now: NOW,
    };
  });
  after(async () => {
    await pki.cleanup();
    await other.cleanup();
  });

  it('round trip: verifies and returns the document', async () => {
    const config = configFor('dmr-tallinn');
    const jws = await pki.signer.sign(config);
    const header = JSON.parse(Buffer.from(jws.split('.')[0] as string, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    assert.equal(header.alg, 'ES256');
    assert.equal(header.kid, pki.signer.keyId);
    assert.equal((header.x5c as string[]).length, 2, 'leaf and intermediate');
    const verified = await verifyNodeConfig(jws, { ...options, minRevision: 5 });
    assert.deepEqual(verified.config, config);
    assert.equal(verified.signer.fingerprint, pki.signer.keyId);
  });

  it('signs with PS256 for an RSA key', async () => {
    const issued = await pki.ca.issueWithKey({ kind: 'node', id: 'config-signer', keyAlgorithm: 'rsa-2048' });
    const rsa = new ConfigSigner({ certificateChainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem });
    assert.equal(rsa.algorithm, 'PS256');
    const verified = await verifyNodeConfig(await rsa.sign(configFor('dmr-tallinn')), options);
    assert.equal(verified.config.node.id, 'dmr-tallinn');
    const rs = new ConfigSigner({
      certificateChainPem: issued.chainPem,
      privateKeyPem: issued.privateKeyPem,
      rsaAlgorithm: 'RS256',
    });
    assert.equal((await verifyNodeConfig(await rs.sign(configFor('dmr-tallinn')), options)).config.revision, 5);
  });

  it('signs with ES384 for a P-384 key', async () => {
    const issued = await pki.ca.issueWithKey({ kind: 'node', id: 'config-signer', keyAlgorithm: 'ecdsa-p384' });
    const p384 = new ConfigSigner({ certificateChainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem });
    assert.equal(p384.algorithm, 'ES384');
    assert.equal((await verifyNodeConfig(await p384.sign(configFor('dmr-tallinn')), options)).config.revision, 5);
  });

  it('refuses a tampered payload byte', async () => {
    const [header, payload, signature] = (await pki.signer.sign(configFor('dmr-tallinn'))).split('.') as [
      string,
      string,
      string,
    ];
    const bytes = Buffer.from(payload, 'base64url');
    const at = bytes.indexOf('"revision":5');
    bytes[at + 11] = '6'.charCodeAt(0);
    await refused(
      `${header}.${bytes.toString('base64url')}.${signature}`,
      options,
      'CONFIG_SIGNATURE_INVALID',
      'signature',
    );
    // Any single flipped byte, anywhere in the payload, is caught.
    const flipped = Buffer.from(payload, 'base64url');
    flipped[0] = (flipped[0] as number) ^ 0x01;
    await refused(
      `${header}.${flipped.toString('base64url')}.${signature}`,
      options,
      'CONFIG_SIGNATURE_INVALID',
      'signature',
    );
  });

  it('refuses a swapped header', async () => {
    const jws = await pki.signer.sign(configFor('dmr-tallinn'));
    const [header, payload, signature] = jws.split('.') as [string, string, string];
    const decoded = JSON.parse(Buffer.from(header, 'base64url').toString()) as Record<string, unknown>;
    // Same signer, a header with one more field: the signature covers the header too.
    await refused(
      `${b64url(JSON.stringify({ ...decoded, extra: 1 }))}.${payload}.${signature}`,
      options,
      'CONFIG_SIGNATURE_INVALID',
      'signature',
    );
    // Another trusted certificate's chain put in x5c/kid: the signature is not by its key.
    const impostor = await pki.ca.issueWithKey({ kind: 'node', id: 'config-signer' });
    const impostorSigner = new ConfigSigner({
      certificateChainPem: impostor.chainPem,
      privateKeyPem: impostor.privateKeyPem,
    });
    const [impostorHeader] = (await impostorSigner.sign(configFor('dmr-tallinn'))).split('.') as [string];
    await refused(`${impostorHeader}.${payload}.${signature}`, options, 'CONFIG_SIGNATURE_INVALID', 'signature');
    // kid naming another certificate than x5c's
    await refused(
      `${b64url(JSON.stringify({ ...decoded, kid: 'f'.repeat(64) }))}.${payload}.${signature}`,
      options,
      'CONFIG_SIGNATURE_INVALID',
      'kid',
    );
    // alg none / unknown
    await refused(
      `${b64url(JSON.stringify({ ...decoded, alg: 'none' }))}.${payload}.${signature}`,
      options,
      'CONFIG_SIGNATURE_INVALID',
      'header',
    );
    await refused(
      `${b64url(JSON.stringify({ ...decoded, typ: 'JWT' }))}.${payload}.${signature}`,
      options,
      'CONFIG_SIGNATURE_INVALID',
      'header',
    );
    await refused('not.a-jws', options, 'CONFIG_SIGNATURE_INVALID', 'format');
  });

  it('refuses a signer that chains to another CA', async () => {
    const jws = await other.signer.sign(configFor('dmr-tallinn'));
    await refused(jws, options, 'CONFIG_SIGNATURE_INVALID', 'chain');
  });

  it('refuses a signer with the wrong identity', async () => {
    const issued = await pki.ca.issueWithKey({ kind: 'node', id: 'dmr-tallinn' });
    const node = new ConfigSigner({ certificateChainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem });
    await refused(await node.sign(configFor('dmr-tallinn')), options, 'CONFIG_SIGNATURE_INVALID', 'signer');
    assert.equal(configSignerSpiffeId('dmr.test'), 'spiffe://dmr.test/centops/config-signer');
  });

  it('refuses an expired signer certificate', async () => {
    const jws = await pki.signer.sign(configFor('dmr-tallinn'));
    await refused(jws, { ...options, now: new Date(Date.now() + 2 * 3_600_000) }, 'CONFIG_SIGNATURE_INVALID', 'chain');
  });

  it('refuses a document for another node', async () => {
    const jws = await pki.signer.sign(configFor('dmr-tartu'));
    await refused(jws, options, 'CONFIG_INVALID', 'node');
  });

  it('refuses a document for another trust domain than its signer’s', async () => {
    const foreign = { ...configFor('dmr-tallinn'), trustDomain: 'other.test' };
    await refused(await pki.signer.sign(foreign), options, 'CONFIG_INVALID', 'domain');
  });

  it('refuses an older revision, accepts the same one again', async () => {
    const jws = await pki.signer.sign(configFor('dmr-tallinn', 5));
    await refused(jws, { ...options, minRevision: 6 }, 'CONFIG_INVALID', 'revision');
    assert.equal((await verifyNodeConfig(jws, { ...options, minRevision: 5 })).config.revision, 5);
  });

  it('refuses a validly signed document that breaks the schema', async () => {
    const bad = { ...configFor('dmr-tallinn'), limits: { maxMessageBytes: 0 } } as unknown as NodeConfig;
    await refused(await pki.signer.sign(bad), options, 'CONFIG_INVALID', 'schema');
  });

  it('refuses a key that does not match the certificate', () => {
    assert.throws(
      () => new ConfigSigner({ certificateChainPem: pki.signerChainPem, privateKeyPem: other.signerKeyPem }),
      (error: unknown) => isDmrError(error) && error.code === 'KEY_INVALID',
    );
  });
});
