import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { CertificateAuthority } from './authority.js';
import { parseCertificates } from './certificates.js';
import {
  REASON_CODES,
  REVOCATION_REASONS,
  crlNumberOf,
  parseCrls,
  reasonFromCode,
  type RevocationReason,
} from './crl.js';
import { openssl, opensslVerify, rejectsWith, tempDir, throwsWith, writeAll } from './test-support.js';
import { AuthorityKeyIdentifierExtension, SubjectKeyIdentifierExtension, type X509Crl } from './x509.js';

const TD = 'dmr.test';
const DAY = 86_400_000;

const OPENSSL_REASON_TEXT: Record<RevocationReason, string | undefined> = {
  unspecified: undefined,
  keyCompromise: 'Key Compromise',
  caCompromise: 'CA Compromise',
  affiliationChanged: 'Affiliation Changed',
  superseded: 'Superseded',
  cessationOfOperation: 'Cessation Of Operation',
  certificateHold: 'Certificate Hold',
  privilegeWithdrawn: 'Privilege Withdrawn',
};

function one(pem: string): X509Crl {
  const [crl] = parseCrls(pem);
  assert.ok(crl);
  return crl;
}

describe('CRLs', () => {
  let scratch: Awaited<ReturnType<typeof tempDir>>;
  let ca: CertificateAuthority;
  const revoked = new Map<string, RevocationReason>();
  let good: string;

  before(async () => {
    scratch = await tempDir();
    ca = await CertificateAuthority.init(join(scratch.path, 'ca'), { trustDomain: TD });
    for (const reason of REVOCATION_REASONS) {
      const issued = await ca.issueWithKey({ kind: 'client', id: `r-${reason.toLowerCase()}` });
      await ca.revoke(issued.serial, reason);
      revoked.set(issued.serial, reason);
    }
    good = (await ca.issueWithKey({ kind: 'node', id: 'dmr-good', dns: ['localhost'] })).chainPem;
  });
  after(() => scratch.cleanup());

  it('lists every revoked serial with its reason, signed by the intermediate, with AKI and cRLNumber', async () => {
    const before = Date.now();
    const pem = await ca.createCrl();
    assert.match(pem, /^-----BEGIN X509 CRL-----\n/);
    const crl = one(pem);
    const intermediate = parseCertificates(ca.intermediateCertificatePem)[0];
    const root = parseCertificates(ca.rootCertificatePem)[0];
    assert.ok(intermediate && root);
    assert.equal(crl.issuer, intermediate.subject);
    assert.ok(await crl.verify({ publicKey: intermediate.publicKey }));
    assert.equal(await crl.verify({ publicKey: root.publicKey }), false);
    assert.equal(
      crl.getExtension(AuthorityKeyIdentifierExtension)?.keyId,
      intermediate.getExtension(SubjectKeyIdentifierExtension)?.keyId,
    );
    assert.equal(typeof crlNumberOf(crl), 'number');
    assert.ok(Math.abs(crl.thisUpdate.getTime() - before) < 5_000);
    assert.equal(crl.nextUpdate?.getTime(), crl.thisUpdate.getTime() + 7 * DAY);
    const entries = new Map(crl.entries.map((entry) => [entry.serialNumber, reasonFromCode(entry.reason)]));
    assert.deepEqual(entries, revoked);
    const unspecified = crl.entries.find((entry) => revoked.get(entry.serialNumber) === 'unspecified');
    assert.equal(unspecified?.reason, undefined, 'RFC 5280: no reasonCode extension for "unspecified"');
  });

  it('numbers CRLs 1, 2, 3… and honours nextUpdateMs', async () => {
    const fresh = await CertificateAuthority.init(join(scratch.path, 'numbers'), { trustDomain: TD });
    const numbers: Array<number | undefined> = [];
    for (let i = 0; i < 3; i++) numbers.push(crlNumberOf(one(await fresh.createCrl({ nextUpdateMs: 3_600_000 }))));
    assert.deepEqual(numbers, [1, 2, 3]);
    const crl = one(await fresh.createCrl({ nextUpdateMs: 3_600_000 }));
    assert.equal(crl.nextUpdate?.getTime(), crl.thisUpdate.getTime() + 3_600_000);
    assert.equal(crl.entries.length, 0);
    await rejectsWith(fresh.createCrl({ nextUpdateMs: 0 }), 'INVALID_ARGUMENT');
  });

  it('reads the same for openssl: issuer, CRL number, AKI, serials and reason texts', async () => {
    const pem = await ca.createCrl();
    const files = await writeAll(scratch.path, { 'crl.pem': pem, 'int.pem': ca.intermediateCertificatePem });
    const text = openssl(['crl', '-in', files['crl.pem'] ?? '', '-noout', '-text']);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /Version 2/);
    assert.match(text.stdout, new RegExp(`Issuer: CN = DMR Intermediate CA \\(${TD.replace('.', '\\.')}\\)`));
    assert.match(text.stdout, new RegExp(`X509v3 CRL Number: \\n\\s+${crlNumberOf(one(pem))}\\n`));
    assert.match(text.stdout, /X509v3 Authority Key Identifier/);
    for (const [serial, reason] of revoked) {
      const block = new RegExp(
        `Serial Number: ${serial.toUpperCase()}\\n\\s+Revocation Date: [^\\n]+\\n(\\s+CRL entry extensions:\\n\\s+X509v3 CRL Reason Code: \\n\\s+([^\\n]+))?`,
      );
      const match = block.exec(text.stdout);
      assert.ok(match, `serial ${serial} listed`);
      assert.equal(match[2]?.trim(), OPENSSL_REASON_TEXT[reason], reason);
    }
    const verify = openssl(['crl', '-in', files['crl.pem'] ?? '', '-CAfile', files['int.pem'] ?? '', '-noout']);
    assert.match(verify.stderr + verify.stdout, /verify OK/);
  });

  it('makes openssl verify -crl_check refuse revoked certificates and accept the others', async () => {
    const revokedSerial = [...revoked.keys()][0];
    assert.ok(revokedSerial);
    const files = await writeAll(scratch.path, {
      'cas.pem': ca.rootCertificatePem + ca.intermediateCertificatePem,
      'crl2.pem': await ca.createCrl(),
      'good.pem': good,
    });
    const ok = opensslVerify({ caFile: files['cas.pem'], crl: files['crl2.pem'], certificate: files['good.pem'] });
    assert.equal(ok.status, 0, ok.stderr + ok.stdout);

    const victim = await ca.issueWithKey({ kind: 'client', id: 'victim' });
    await ca.revoke(victim.serial, 'keyCompromise');
    const more = await writeAll(scratch.path, {
      'crl3.pem': await ca.createCrl(),
      'victim.pem': victim.certificatePem,
    });
    const refused = opensslVerify({ caFile: files['cas.pem'], crl: more['crl3.pem'], certificate: more['victim.pem'] });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stdout + refused.stderr, /certificate revoked/);
  });

  it('property: whatever is revoked, with whatever reason, is exactly what the next CRL lists', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...REVOCATION_REASONS), { minLength: 0, maxLength: 5 }),
        async (reasons) => {
          const local = await CertificateAuthority.init(
            join(scratch.path, `prop-${Math.random().toString(16).slice(2)}`),
            {
              trustDomain: TD,
            },
          );
          const expected = new Map<string, RevocationReason>();
          for (const [index, reason] of reasons.entries()) {
            const issued = await local.issueWithKey({ kind: 'client', id: `p-${index}` });
            await local.issueWithKey({ kind: 'client', id: `keep-${index}` });
            await local.revoke(issued.serial, reason);
            expected.set(issued.serial, reason);
          }
          const crl = one(await local.createCrl());
          assert.deepEqual(
            new Map(crl.entries.map((entry) => [entry.serialNumber, reasonFromCode(entry.reason)])),
            expected,
          );
        },
      ),
      { numRuns: 8 },
    );
  });

  it('maps reason names to RFC 5280 codes and back', () => {
    for (const reason of REVOCATION_REASONS) {
      assert.equal(reasonFromCode(REASON_CODES[reason]), reason);
    }
    assert.equal(REASON_CODES.keyCompromise, 1);
    assert.equal(REASON_CODES.privilegeWithdrawn, 9);
    assert.equal(reasonFromCode(undefined), 'unspecified');
  });

  it('parseCrls refuses what is not a CRL (CRL_INVALID) and reads both PEM labels', async () => {
    const pem = await ca.createCrl();
    assert.equal(parseCrls(pem.replace(/X509 CRL/g, 'CRL'))[0]?.issuer, one(pem).issuer);
    throwsWith(() => parseCrls('nothing'), 'CRL_INVALID');
    throwsWith(() => parseCrls(ca.rootCertificatePem), 'CRL_INVALID', /CERTIFICATE/);
    throwsWith(() => parseCrls('-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n'), 'CRL_INVALID');
  });
});
