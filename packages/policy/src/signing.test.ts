import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DmrError } from '@dmr/core';
import { SIGNATURES_FILE, parseBundle, writeBundle } from './bundle.js';
import { verifyBundle } from './signing.js';
import { testPki, type TestPki } from './test-support.js';

let pki: TestPki;
before(async () => {
  pki = await testPki();
});
after(() => pki.cleanup());

const files = () =>
  new Map([
    ['/.manifest', Buffer.from('{"revision":"1","roots":["dmr"]}')],
    ['/data.json', Buffer.from('{"dmr":{"grants":[]}}')],
    ['/dmr/authz/decision.rego', Buffer.from('package dmr.authz\n')],
  ]);

function refused(check: string) {
  return (error: unknown) => error instanceof DmrError && error.details.check === check;
}

test('a signed bundle verifies and names its signer', async () => {
  const bundle = parseBundle(writeBundle(pki.signer.sign(files())));
  const signer = await verifyBundle(bundle, pki.verification);
  assert.equal(signer.uri, 'spiffe://dmr.test/centops/policy-signer');
  assert.equal(signer.fingerprint, pki.signer.keyId);
});

test("the JWT is OPA's format: files with SHA-256 digests, no leading slash", () => {
  const signatures = JSON.parse(pki.signer.signatures(files()).toString()) as { signatures: string[] };
  const payload = JSON.parse(
    Buffer.from((signatures.signatures[0] as string).split('.')[1] as string, 'base64url').toString(),
  ) as {
    files: Array<{ name: string; algorithm: string }>;
  };
  assert.deepEqual(
    payload.files.map((file) => [file.name, file.algorithm]),
    [
      ['.manifest', 'SHA-256'],
      ['data.json', 'SHA-256'],
      ['dmr/authz/decision.rego', 'SHA-256'],
    ],
  );
});

test('reformatted JSON still verifies (OPA hashes it canonically); a changed Rego byte does not', async () => {
  const signed = pki.signer.sign(files());
  signed.set('/data.json', Buffer.from('{ "dmr": { "grants": [ ] } }\n'));
  await verifyBundle(parseBundle(writeBundle(signed)), pki.verification);
  signed.set('/dmr/authz/decision.rego', Buffer.from('package dmr.authz \n'));
  await assert.rejects(verifyBundle(parseBundle(writeBundle(signed)), pki.verification), refused('digest'));
});

test('a removed file, a forged signature and an untrusted root are refused', async () => {
  const missing = pki.signer.sign(files());
  missing.delete('/data.json');
  await assert.rejects(verifyBundle(parseBundle(writeBundle(missing)), pki.verification), refused('digest'));

  const forged = pki.signer.sign(files());
  const jwt = (JSON.parse((forged.get(SIGNATURES_FILE) as Buffer).toString()) as { signatures: string[] })
    .signatures[0] as string;
  const [head, body] = jwt.split('.') as [string, string];
  forged.set(SIGNATURES_FILE, Buffer.from(JSON.stringify({ signatures: [`${head}.${body}.${'A'.repeat(86)}`] })));
  await assert.rejects(verifyBundle(parseBundle(writeBundle(forged)), pki.verification), refused('signature'));

  const other = await testPki();
  try {
    const bundle = parseBundle(writeBundle(pki.signer.sign(files())));
    await assert.rejects(verifyBundle(bundle, other.verification), refused('chain'));
  } finally {
    await other.cleanup();
  }
});
