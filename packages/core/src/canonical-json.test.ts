import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import canonicalize from 'canonicalize';
import fc from 'fast-check';
import { canonicalDigest, canonicalJson } from './canonical-json.js';
import { DmrError } from './errors.js';

/** An IEEE 754 double from its 16 hex digits, as RFC 8785 appendix B lists them. */
function double(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

describe('canonicalJson (RFC 8785)', () => {
  it('matches the RFC 8785 §3.2.2 example: literals, numbers and string escapes', () => {
    const input = JSON.parse(
      '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
        '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",' +
        '"literals": [null, true, false]}',
    ) as unknown;
    assert.equal(
      canonicalJson(input),
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('sorts keys by UTF-16 code units (RFC 8785 §3.2.3)', () => {
    const input = JSON.parse(
      '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",' +
        '"1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",' +
        '"\\u00f6": "Latin Small Letter O With Diaeresis"}',
    ) as Record<string, string>;
    const keys = canonicalJson(input);
    assert.equal(
      keys,
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","ö":"Latin Small Letter O With Diaeresis",' +
        '"€":"Euro Sign","😀":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it('prints numbers as RFC 8785 appendix B lists them', () => {
    const vectors: Array<[string, string]> = [
      ['0000000000000000', '0'],
      ['8000000000000000', '0'],
      ['0000000000000001', '5e-324'],
      ['8000000000000001', '-5e-324'],
      ['7fefffffffffffff', '1.7976931348623157e+308'],
      ['ffefffffffffffff', '-1.7976931348623157e+308'],
      ['4340000000000000', '9007199254740992'],
      ['c340000000000000', '-9007199254740992'],
      ['4430000000000000', '295147905179352830000'],
      ['44b52d02c7e14af5', '9.999999999999997e+22'],
      ['44b52d02c7e14af6', '1e+23'],
      ['44b52d02c7e14af7', '1.0000000000000001e+23'],
      ['444b1ae4d6e2ef4e', '999999999999999700000'],
      ['444b1ae4d6e2ef4f', '999999999999999900000'],
      ['444b1ae4d6e2ef50', '1e+21'],
      ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
      ['3eb0c6f7a0b5ed8d', '0.000001'],
      ['41b3de4355555553', '333333333.3333332'],
      ['41b3de4355555554', '333333333.33333325'],
      ['41b3de4355555555', '333333333.3333333'],
      ['41b3de4355555556', '333333333.3333334'],
      ['41b3de4355555557', '333333333.33333343'],
      ['becbf647612f3696', '-0.0000033333333333333333'],
      ['43143ff3c1cb0959', '1424953923781206.2'],
    ];
    for (const [hex, text] of vectors) assert.equal(canonicalJson(double(hex)), text, hex);
  });

  it('refuses data with no canonical form (VALIDATION_FAILED), and a cycle or undefined (TypeError)', () => {
    const loneSurrogate: unknown = JSON.parse('"x\\ud800"');
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, { a: [Number.NEGATIVE_INFINITY] }, loneSurrogate]) {
      assert.throws(
        () => canonicalJson(value),
        (error: unknown) => error instanceof DmrError && error.code === 'VALIDATION_FAILED',
      );
    }
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    assert.throws(() => canonicalJson(cycle), TypeError);
    assert.throws(() => canonicalJson(undefined), TypeError);
  });

  it('sorts at every depth, keeps array order, leaves out undefined fields, keeps "__proto__" and integer-like keys', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null }, u: undefined }),
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
    assert.equal(canonicalJson(JSON.parse('{"z":1,"__proto__":2,"10":3,"9":4}')), '{"10":3,"9":4,"__proto__":2,"z":1}');
  });

  it('gives the library bytes for any JSON value, and goes to the library for what is not plain data', () => {
    // The fast path (plain objects, arrays, strings, numbers) must be byte-identical to canonicalize: audit records,
    // digests and signatures are over these bytes. Generated values: every JSON shape, unicode keys and strings
    // (lone surrogates included), -0, undefined fields and items.
    // Units that make escapes, surrogate pairs and lone surrogate halves (a high one before a low one pairs).
    const tricky = fc.string({
      unit: fc.constantFrom('a', 'é', '"', '\\', '\n', '\u007f', '\ud83d', '\ude00', '\udfff'),
    });
    const keys = fc.oneof(fc.string({ unit: 'binary' }), tricky);
    const values = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.constant(null),
        fc.boolean(),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.integer(),
        fc.string({ unit: 'binary' }),
        fc.string({ unit: 'grapheme' }),
        tricky,
        fc.constant(undefined),
        fc.array(tie('value')),
        fc.dictionary(keys, tie('value')),
      ),
    })).value;
    fc.assert(
      fc.property(values, (value) => {
        let expected: string | undefined;
        let expectedError: unknown;
        try {
          expected = canonicalize(value);
        } catch (error) {
          expectedError = error;
        }
        if (expectedError === undefined && expected !== undefined) assert.equal(canonicalJson(value), expected);
        else assert.throws(() => canonicalJson(value));
      }),
      { numRuns: 1_000 },
    );
    // Not plain data: the library's answer, not the fast path's.
    const sparse: unknown[] = [1];
    sparse[2] = 3;
    const deep = Array.from({ length: 100 }).reduce<unknown>((inner) => [inner], 1);
    const withDate = { at: new Date(0), b: Buffer.from('x') };
    for (const value of [sparse, deep, withDate, { f: () => 1 }, [() => 1]]) {
      assert.equal(canonicalJson(value), canonicalize(value));
    }
  });

  it('gives the same digest for the same meaning', () => {
    assert.equal(canonicalDigest({ a: 1, b: 'x' }), canonicalDigest({ b: 'x', a: 1 }));
    assert.notEqual(canonicalDigest({ a: [1, 2] }), canonicalDigest({ a: [2, 1] }));
    assert.equal(canonicalDigest({ a: 1 }), createHash('sha256').update('{"a":1}').digest('hex'));
  });
});
