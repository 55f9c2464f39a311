import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalDnsName, canonicalIp, checkHostNames, ipFromBytes, ipToBytes } from './names.js';
import { throwsWith } from './test-support.js';

describe('host names for SANs', () => {
  it('lowercases DNS names and accepts single-label hosts such as localhost', () => {
    assert.equal(canonicalDnsName('Broker-1.Example.EE'), 'broker-1.example.ee');
    assert.equal(canonicalDnsName('localhost'), 'localhost');
  });

  it('refuses malformed DNS names with INVALID_ARGUMENT', () => {
    for (const name of [
      '',
      '*.example.ee',
      'a..b',
      '-a.b',
      'a-.b',
      'under_score',
      'trailing.',
      '10.0.0.1',
      'x'.repeat(64),
    ]) {
      throwsWith(() => canonicalDnsName(name), 'INVALID_ARGUMENT');
    }
  });

  it('writes IP addresses in one canonical form (RFC 5952 for IPv6)', () => {
    assert.equal(canonicalIp('127.0.0.1'), '127.0.0.1');
    assert.equal(canonicalIp('::1'), '::1');
    assert.equal(canonicalIp('2001:0DB8:0:0:0:0:0:1'), '2001:db8::1');
    assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
    assert.equal(canonicalIp('::ffff:10.0.0.1'), '::ffff:a00:1');
    assert.equal(canonicalIp('1:0:2:3:4:5:6:7'), '1:0:2:3:4:5:6:7');
  });

  it('refuses what is not an IP address', () => {
    for (const text of ['', 'localhost', '256.1.1.1', '1.2.3', '01.2.3.4', 'fe80::1%eth0', '1::2::3', '::g']) {
      throwsWith(() => canonicalIp(text), 'INVALID_ARGUMENT');
    }
  });

  it('property: bytes -> text -> bytes round-trips, and the text matches the WHATWG URL serialiser', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })),
        (bytes) => {
          const text = ipFromBytes(bytes);
          assert.ok(text !== undefined);
          assert.equal(isIP(text), bytes.length === 4 ? 4 : 6);
          assert.deepEqual(ipToBytes(text), bytes);
          const viaUrl = new URL(`http://${bytes.length === 4 ? text : `[${text}]`}/`).hostname.replace(/^\[|\]$/g, '');
          assert.equal(text, viaUrl);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('property: sparse IPv6 addresses (many zero groups) survive compression', () => {
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (groups) => {
        const full = groups.map((value) => value.toString(16)).join(':');
        const canonical = canonicalIp(full);
        assert.deepEqual(ipToBytes(canonical), ipToBytes(full));
        assert.ok(canonical.length <= full.length);
      }),
      { numRuns: 300 },
    );
  });

  it('allows DNS/IP names only for nodes (SAN_NOT_ALLOWED for clients)', () => {
    assert.deepEqual(checkHostNames('node', ['Localhost', 'localhost'], ['127.0.0.1', '::1']), {
      dns: ['localhost'],
      ips: ['127.0.0.1', '::1'],
    });
    assert.deepEqual(checkHostNames('client'), { dns: [], ips: [] });
    throwsWith(() => checkHostNames('client', ['localhost']), 'SAN_NOT_ALLOWED');
    throwsWith(() => checkHostNames('client', [], ['127.0.0.1']), 'SAN_NOT_ALLOWED');
  });

  it('property: any host name on a client certificate is refused', () => {
    fc.assert(
      fc.property(fc.array(fc.domain(), { maxLength: 3 }), fc.array(fc.ipV4(), { maxLength: 3 }), (dns, ips) => {
        fc.pre(dns.length + ips.length > 0);
        throwsWith(() => checkHostNames('client', dns, ips), 'SAN_NOT_ALLOWED');
      }),
    );
  });
});
