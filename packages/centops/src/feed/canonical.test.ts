import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson } from '@dmr/core';
import { canonicalDocument } from './canonical.js';

describe('canonicalDocument', () => {
  it('keeps a "__proto__" key (possible in labels) exactly like the store canonical form', () => {
    const labels = JSON.parse('{"z":"1","__proto__":"x","a":"2"}') as unknown;
    const text = canonicalDocument({ labels });
    assert.equal(text, '{"labels":{"__proto__":"x","a":"2","z":"1"}}');
    assert.equal(text, canonicalJson({ labels }));
  });

  it('falls back to the slow path for integer-like keys and still sorts them as strings', () => {
    const value = { labels: { '10': 'a', '9': 'b', x: 'c' } };
    assert.equal(canonicalDocument(value), canonicalJson(value));
    assert.equal(canonicalDocument(value), '{"labels":{"10":"a","9":"b","x":"c"}}');
  });
});
