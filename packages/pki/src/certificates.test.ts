import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { normaliseSerial, parseCertificates, randomSerial, sha256Hex, wholeSeconds } from './certificates.js';
import { throwsWith } from './test-support.js';

describe('certificate helpers', () => {
  it('random serials: 32 hex digits, top bit clear, no leading zero digit, no repeats', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const serial = randomSerial();
      assert.match(serial, /^[1-7][0-9a-f]{31}$/);
      seen.add(serial);
    }
    assert.equal(seen.size, 5000);
  });

  it('random serials use every bit position below the top one', () => {
    let ones = 0n;
    for (let i = 0; i < 500; i++) ones |= BigInt(`0x${randomSerial()}`);
    assert.equal(ones, (1n << 127n) - 1n);
  });

  it('property: normaliseSerial accepts OpenSSL notation and is idempotent', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 20 }), fc.boolean(), (bytes, upper) => {
        const hex = Buffer.from(bytes).toString('hex');
        const colons = (upper ? hex.toUpperCase() : hex).replace(/(..)(?!$)/g, '$1:');
        const normalised = normaliseSerial(colons);
        assert.equal(normalised, normaliseSerial(normalised));
        assert.equal(BigInt(`0x${normalised}`), BigInt(`0x${hex}`));
        assert.match(normalised, /^(0|[1-9a-f][0-9a-f]*)$/);
      }),
    );
  });

  it('refuses serials that are not hex or longer than 20 octets', () => {
    for (const text of ['', 'xyz', '12-34', 'ab'.repeat(21)])
      throwsWith(() => normaliseSerial(text), 'INVALID_ARGUMENT');
  });

  it('refuses PEM that holds no certificate, or a damaged one', () => {
    throwsWith(() => parseCertificates('plain text'), 'CERTIFICATE_INVALID', /no PEM block/);
    throwsWith(
      () => parseCertificates('-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n'),
      'CERTIFICATE_INVALID',
      /cannot be parsed/,
    );
  });

  it('hashes DER to lowercase hex and truncates dates to whole seconds', () => {
    assert.equal(sha256Hex(new Uint8Array()), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(wholeSeconds(new Date('2026-01-01T00:00:00.999Z')).toISOString(), '2026-01-01T00:00:00.000Z');
  });
});
