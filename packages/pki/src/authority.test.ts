import assert from 'node:assert/strict';
import { copyFile, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { spiffeId } from '@dmr/core';
import { CertificateAuthority, DEFAULT_INTERMEDIATE_TTL_MS, DEFAULT_ROOT_TTL_MS } from './authority.js';
import { CA_FILES } from './ca-store.js';
import { parseCertificates, sha256Hex } from './certificates.js';
import { createCsr } from './csr.js';
import { generatePrivateKey } from './keys.js';
import { readSanExtension } from './names.js';
import { openssl, opensslVerify, rejectsWith, tempDir, writeAll } from './test-support.js';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectKeyIdentifierExtension,
  type X509Certificate,
} from './x509.js';

const TD = 'dmr.test';
const DAY = 86_400_000;

function only(pem: string): X509Certificate {
  const [certificate] = parseCertificates(pem);
  assert.ok(certificate);
  return certificate;
}

function sans(certificate: X509Certificate) {
  return readSanExtension(certificate.getExtension('2.5.29.17')?.value ?? new ArrayBuffer(0));
}

describe('CertificateAuthority.init and open', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    scratch = await tempDir();
  });
  after(() => scratch.cleanup());

  it('creates a 0700 directory with root and intermediate, keys 0600, and ca.json', async () => {
    const dir = join(scratch.path, 'fresh', 'ca');
    const ca = await CertificateAuthority.init(dir, { trustDomain: TD });
    assert.equal(ca.dir, dir);
    assert.equal(ca.trustDomain, TD);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    for (const key of [CA_FILES.rootKey, CA_FILES.intermediateKey, CA_FILES.state]) {
      assert.equal((await stat(join(dir, key))).mode & 0o777, 0o600, key);
    }
    assert.deepEqual((await readdir(dir)).sort(), [
      'ca.json',
      'intermediate.crt',
      'intermediate.key',
      'root.crt',
      'root.key',
    ]);
    assert.equal(await readFile(join(dir, CA_FILES.rootCertificate), 'utf8'), ca.rootCertificatePem);
    assert.equal(ca.trustBundlePem(), ca.rootCertificatePem);
  });

  it('makes a self-signed root (pathLen 1) and an intermediate it signed (pathLen 0), both ECDSA P-256', async () => {
    const ca = await CertificateAuthority.init(join(scratch.path, 'shape'), { trustDomain: TD });
    const root = only(ca.rootCertificatePem);
    const intermediate = only(ca.intermediateCertificatePem);
    assert.equal(root.subject, `CN=DMR Root CA (${TD})`);
    assert.equal(intermediate.subject, `CN=DMR Intermediate CA (${TD})`);
    assert.equal(intermediate.issuer, root.subject);
    assert.ok(await root.isSelfSigned());
    assert.ok(await intermediate.verify({ publicKey: root.publicKey, signatureOnly: true }));
    for (const [certificate, pathLength] of [
      [root, 1],
      [intermediate, 0],
    ] as const) {
      const constraints = certificate.getExtension(BasicConstraintsExtension);
      assert.equal(constraints?.ca, true);
      assert.equal(constraints?.pathLength, pathLength);
      assert.equal(constraints?.critical, true);
      assert.equal(
        certificate.getExtension(KeyUsagesExtension)?.usages,
        KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign,
      );
      assert.deepEqual(certificate.publicKey.algorithm, { name: 'ECDSA', namedCurve: 'P-256' });
      assert.ok(certificate.getExtension(SubjectKeyIdentifierExtension));
    }
    assert.equal(
      intermediate.getExtension(AuthorityKeyIdentifierExtension)?.keyId,
      root.getExtension(SubjectKeyIdentifierExtension)?.keyId,
    );
    const lifetime = (certificate: X509Certificate) => certificate.notAfter.getTime() - Date.now();
    assert.ok(Math.abs(lifetime(root) - DEFAULT_ROOT_TTL_MS) < 120_000);
    assert.ok(Math.abs(lifetime(intermediate) - DEFAULT_INTERMEDIATE_TTL_MS) < 120_000);
  });

  it('takes custom lifetimes and refuses an intermediate that outlives its root', async () => {
    const before = Date.now();
    const ca = await CertificateAuthority.init(join(scratch.path, 'ttl'), {
      trustDomain: TD,
      rootTtlMs: 30 * DAY,
      intermediateTtlMs: 7 * DAY,
    });
    // Between the clock before and after (notAfter is cut to whole seconds), however long the keys took.
    const notAfter = only(ca.intermediateCertificatePem).notAfter.getTime();
    assert.ok(notAfter >= before + 7 * DAY - 1_000 && notAfter <= Date.now() + 7 * DAY);
    await rejectsWith(
      CertificateAuthority.init(join(scratch.path, 'ttl-bad'), {
        trustDomain: TD,
        rootTtlMs: DAY,
        intermediateTtlMs: 2 * DAY,
      }),
      'INVALID_ARGUMENT',
      /outlive|exceeds/,
    );
    await rejectsWith(
      CertificateAuthority.init(join(scratch.path, 'td-bad'), { trustDomain: 'Bad Domain' }),
      'INVALID_ARGUMENT',
    );
  });

  it('refuses to init over an existing CA (ALREADY_EXISTS) and leaves it intact', async () => {
    const dir = join(scratch.path, 'twice');
    const ca = await CertificateAuthority.init(dir, { trustDomain: TD });
    await rejectsWith(CertificateAuthority.init(dir, { trustDomain: TD }), 'ALREADY_EXISTS');
    assert.equal((await CertificateAuthority.open(dir)).rootCertificatePem, ca.rootCertificatePem);
  });

  it('open: NOT_FOUND for a missing or empty directory, with a hint to init', async () => {
    await rejectsWith(CertificateAuthority.open(join(scratch.path, 'missing')), 'NOT_FOUND');
    const empty = await tempDir();
    try {
      await assert.rejects(CertificateAuthority.open(empty.path), (error: Error & { code?: string; hint?: string }) => {
        assert.equal(error.code, 'NOT_FOUND');
        assert.match(error.hint ?? '', /dmr pki init/);
        return true;
      });
    } finally {
      await empty.cleanup();
    }
  });

  it('open: CA_INVALID when files are missing, damaged or belong to another CA', async () => {
    const a = join(scratch.path, 'a');
    const b = join(scratch.path, 'b');
    await CertificateAuthority.init(a, { trustDomain: TD });
    await CertificateAuthority.init(b, { trustDomain: TD });

    await writeFile(join(a, CA_FILES.state), '{ not json');
    await rejectsWith(CertificateAuthority.open(a), 'CA_INVALID', /ca\.json/);
    await copyFile(join(b, CA_FILES.state), join(a, CA_FILES.state));
    await CertificateAuthority.open(a);

    await copyFile(join(b, CA_FILES.intermediateKey), join(a, CA_FILES.intermediateKey));
    await rejectsWith(CertificateAuthority.open(a), 'CA_INVALID', /intermediate\.key does not match/);
    await copyFile(join(b, CA_FILES.intermediateCertificate), join(a, CA_FILES.intermediateCertificate));
    await rejectsWith(CertificateAuthority.open(a), 'CA_INVALID', /not signed by root/);

    const partial = join(scratch.path, 'partial');
    await CertificateAuthority.init(partial, { trustDomain: TD });
    await writeFile(join(partial, CA_FILES.rootKey), 'garbage');
    await rejectsWith(CertificateAuthority.open(partial), 'CA_INVALID', /root\.key/);
    const { unlink } = await import('node:fs/promises');
    await unlink(join(partial, CA_FILES.state));
    await rejectsWith(CertificateAuthority.open(partial), 'CA_INVALID', /missing ca\.json/);
  });

  it('uses trust-bundle.pem when present (rollover) and insists it contains the current root', async () => {
    const a = join(scratch.path, 'roll-a');
    const b = join(scratch.path, 'roll-b');
    const caA = await CertificateAuthority.init(a, { trustDomain: TD });
    const caB = await CertificateAuthority.init(b, { trustDomain: TD });
    await writeFile(join(a, CA_FILES.trustBundle), caB.rootCertificatePem + caA.rootCertificatePem);
    const reopened = await CertificateAuthority.open(a);
    assert.equal(parseCertificates(reopened.trustBundlePem()).length, 2);
    await writeFile(join(a, CA_FILES.trustBundle), caB.rootCertificatePem);
    await rejectsWith(CertificateAuthority.open(a), 'CA_INVALID', /does not contain root\.crt/);
  });
});

describe('CertificateAuthority.issue', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  let ca: CertificateAuthority;
  let clientKey: string;
  before(async () => {
    scratch = await tempDir();
    ca = await CertificateAuthority.init(join(scratch.path, 'ca'), { trustDomain: TD });
    clientKey = await generatePrivateKey();
  });
  after(() => scratch.cleanup());

  async function clientCsr(id = 'police-bot'): Promise<string> {
    return createCsr({ id, kind: 'client', trustDomain: TD, privateKeyPem: clientKey });
  }

  it('issues a client certificate: CN, spiffe URI only, clientAuth, digitalSignature, CA:false, AKI/SKI, 24h', async () => {
    const before = Date.now();
    const issued = await ca.issue({ csrPem: await clientCsr(), kind: 'client', id: 'police-bot' });
    const leaf = only(issued.certificatePem);
    assert.equal(leaf.subject, 'CN=police-bot');
    assert.equal(leaf.issuer, `CN=DMR Intermediate CA (${TD})`);
    assert.deepEqual(sans(leaf), { uris: [spiffeId(TD, 'client', 'police-bot')], dns: [], ips: [], other: [] });
    assert.deepEqual(Array.from(leaf.getExtension(ExtendedKeyUsageExtension)?.usages ?? []), [
      ExtendedKeyUsage.clientAuth,
    ]);
    const usage = leaf.getExtension(KeyUsagesExtension);
    assert.equal(usage?.usages, KeyUsageFlags.digitalSignature);
    assert.equal(usage?.critical, true);
    const constraints = leaf.getExtension(BasicConstraintsExtension);
    assert.equal(constraints?.ca, false);
    assert.equal(constraints?.critical, true);
    const intermediate = only(ca.intermediateCertificatePem);
    assert.equal(
      leaf.getExtension(AuthorityKeyIdentifierExtension)?.keyId,
      intermediate.getExtension(SubjectKeyIdentifierExtension)?.keyId,
    );
    assert.ok(leaf.getExtension(SubjectKeyIdentifierExtension)?.keyId);
    assert.equal(leaf.getExtension('2.5.29.31'), null, 'no CRL distribution point');
    assert.ok(await leaf.verify({ publicKey: intermediate.publicKey, signatureOnly: true }));

    assert.equal(issued.serial, leaf.serialNumber);
    assert.equal(issued.fingerprintSha256, sha256Hex(leaf.rawData));
    assert.equal(issued.notBefore.getTime(), leaf.notBefore.getTime());
    assert.equal(issued.notAfter.getTime(), leaf.notAfter.getTime());
    assert.ok(leaf.notBefore.getTime() <= before && leaf.notBefore.getTime() >= before - 62_000, 'backdated ~1 minute');
    assert.ok(Math.abs(leaf.notAfter.getTime() - before - DAY) < 5_000);
    assert.equal(issued.chainPem, issued.certificatePem + ca.intermediateCertificatePem);
  });

  it('issues a node certificate with serverAuth+clientAuth and the requested DNS/IP SANs', async () => {
    const issued = await ca.issueWithKey({
      kind: 'node',
      id: 'dmr-tallinn',
      dns: ['localhost', 'broker.dmr.test'],
      ips: ['127.0.0.1', '::1'],
    });
    const leaf = only(issued.certificatePem);
    assert.deepEqual(sans(leaf), {
      uris: [spiffeId(TD, 'node', 'dmr-tallinn')],
      dns: ['localhost', 'broker.dmr.test'],
      ips: ['127.0.0.1', '::1'],
      other: [],
    });
    assert.deepEqual(Array.from(leaf.getExtension(ExtendedKeyUsageExtension)?.usages ?? []), [
      ExtendedKeyUsage.serverAuth,
      ExtendedKeyUsage.clientAuth,
    ]);
    assert.match(issued.privateKeyPem, /BEGIN PRIVATE KEY/);
  });

  it('takes SANs from the request, not from the CSR', async () => {
    const key = await generatePrivateKey();
    const csrPem = await createCsr({ id: 'dmr-tartu', kind: 'node', trustDomain: TD, privateKeyPem: key });
    const issued = await ca.issue({
      csrPem,
      kind: 'node',
      id: 'dmr-tartu',
      dns: ['tartu.dmr.test'],
      ips: ['10.0.0.7'],
    });
    assert.deepEqual(sans(only(issued.certificatePem)).dns, ['tartu.dmr.test']);
    assert.deepEqual(sans(only(issued.certificatePem)).ips, ['10.0.0.7']);
  });

  it('adds keyEncipherment for RSA keys and accepts RSA >= 2048', async () => {
    const issued = await ca.issueWithKey({ kind: 'client', id: 'rsa-bot', keyAlgorithm: 'rsa-3072' });
    const leaf = only(issued.certificatePem);
    assert.equal(
      leaf.getExtension(KeyUsagesExtension)?.usages,
      KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment,
    );
    assert.equal(leaf.publicKey.algorithm.name, 'RSASSA-PKCS1-v1_5');
  });

  it('chains for openssl verify (-CAfile root -untrusted intermediate), with the same fingerprint', async () => {
    const issued = await ca.issueWithKey({ kind: 'node', id: 'dmr-parnu', dns: ['localhost'] });
    const files = await writeAll(scratch.path, {
      'root.pem': ca.rootCertificatePem,
      'int.pem': ca.intermediateCertificatePem,
      'leaf.pem': issued.certificatePem,
    });
    const verify = opensslVerify({
      caFile: files['root.pem'],
      untrusted: files['int.pem'],
      certificate: files['leaf.pem'],
    });
    assert.equal(verify.status, 0, verify.stderr + verify.stdout);
    assert.match(verify.stdout, /leaf\.pem: OK/);
    const purpose = opensslVerify({
      purpose: 'sslserver',
      caFile: files['root.pem'],
      untrusted: files['int.pem'],
      certificate: files['leaf.pem'],
    });
    assert.equal(purpose.status, 0, purpose.stderr);
    const fingerprint = openssl(['x509', '-in', files['leaf.pem'] ?? '', '-noout', '-fingerprint', '-sha256']);
    assert.equal(fingerprint.stdout.trim().split('=')[1]?.replace(/:/g, '').toLowerCase(), issued.fingerprintSha256);
    const text = openssl(['x509', '-in', files['leaf.pem'] ?? '', '-noout', '-text']).stdout;
    assert.doesNotMatch(text, /CRL Distribution/);
    assert.match(text, /URI:spiffe:\/\/dmr\.test\/node\/dmr-parnu, DNS:localhost/);
  });

  it('a client certificate is not accepted for server use by openssl', async () => {
    const issued = await ca.issue({ csrPem: await clientCsr(), kind: 'client', id: 'police-bot' });
    const files = await writeAll(scratch.path, { 'r.pem': ca.rootCertificatePem, 'c.pem': issued.chainPem });
    const verifyFor = (purpose: 'sslserver' | 'sslclient') =>
      opensslVerify({ purpose, caFile: files['r.pem'], untrusted: files['c.pem'], certificate: files['c.pem'] });
    assert.notEqual(verifyFor('sslserver').status, 0);
    const client = verifyFor('sslclient');
    assert.equal(client.status, 0, client.stderr);
  });

  it('serials are 128-bit, positive, 32 hex digits and unique', async () => {
    const issued = await Promise.all(
      Array.from({ length: 40 }, (_, i) => ca.issueWithKey({ kind: 'client', id: `bulk-${i}` })),
    );
    const serials = issued.map((item) => item.serial);
    assert.equal(new Set(serials).size, serials.length);
    for (const serial of serials) assert.match(serial, /^[1-7][0-9a-f]{31}$/);
    const recorded = new Set((await ca.listIssued()).map((record) => record.serial));
    for (const serial of serials) assert.ok(recorded.has(serial));
  });

  it('honours ttl and an explicit window (expired certificates for tests)', async () => {
    const before = Date.now();
    const short = await ca.issueWithKey({ kind: 'client', id: 'short-lived', ttlMs: 3_600_000 });
    // Between the clock before and after issuing (notAfter is cut to whole seconds), however long it took.
    assert.ok(short.notAfter.getTime() >= before + 3_600_000 - 1_000);
    assert.ok(short.notAfter.getTime() <= Date.now() + 3_600_000);
    const notBefore = new Date(Date.now() - 3 * DAY);
    const notAfter = new Date(Date.now() - DAY);
    const expired = await ca.issueWithKey({ kind: 'client', id: 'expired-bot', notBefore, notAfter });
    assert.equal(expired.notAfter.getTime(), Math.floor(notAfter.getTime() / 1000) * 1000);
    assert.equal(only(expired.certificatePem).notBefore.getTime(), Math.floor(notBefore.getTime() / 1000) * 1000);
    await rejectsWith(
      ca.issueWithKey({ kind: 'client', id: 'empty-window', notBefore: notAfter, notAfter: notBefore }),
      'INVALID_ARGUMENT',
    );
    await rejectsWith(
      ca.issueWithKey({ kind: 'client', id: 'too-long', ttlMs: 400 * DAY }),
      'INVALID_ARGUMENT',
      /outlive/,
    );
    await rejectsWith(ca.issueWithKey({ kind: 'client', id: 'zero', ttlMs: 0 }), 'INVALID_ARGUMENT');
  });

  it('SAN_NOT_ALLOWED: host names on a client certificate', async () => {
    await rejectsWith(
      ca.issue({ csrPem: await clientCsr(), kind: 'client', id: 'police-bot', dns: ['x.dmr.test'] }),
      'SAN_NOT_ALLOWED',
    );
    await rejectsWith(
      ca.issue({ csrPem: await clientCsr(), kind: 'client', id: 'police-bot', ips: ['10.1.1.1'] }),
      'SAN_NOT_ALLOWED',
    );
  });

  it('INVALID_ARGUMENT: malformed DNS names or IP addresses', async () => {
    const base = { kind: 'node' as const, id: 'dmr-bad' };
    await rejectsWith(ca.issueWithKey({ ...base, dns: ['*.dmr.test'] }), 'INVALID_ARGUMENT');
    await rejectsWith(ca.issueWithKey({ ...base, ips: ['300.1.1.1'] }), 'INVALID_ARGUMENT');
    await rejectsWith(ca.issueWithKey({ ...base, ips: ['localhost'] }), 'INVALID_ARGUMENT');
  });

  it('property: ids outside the id rules are refused with INVALID_ID', async () => {
    const invalid = fc.oneof(
      fc.string({ maxLength: 1 }),
      fc.string({ minLength: 64, maxLength: 80 }),
      fc.stringMatching(/^[a-z0-9-]*[A-Z_ .ä][a-z0-9-]*$/),
      fc.stringMatching(/^-[a-z0-9]{1,10}$/),
      fc.stringMatching(/^[a-z0-9]{1,10}-$/),
    );
    await fc.assert(
      fc.asyncProperty(invalid, async (id) => {
        await rejectsWith(ca.issue({ csrPem: await clientCsr(), kind: 'client', id }), 'INVALID_ID');
        await rejectsWith(ca.issueWithKey({ kind: 'node', id }), 'INVALID_ID');
      }),
      { numRuns: 60 },
    );
  });

  it('property: any valid id gets a certificate naming exactly that id', async () => {
    const edge = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789');
    const middle = fc.array(fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'), { maxLength: 61 });
    const id = fc.tuple(edge, middle, edge).map(([a, m, b]) => `${a}${m.join('')}${b}`);
    await fc.assert(
      fc.asyncProperty(id, fc.constantFrom('client' as const, 'node' as const), async (value, kind) => {
        const leaf = only((await ca.issueWithKey({ kind, id: value })).certificatePem);
        assert.equal(leaf.subject, `CN=${value}`);
        assert.deepEqual(sans(leaf).uris, [spiffeId(TD, kind, value)]);
      }),
      { numRuns: 20 },
    );
  });

  it('keeps every record when two CA objects on one directory issue concurrently', async () => {
    const dir = join(scratch.path, 'shared');
    const first = await CertificateAuthority.init(dir, { trustDomain: TD });
    const second = await CertificateAuthority.open(dir);
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        (i % 2 ? first : second).issueWithKey({ kind: 'client', id: `shared-${i}` }),
      ),
    );
    const records = await first.listIssued();
    assert.equal(records.length, 12);
    assert.deepEqual(new Set(records.map((record) => record.id)).size, 12);
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.startsWith('.') || name === CA_FILES.lock),
      [],
    );
  });
});

describe('CertificateAuthority.revoke and listIssued', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  let ca: CertificateAuthority;
  before(async () => {
    scratch = await tempDir();
    ca = await CertificateAuthority.init(join(scratch.path, 'ca'), { trustDomain: TD });
  });
  after(() => scratch.cleanup());

  it('records issued certificates with kind, id, validity and fingerprint', async () => {
    const issued = await ca.issueWithKey({ kind: 'node', id: 'dmr-narva', dns: ['narva.dmr.test'] });
    const record = (await ca.listIssued()).find((item) => item.serial === issued.serial);
    assert.ok(record);
    assert.equal(record.kind, 'node');
    assert.equal(record.id, 'dmr-narva');
    assert.deepEqual(record.dns, ['narva.dmr.test']);
    assert.equal(record.notAfter.getTime(), issued.notAfter.getTime());
    assert.equal(record.fingerprintSha256, issued.fingerprintSha256);
    assert.equal(record.revoked, undefined);
  });

  it('revokes by serial in any common notation, once', async () => {
    const issued = await ca.issueWithKey({ kind: 'client', id: 'lost-laptop' });
    const colons = issued.serial.toUpperCase().replace(/(..)(?!$)/g, '$1:');
    await ca.revoke(`00:${colons}`, 'keyCompromise');
    const record = await ca.findIssued(issued.serial);
    assert.equal(record?.revoked?.reason, 'keyCompromise');
    assert.ok(record?.revoked && Math.abs(record.revoked.at.getTime() - Date.now()) < 5_000);
    await rejectsWith(ca.revoke(issued.serial, 'superseded'), 'ALREADY_REVOKED');
    assert.equal((await ca.findIssued(issued.serial))?.revoked?.reason, 'keyCompromise');
  });

  it('refuses unknown serials (UNKNOWN_SERIAL), bad serials and bad reasons (INVALID_ARGUMENT)', async () => {
    await rejectsWith(ca.revoke('1234abcd', 'superseded'), 'UNKNOWN_SERIAL');
    await rejectsWith(ca.revoke('not-hex', 'superseded'), 'INVALID_ARGUMENT');
    const issued = await ca.issueWithKey({ kind: 'client', id: 'reason-bot' });
    await rejectsWith(ca.revoke(issued.serial, 'because' as 'superseded'), 'INVALID_ARGUMENT');
    assert.equal((await ca.findIssued(issued.serial))?.revoked, undefined);
  });
});
