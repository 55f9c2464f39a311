import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { DmrError } from '@dmr/core';
import { opaCanonicalJson, bundleFileDigest } from './bundle-hash.js';
import { compareRevisions, dataOf, parseBundle, writeBundle } from './bundle.js';
import { readTarGz, writeTarGz } from './tar.js';

const manifest = (revision: unknown) => Buffer.from(JSON.stringify({ revision, roots: ['dmr'] }));

test('tar round trip keeps names and bytes, long names included, deterministically', () => {
  const long = `/${'d/'.repeat(70)}x.rego`;
  const files = [
    { name: '/.manifest', data: manifest('1') },
    { name: long, data: Buffer.from('package x\n') },
    { name: '/policy.wasm', data: Buffer.alloc(1025, 7) },
  ];
  const archive = writeTarGz(files);
  assert.deepEqual(readTarGz(archive), files);
  assert.deepEqual(writeTarGz(files), archive);
});

test('unsafe or odd archives are refused', () => {
  const code = (fn: () => unknown) =>
    assert.throws(fn, (error: unknown) => error instanceof DmrError && error.code === 'POLICY_BUNDLE_INVALID');
  code(() => readTarGz(Buffer.from('not gzip')));
  code(() => readTarGz(writeTarGz([{ name: '/../etc/passwd', data: Buffer.from('') }])));
  code(() => readTarGz(gzipSync(Buffer.alloc(512, 1))));
  code(() => parseBundle(writeTarGz([{ name: '/data.json', data: Buffer.from('{}') }])));
  code(() => parseBundle(writeTarGz([{ name: '/.manifest', data: manifest('v2') }])));
});

test('revisions compare as numbers', () => {
  assert.equal(compareRevisions('10', '9'), 1);
  assert.equal(compareRevisions('9', '10'), -1);
  assert.equal(compareRevisions('12345678901234567890', '12345678901234567890'), 0);
});

test('data.json files are placed at their directory path and merged', () => {
  const bundle = parseBundle(
    writeBundle(
      new Map([
        ['/.manifest', manifest('1')],
        ['/data.json', Buffer.from('{"dmr":{"limits":{"maxHops":3}}}')],
        ['/dmr/grants/data.json', Buffer.from('{"x":1}')],
      ]),
    ),
  );
  assert.deepEqual(dataOf(bundle), { dmr: { limits: { maxHops: 3 }, grants: { x: 1 } } });
});

test("JSON files hash in OPA's canonical form: key order and whitespace do not matter", () => {
  assert.equal(
    opaCanonicalJson({ b: [1, { d: 'é', c: null }], a: 'x\u2028' }),
    '{"a":"x\\u2028","b":[1,{"c":null,"d":"é"}]}',
  );
  assert.equal(
    bundleFileDigest('/data.json', Buffer.from('{"b":1,"a":2}')),
    bundleFileDigest('/data.json', Buffer.from('{ "a": 2,\n "b": 1 }')),
  );
  assert.notEqual(bundleFileDigest('/x.rego', Buffer.from('a ')), bundleFileDigest('/x.rego', Buffer.from('a')));
  assert.equal(bundleFileDigest('/data.json', Buffer.from('{')), undefined);
});
