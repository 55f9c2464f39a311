import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { spiffeId } from '@dmr/core';
import { checkCsr, createCsr, type CsrExpectation } from './csr.js';
import { generatePrivateKey } from './keys.js';
import { readSanExtension } from './names.js';
import { opensslCsr, rejectsWith, tamperLastByte, tempDir } from './test-support.js';
import { Pkcs10CertificateRequest } from './x509.js';

const TD = 'dmr.test';

function expect(
  id: string,
  kind: 'client' | 'node' = 'client',
  dns: string[] = [],
  ips: string[] = [],
): CsrExpectation {
  return { id, kind, trustDomain: TD, hosts: { dns, ips } };
}

describe('CSRs', () => {
  let key: string;
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    key = await generatePrivateKey();
    scratch = await tempDir();
  });
  after(() => scratch.cleanup());

  it('names the id as subject CN and the spiffe URI (plus node hosts) as SANs', async () => {
    const pem = await createCsr({
      id: 'dmr-tallinn',
      kind: 'node',
      trustDomain: TD,
      privateKeyPem: key,
      dns: ['Localhost'],
      ips: ['127.0.0.1'],
    });
    assert.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----/);
    const csr = new Pkcs10CertificateRequest(pem);
    assert.equal(csr.subject, 'CN=dmr-tallinn');
    assert.ok(await csr.verify());
    const san = readSanExtension(csr.getExtension('2.5.29.17')?.value ?? new ArrayBuffer(0));
    assert.deepEqual(san, {
      uris: [spiffeId(TD, 'node', 'dmr-tallinn')],
      dns: ['localhost'],
      ips: ['127.0.0.1'],
      other: [],
    });
    const checked = await checkCsr(pem, expect('dmr-tallinn', 'node', ['localhost'], ['127.0.0.1']));
    assert.equal(checked.key.algorithm, 'ecdsa-p256');
  });

  it('refuses to make a CSR for an invalid id, kind or trust domain, or a client with host names', async () => {
    await rejectsWith(createCsr({ id: 'Bad_Id', kind: 'client', trustDomain: TD, privateKeyPem: key }), 'INVALID_ID');
    await rejectsWith(
      createCsr({ id: 'ok-id', kind: 'robot' as 'client', trustDomain: TD, privateKeyPem: key }),
      'INVALID_ARGUMENT',
    );
    await rejectsWith(
      createCsr({ id: 'ok-id', kind: 'client', trustDomain: 'Not A Domain', privateKeyPem: key }),
      'INVALID_ARGUMENT',
    );
    await rejectsWith(
      createCsr({ id: 'ok-id', kind: 'client', trustDomain: TD, privateKeyPem: key, dns: ['x.example'] }),
      'SAN_NOT_ALLOWED',
    );
    await rejectsWith(
      createCsr({ id: 'ok-id', kind: 'client', trustDomain: TD, privateKeyPem: 'nope' }),
      'KEY_INVALID',
    );
  });

  it('property: the CN of a CSR is exactly the id, for any valid id', async () => {
    const edge = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789');
    const middle = fc.array(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'), { maxLength: 61 });
    const id = fc.tuple(edge, middle, edge).map(([a, m, b]) => `${a}${m.join('')}${b}`);
    await fc.assert(
      fc.asyncProperty(id, fc.constantFrom('client' as const, 'node' as const), async (value, kind) => {
        const pem = await createCsr({ id: value, kind, trustDomain: TD, privateKeyPem: key });
        assert.equal(new Pkcs10CertificateRequest(pem).subject, `CN=${value}`);
        await checkCsr(pem, expect(value, kind));
      }),
      { numRuns: 30 },
    );
  });

  it('CSR_MALFORMED: not PEM, the wrong PEM, broken DER, or several requests', async () => {
    const good = await createCsr({ id: 'police-bot', kind: 'client', trustDomain: TD, privateKeyPem: key });
    await rejectsWith(checkCsr('not a csr', expect('police-bot')), 'CSR_MALFORMED');
    await rejectsWith(checkCsr(key, expect('police-bot')), 'CSR_MALFORMED', /PRIVATE KEY/);
    await rejectsWith(
      checkCsr(
        '-----BEGIN CERTIFICATE REQUEST-----\nMIIBIjCByQIBADAV\n-----END CERTIFICATE REQUEST-----\n',
        expect('police-bot'),
      ),
      'CSR_MALFORMED',
    );
    await rejectsWith(checkCsr(good + good, expect('police-bot')), 'CSR_MALFORMED', /2 requests/);
  });

  it('CSR_SIGNATURE_INVALID: a CSR whose signature bytes were altered', async () => {
    const good = await createCsr({ id: 'police-bot', kind: 'client', trustDomain: TD, privateKeyPem: key });
    await rejectsWith(checkCsr(tamperLastByte(good), expect('police-bot')), 'CSR_SIGNATURE_INVALID');
  });

  it('CSR_SIGNATURE_INVALID: a CSR whose contents were altered after signing', async () => {
    const good = await createCsr({ id: 'police-bot', kind: 'client', trustDomain: TD, privateKeyPem: key });
    const der = Buffer.from(good.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('police-bot'));
    der.write('polize-bot', at, 'latin1');
    const altered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await rejectsWith(checkCsr(altered, expect('polize-bot')), 'CSR_SIGNATURE_INVALID');
  });

  it('CSR_MISMATCH: subject CN differs from the id', async () => {
    const pem = await createCsr({ id: 'police-bot', kind: 'client', trustDomain: TD, privateKeyPem: key });
    await rejectsWith(checkCsr(pem, expect('tax-bot')), 'CSR_MISMATCH', /police-bot/);
    const noCn = opensslCsr(scratch.path, ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/O=Police');
    await rejectsWith(checkCsr(noCn, expect('police-bot')), 'CSR_MISMATCH');
    const twoCn = opensslCsr(
      scratch.path,
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      '/CN=police-bot/CN=tax-bot',
    );
    await rejectsWith(checkCsr(twoCn, expect('police-bot')), 'CSR_MISMATCH');
  });

  it('CSR_MISMATCH: the spiffe URI names another kind, id or trust domain', async () => {
    const asNode = await createCsr({ id: 'police-bot', kind: 'node', trustDomain: TD, privateKeyPem: key });
    await rejectsWith(checkCsr(asNode, expect('police-bot', 'client')), 'CSR_MISMATCH', /spiffe:\/\/dmr\.test\/node/);
    const otherDomain = await createCsr({
      id: 'police-bot',
      kind: 'client',
      trustDomain: 'other.test',
      privateKeyPem: key,
    });
    await rejectsWith(checkCsr(otherDomain, expect('police-bot')), 'CSR_MISMATCH', /other\.test/);
  });

  it('CSR_MISMATCH: DNS or IP names in the CSR that were not requested', async () => {
    const pem = await createCsr({
      id: 'dmr-tallinn',
      kind: 'node',
      trustDomain: TD,
      privateKeyPem: key,
      dns: ['localhost', 'evil.example'],
      ips: ['127.0.0.1'],
    });
    await rejectsWith(
      checkCsr(pem, expect('dmr-tallinn', 'node', ['localhost'], ['127.0.0.1'])),
      'CSR_MISMATCH',
      /evil\.example/,
    );
    await rejectsWith(
      checkCsr(pem, expect('dmr-tallinn', 'node', ['localhost', 'evil.example'])),
      'CSR_MISMATCH',
      /127\.0\.0\.1/,
    );
    // A client CSR that sneaks in a host name is refused even though the request names none.
    const sneaky = opensslCsr(
      scratch.path,
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      '/CN=police-bot',
      ['subjectAltName=DNS:broker.example'],
    );
    await rejectsWith(checkCsr(sneaky, expect('police-bot')), 'CSR_MISMATCH', /broker\.example/);
  });

  it('CSR_MISMATCH: SAN types DMR never issues (e-mail, otherName)', async () => {
    const spec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    const email = opensslCsr(scratch.path, spec, '/CN=police-bot', ['subjectAltName=email:a@b.ee']);
    await rejectsWith(checkCsr(email, expect('police-bot')), 'CSR_MISMATCH', /email/);
    const other = opensslCsr(scratch.path, spec, '/CN=police-bot', ['subjectAltName=otherName:1.2.3.4;UTF8:x']);
    await rejectsWith(checkCsr(other, expect('police-bot')), 'CSR_MISMATCH', /otherName/);
  });

  it('accepts CSRs from openssl: no SANs, a subset of the requested hosts, case and IPv6 spelling differences', async () => {
    const spec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    await checkCsr(opensslCsr(scratch.path, spec, '/CN=police-bot'), expect('police-bot'));
    const node = opensslCsr(scratch.path, spec, '/CN=dmr-tallinn', [
      `subjectAltName=URI:${spiffeId(TD, 'node', 'dmr-tallinn')},DNS:LocalHost,IP:0:0:0:0:0:0:0:1`,
    ]);
    await checkCsr(node, expect('dmr-tallinn', 'node', ['localhost', 'broker.example'], ['::1', '127.0.0.1']));
    const rsa = opensslCsr(scratch.path, ['-newkey', 'rsa:2048'], '/CN=police-bot');
    assert.equal((await checkCsr(rsa, expect('police-bot'))).key.algorithm, 'rsa-2048');
  });

  it('WEAK_KEY: RSA below 2048 bits, other curves, Ed25519', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['-newkey', 'rsa:1024'], /rsa-1024/],
      [['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'], /ecdsa-p521/],
      [['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'], /secp256k1/],
      [['-newkey', 'ed25519'], /ed25519/],
    ];
    for (const [spec, why] of cases) {
      await rejectsWith(
        checkCsr(opensslCsr(scratch.path, spec, '/CN=police-bot'), expect('police-bot')),
        'WEAK_KEY',
        why,
      );
    }
  });
});
