import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { pemBlocks, pemBodies, toHex, toPem } from './pem.js';
import { throwsWith } from './test-support.js';

describe('PEM', () => {
  it('property: toPem -> pemBlocks round-trips any bytes, in 64-column lines ending with a newline', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 600 }), (bytes) => {
        const text = toPem(bytes, 'X509 CRL');
        assert.ok(text.endsWith('-----END X509 CRL-----\n'));
        for (const line of text.split('\n')) assert.ok(line.length <= 64 || line.startsWith('-----'));
        const [block] = pemBlocks(text);
        assert.equal(block?.type, 'X509 CRL');
        assert.deepEqual(new Uint8Array(block?.der ?? []), bytes);
      }),
    );
  });

  it('finds blocks among other text and keeps their order', () => {
    const text = `junk\n${toPem(Uint8Array.of(1), 'A')}between\n${toPem(Uint8Array.of(2), 'B')}`;
    assert.deepEqual(
      pemBlocks(text).map((block) => [block.type, toHex(block.der)]),
      [
        ['A', '01'],
        ['B', '02'],
      ],
    );
    assert.deepEqual(pemBlocks('no pem here'), []);
  });

  it('pemBodies picks the wanted types and names what it found instead', () => {
    const text = toPem(Uint8Array.of(1), 'PRIVATE KEY') + toPem(Uint8Array.of(2), 'CERTIFICATE');
    assert.deepEqual(
      pemBodies(text, ['CERTIFICATE'], 'CERTIFICATE_INVALID', 'x').map((der) => toHex(der)),
      ['02'],
    );
    throwsWith(
      () => pemBodies(toPem(Uint8Array.of(1), 'PRIVATE KEY'), ['CERTIFICATE'], 'CERTIFICATE_INVALID', 'the file'),
      'CERTIFICATE_INVALID',
      /the file holds PRIVATE KEY instead of CERTIFICATE/,
    );
    throwsWith(
      () => pemBodies('', ['CERTIFICATE REQUEST'], 'CSR_MALFORMED', 'the CSR'),
      'CSR_MALFORMED',
      /no PEM block/,
    );
  });
});
