import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { DmrError } from '@dmr/core';
import type { CertificateAuthority } from '@dmr/pki';
import { canonicalName, crlFileName, crlRefreshDelayMs, installCrlFile, nameHash, parseCrl } from './crl.js';
import { encodeElement, TAG } from './der.js';
import { makeTempDir, makeTestCa, skipUnless } from './testing.js';

const OID_CN = Uint8Array.from([0x06, 0x03, 0x55, 0x04, 0x03]);
const OID_O = Uint8Array.from([0x06, 0x03, 0x55, 0x04, 0x0a]);

function name(...rdns: Array<Array<[Uint8Array, number, string]>>): Uint8Array {
  const sets = rdns.map((attributes) =>
    encodeElement(
      TAG.SET,
      Buffer.concat(
        attributes.map(([oid, tag, text]) =>
          encodeElement(TAG.SEQUENCE, Buffer.concat([oid, encodeElement(tag, Buffer.from(text, 'utf8'))])),
        ),
      ),
    ),
  );
  return encodeElement(TAG.SEQUENCE, Buffer.concat(sets));
}

describe('CRL naming for ssl_crl_hash_dir', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let ca: CertificateAuthority;

  before(async () => {
    temp = await makeTempDir('crl-unit');
    ca = await makeTestCa(`${temp.path}/pki`);
  });
  after(() => temp.remove());

  it(
    'names the file <hash>.r0 with the hash `openssl crl -hash` prints',
    { skip: skipUnless('openssl', () => execFileSync('openssl', ['version'], { stdio: 'ignore' })) },
    async () => {
      const pem = await ca.createCrl();
      const file = `${temp.path}/ca.crl`;
      await writeFile(file, pem);
      const expected = execFileSync('openssl', ['crl', '-in', file, '-hash', '-noout'], { encoding: 'utf8' }).trim();
      const info = parseCrl(pem);
      assert.equal(info.issuerHash, expected);
      assert.equal(info.fileName, `${expected}.r0`);
    },
  );

  it('canonicalises names as OpenSSL does: string type, case and runs of spaces do not matter', () => {
    const printable = name([[OID_CN, TAG.PRINTABLE_STRING, '  DMR   Test  Intermediate ']]);
    const utf8 = name([[OID_CN, TAG.UTF8_STRING, 'dmr test intermediate']]);
    assert.equal(nameHash(printable), nameHash(utf8));
    assert.notEqual(nameHash(utf8), nameHash(name([[OID_CN, TAG.UTF8_STRING, 'dmr-test-intermediate']])));
    // The canonical form has no outer SEQUENCE: it starts with the first RDN's SET.
    assert.equal(canonicalName(utf8)[0], TAG.SET);
  });

  it('orders the attributes of a multi-valued RDN as DER requires', () => {
    const forward = name([
      [OID_CN, TAG.UTF8_STRING, 'x'],
      [OID_O, TAG.UTF8_STRING, 'y'],
    ]);
    const backward = name([
      [OID_O, TAG.UTF8_STRING, 'y'],
      [OID_CN, TAG.UTF8_STRING, 'x'],
    ]);
    assert.equal(nameHash(forward), nameHash(backward));
  });

  it('reads thisUpdate, nextUpdate and the revoked entries', async () => {
    const issued = await ca.issueWithKey({ kind: 'client', id: 'gone-bot' });
    await ca.revoke(issued.serial, 'keyCompromise');
    const before = Date.now();
    const info = parseCrl(await ca.createCrl({ nextUpdateMs: 3600_000 }));
    assert.equal(info.revokedCount, 1);
    assert.ok(Math.abs(info.thisUpdate.getTime() - before) < 5000);
    assert.ok(Math.abs((info.nextUpdate?.getTime() ?? 0) - (before + 3600_000)) < 5000);
  });

  it('refuses text that is not a CRL', () => {
    assert.throws(
      () => parseCrl('hello'),
      (error: unknown) => error instanceof DmrError && error.code === 'CRL_INVALID',
    );
    const garbage = `-----BEGIN X509 CRL-----\n${Buffer.from('not der at all').toString('base64')}\n-----END X509 CRL-----\n`;
    assert.throws(
      () => parseCrl(garbage),
      (error: unknown) => error instanceof DmrError && error.code === 'CRL_INVALID',
    );
  });

  it('builds file names only from 8-hex-digit hashes', () => {
    assert.equal(crlFileName('0a1b2c3d'), '0a1b2c3d.r0');
    assert.equal(crlFileName('0a1b2c3d', 2), '0a1b2c3d.r2');
    assert.throws(() => crlFileName('../etc/x'));
  });

  it('installs by atomic rename, replacing the previous CRL and leaving no temporary file', async () => {
    const dir = `${temp.path}/crl-dir`;
    const first = await installCrlFile(dir, await ca.createCrl());
    const second = await installCrlFile(dir, await ca.createCrl());
    assert.equal(first.path, second.path);
    assert.deepEqual(await readdir(dir), [second.fileName]);
    assert.equal(parseCrl(await readFile(second.path, 'utf8')).thisUpdate.getTime(), second.thisUpdate.getTime());
  });

  it('refuses to install an expired CRL, which would lock every client out', async () => {
    const pem = await ca.createCrl({ nextUpdateMs: 60_000 });
    const later = new Date(Date.now() + 120_000);
    await assert.rejects(installCrlFile(`${temp.path}/expired`, pem, later), (error: unknown) => {
      return error instanceof DmrError && error.code === 'CRL_INVALID' && /expired/.test(error.message);
    });
  });

  it('re-issues at half the remaining validity, within timer limits', () => {
    const now = new Date('2030-01-01T00:00:00Z');
    const inHours = (hours: number): Date => new Date(now.getTime() + hours * 3600_000);
    assert.equal(crlRefreshDelayMs({ nextUpdate: inHours(1) }, now), 1800_000);
    assert.equal(crlRefreshDelayMs({ nextUpdate: inHours(1) }, now, 0.25), 900_000);
    assert.equal(crlRefreshDelayMs({ nextUpdate: inHours(-1) }, now), 1000);
    assert.equal(crlRefreshDelayMs({ nextUpdate: inHours(24 * 365) }, now), 2 ** 31 - 1);
    assert.equal(crlRefreshDelayMs({ nextUpdate: undefined }, now), 3600_000);
  });
});
