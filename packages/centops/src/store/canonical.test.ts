import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { canonicalJson, digest } from './canonical.js';

describe('canonicalJson', () => {
  it('sorts keys at every depth and keeps array order', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }),
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  it('gives the same digest for the same meaning', () => {
    assert.equal(digest({ a: 1, b: 'x' }), digest({ b: 'x', a: 1 }));
    assert.notEqual(digest({ a: [1, 2] }), digest({ a: [2, 1] }));
    assert.equal(digest({ a: 1 }), createHash('sha256').update('{"a":1}').digest('hex'));
  });

  it('drops undefined properties like JSON.stringify', () => {
    assert.equal(canonicalJson({ a: undefined, b: 2 }), '{"b":2}');
  });
});
