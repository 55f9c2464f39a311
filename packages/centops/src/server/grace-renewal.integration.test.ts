/**
 * Grace renewal against a real CentOps (startEmptyCentOps: both listeners,
 * real TLS, SQLite): a certificate that expired while its holder was down is
 * renewed on a proof of its key within the grace period, and refused past
 * it, when revoked, or when its identity is denylisted. The certificate
 * service's clock is moved past expiry (the test's `clock`); the client is
 * the one every holder uses (@dmr/pki requestGraceRenewal).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { obtainCertificate, requestGraceRenewal, signRenewalProof, type ObtainedIdentity } from '@dmr/pki';
import { MAX_RENEWAL_NONCES, RENEWAL_NONCE_TTL_MS } from './certificates.js';
import { startEmptyCentOps, type EmptyCentOps } from './test-support/empty-centops.js';
import { call } from './test-support/https.js';

const ACTOR = 'spiffe://dmr.test/operator/admin';
const HOUR = 3_600_000;
const GRACE = 24 * HOUR;

describe('grace renewal of an expired certificate (real CentOps)', () => {
  let centops: EmptyCentOps;
  /** The certificate service's clock: the wall clock plus `skewMs`. */
  let skewMs = 0;

  before(async () => {
    centops = await startEmptyCentOps({
      label: 'grace-renewal',
      configure: (config) => {
        config.renewalGrace = '24h';
      },
      server: { now: () => new Date(Date.now() + skewMs) },
    });
    await centops.store.create('Organisation', { id: 'police', name: 'Police', labels: {} }, ACTOR);
    const profile = { keyAlgorithm: 'ecdsa-p256' as const, lifetime: '1h', extraDns: [], extraIps: [] };
    await centops.store.create(
      'Node',
      {
        id: 'node-a',
        amqpsEndpoint: 'amqps://127.0.0.1:5671',
        managementEndpoint: 'https://127.0.0.1:15671',
        labels: {},
        certificateProfile: profile,
      },
      ACTOR,
    );
    for (const id of ['bot-a', 'bot-b', 'bot-c', 'bot-d', 'bot-e']) {
      await centops.store.create(
        'Client',
        {
          id,
          organisation: 'police',
          homeNode: 'node-a',
          roles: ['bot'],
          labels: {},
          status: 'active',
          certificateProfile: profile,
        },
        ACTOR,
      );
    }
  });

  after(async () => {
    await centops?.close();
  });

  /** A certificate for `id`, then the clock moved to `sinceExpiryMs` after its notAfter. */
  async function expired(id: string, sinceExpiryMs: number): Promise<{ cert: string; key: string; serial: string }> {
    skewMs = 0;
    const enrolled = await centops.enrol(id);
    const notAfter = new X509Certificate(enrolled.cert).validTo;
    skewMs = Date.parse(notAfter) + sinceExpiryMs - Date.now();
    return enrolled;
  }

  function graceRenew(id: string, old: { cert: string; key: string }): Promise<ObtainedIdentity> {
    return obtainCertificate({
      id,
      kind: 'client',
      trustDomain: centops.trustDomain,
      what: `grace renewal of ${id}`,
      send: (csrPem) =>
        requestGraceRenewal({
          enrolUrl: centops.server.enrolUrl,
          caPem: centops.rootPem,
          trustDomain: centops.trustDomain,
          certificateChainPem: old.cert,
          privateKeyPem: old.key,
          csrPem,
        }),
    });
  }

  async function refusal(promise: Promise<unknown>): Promise<{ code: string; hint: string; message: string }> {
    try {
      await promise;
    } catch (error) {
      assert.ok(isDmrError(error), String(error));
      return { code: error.code, hint: error.hint ?? '', message: error.message };
    }
    assert.fail('the grace renewal was accepted');
  }

  it('renews a certificate that expired within the grace period, for a new key; the old key cannot renew twice', async () => {
    const old = await expired('bot-a', 2 * HOUR);
    const renewed = await graceRenew('bot-a', old);
    assert.notEqual(renewed.serial, old.serial.toLowerCase());
    assert.notEqual(renewed.privateKeyPem, old.key);
    // The old certificate is superseded like after any renewal; its successor is a valid certificate.
    const record = await centops.api(`/v1/certificates/${renewed.serial}`);
    assert.equal(record.status, 200, record.text);
    assert.equal((record.json as { revokedAt: unknown }).revokedAt, null);
  });

  it('spends a nonce once: the same proof again is refused', async () => {
    const old = await expired('bot-a', HOUR);
    const nonceAnswer = await call(`${centops.server.enrolUrl}/v1/renewal/nonce`, {
      ca: centops.rootPem,
      method: 'POST',
    });
    assert.equal(nonceAnswer.status, 201, nonceAnswer.text);
    const { nonce } = nonceAnswer.json as { nonce: string };
    const { csr } = await centops.csr('bot-a');
    const proof = signRenewalProof({ certificateChainPem: old.cert, privateKeyPem: old.key, nonce, csrPem: csr });
    const post = () =>
      call(`${centops.server.enrolUrl}/v1/renewal`, { ca: centops.rootPem, method: 'POST', body: { proof } });
    assert.equal((await post()).status, 201);
    const again = await post();
    assert.equal(again.status, 401, again.text);
    assert.match(again.text, /nonce is unknown, used or expired/);
  });

  it(`a nonce is good for ${RENEWAL_NONCE_TTL_MS / 60_000} min; at most ${MAX_RENEWAL_NONCES} are outstanding (RATE_LIMITED), and expired ones make room`, async () => {
    const old = await expired('bot-e', HOUR);
    const askNonce = () => call(`${centops.server.enrolUrl}/v1/renewal/nonce`, { ca: centops.rootPem, method: 'POST' });
    const { nonce } = (await askNonce()).json as { nonce: string };
    const { csr } = await centops.csr('bot-e');
    const proof = signRenewalProof({ certificateChainPem: old.cert, privateKeyPem: old.key, nonce, csrPem: csr });
    skewMs += RENEWAL_NONCE_TTL_MS;
    const late = await call(`${centops.server.enrolUrl}/v1/renewal`, {
      ca: centops.rootPem,
      method: 'POST',
      body: { proof },
    });
    assert.equal(late.status, 401, late.text);
    assert.match(late.text, /nonce is unknown, used or expired/);

    // An unauthenticated caller asking for nonces (beyond the listener's per-source rate) fills at most the bound.
    let handedOut = 0;
    for (; handedOut <= MAX_RENEWAL_NONCES; handedOut++) {
      try {
        centops.server.certificates.renewalNonce();
      } catch (error) {
        assert.ok(isDmrError(error) && error.code === 'RATE_LIMITED', String(error));
        break;
      }
    }
    assert.ok(handedOut <= MAX_RENEWAL_NONCES, 'the nonces stopped at the bound');
    const full = await askNonce();
    assert.equal(full.status, 429, full.text);
    assert.match(full.text, /RATE_LIMITED/);
    // Past every nonce's expiry there is room again (a day on: beyond the nonces the earlier tests left).
    skewMs += 24 * HOUR + RENEWAL_NONCE_TTL_MS;
    assert.equal((await askNonce()).status, 201);
  });

  it('refuses a proof signed by another key than the certificate it names', async () => {
    const old = await expired('bot-b', HOUR);
    const other = await centops.csr('bot-b');
    const refused = await refusal(graceRenew('bot-b', { cert: old.cert, key: other.key }));
    // The signer refuses before anything is sent: the key does not belong to the certificate.
    assert.equal(refused.code, 'KEY_INVALID');
  });

  it('refuses past the grace period with RENEWAL_GRACE_EXPIRED and the hint to re-enrol with a token', async () => {
    const old = await expired('bot-b', GRACE + 60_000);
    const refused = await refusal(graceRenew('bot-b', old));
    assert.equal(refused.code, 'RENEWAL_GRACE_EXPIRED');
    assert.match(refused.hint, /one-time token/);
  });

  it('refuses a revoked certificate (CERTIFICATE_REVOKED), also once the denylist entry is lifted', async () => {
    const old = await expired('bot-c', HOUR);
    skewMs = 0;
    const revoked = await centops.api(`/v1/certificates/${old.serial}/revoke`, {
      method: 'POST',
      body: { reason: 'keyCompromise' },
    });
    assert.equal(revoked.status, 200, revoked.text);
    const lifted = await centops.api('/v1/denylist/bot-c', { method: 'DELETE' });
    assert.ok(lifted.status === 200 || lifted.status === 204, lifted.text);
    skewMs = Date.parse(new X509Certificate(old.cert).validTo) + HOUR - Date.now();
    const refused = await refusal(graceRenew('bot-c', old));
    assert.equal(refused.code, 'CERTIFICATE_REVOKED');
  });

  it('refuses a denylisted identity (FORBIDDEN), though its certificate expired within the grace period', async () => {
    const old = await expired('bot-d', HOUR);
    const denied = await centops.api('/v1/denylist', {
      method: 'POST',
      body: { id: 'bot-d', kind: 'client', reason: 'test' },
    });
    assert.equal(denied.status, 201, denied.text);
    const refused = await refusal(graceRenew('bot-d', old));
    assert.equal(refused.code, 'FORBIDDEN');
    assert.match(refused.message, /denylist/);
  });
});
