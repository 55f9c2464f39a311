import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeWireTable, type WireTable, type WireValue } from '../testing/raw-amqp.js';
import { MAX_HEADER_DEPTH, encodedTableSize, forwardedHeaders, ownHeader, routingHeader } from './headers.js';

// amqplib's own codec (not in its package exports): the decoder the router receives with, the encoder it publishes with.
const require = createRequire(import.meta.url);
const codec = require(join(dirname(require.resolve('amqplib')), 'lib', 'codec.js')) as {
  decodeFields(slice: Buffer): Record<string, unknown>;
  encodeTable(buffer: Buffer, value: unknown, offset: number): number;
};

function decode(table: WireTable): Record<string, unknown> {
  return codec.decodeFields(encodeWireTable(table).subarray(4));
}

/** Every field type RabbitMQ accepts, nested up to `depth`. */
function wireValue(depth: number): fc.Arbitrary<WireValue> {
  const scalars: Array<fc.Arbitrary<WireValue>> = [
    fc.string({ unit: 'binary', maxLength: 40 }).map((v) => ({ t: 'S' as const, v })),
    fc.uint8Array({ maxLength: 40 }).map((v) => ({ t: 'S' as const, v: Buffer.from(v) })),
    fc.uint8Array({ maxLength: 40 }).map((v) => ({ t: 'x' as const, v: Buffer.from(v) })),
    fc.integer({ min: -128, max: 127 }).map((v) => ({ t: 'b' as const, v })),
    fc.integer({ min: 0, max: 255 }).map((v) => ({ t: 'B' as const, v })),
    fc.integer({ min: -32768, max: 32767 }).map((v) => ({ t: 's' as const, v })),
    fc.integer({ min: 0, max: 65535 }).map((v) => ({ t: 'u' as const, v })),
    fc.integer().map((v) => ({ t: 'I' as const, v })),
    fc.integer({ min: 0, max: 0xffffffff }).map((v) => ({ t: 'i' as const, v })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v) => ({ t: 'l' as const, v })),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => ({ t: 'T' as const, v })),
    fc.float({ noNaN: true }).map((v) => ({ t: 'f' as const, v })),
    fc.double().map((v) => ({ t: 'd' as const, v })),
    fc
      .record({ places: fc.integer({ min: 0, max: 255 }), digits: fc.integer({ min: 0, max: 0xffffffff }) })
      .map((d) => ({ t: 'D' as const, ...d })),
    fc.boolean().map((v) => ({ t: 't' as const, v })),
    fc.constant({ t: 'V' as const }),
  ];
  if (depth <= 0) return fc.oneof(...scalars);
  return fc.oneof(
    ...scalars,
    fc.array(wireValue(depth - 1), { maxLength: 4 }).map((v) => ({ t: 'A' as const, v })),
    wireTable(depth - 1).map((v) => ({ t: 'F' as const, v })),
  );
}

function wireTable(depth: number): fc.Arbitrary<WireTable> {
  // Keys include the ones a decoder treats specially ('__proto__', '!', 'value').
  const key = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', '!', 'value', 'CC', 'constructor'));
  return fc.array(fc.tuple(key, wireValue(depth)), { maxLength: 6 });
}

describe('header tables', () => {
  it('measures at least what amqplib needs to encode the decoded table again, for every field type and nesting', () => {
    const buffer = Buffer.alloc(1 << 20);
    fc.assert(
      fc.property(wireTable(3), (table) => {
        const decoded = decode(table);
        let encoded: number;
        try {
          encoded = codec.encodeTable(buffer, decoded, 0);
        } catch {
          return; // amqplib cannot re-encode it at all ('!' wrappers of unknown types): nothing to bound
        }
        assert.ok(encodedTableSize(decoded) >= encoded, `${encodedTableSize(decoded)} < ${encoded}`);
      }),
      { numRuns: 2_000 },
    );
  });

  it('counts a 64 KiB string and stops early past a limit', () => {
    const decoded = decode([['big', { t: 'S', v: 'x'.repeat(65_536) }]]);
    assert.equal(encodedTableSize(decoded), 4 + 1 + 3 + 5 + 65_536);
    assert.ok(encodedTableSize(decoded, 1_000) > 1_000);
  });

  it('reports a table nested deeper than MAX_HEADER_DEPTH as too large', () => {
    let value: WireValue = { t: 'V' };
    for (let i = 0; i <= MAX_HEADER_DEPTH + 1; i += 1) value = { t: 'F', v: [['a', value]] };
    assert.ok(encodedTableSize(decode([['deep', value]])) > 1 << 20);
    let array: WireValue = { t: 'V' };
    for (let i = 0; i <= MAX_HEADER_DEPTH + 1; i += 1) array = { t: 'A', v: [array] };
    assert.ok(encodedTableSize(decode([['deep', array]])) > 1 << 20);
  });

  it('reads only own headers: a __proto__ table does not smuggle dmr-recipient, but its size counts', () => {
    const decoded = decode([['__proto__', { t: 'F', v: [['dmr-recipient', { t: 'S', v: 'ppa-bot' }]] }]]);
    assert.equal((decoded as Record<string, unknown>)['dmr-recipient'], 'ppa-bot', 'amqplib made it inherited');
    assert.equal(ownHeader(decoded, 'dmr-recipient'), undefined);
    assert.ok(encodedTableSize(decoded) >= 4 + 1 + 13 + 5 + 7);
  });

  it('finds CC and BCC in any letter case', () => {
    for (const name of ['CC', 'cc', 'Cc', 'BCC', 'bcc', 'bCc']) {
      assert.equal(routingHeader(decode([[name, { t: 'A', v: [{ t: 'S', v: 'x' }] }]])), name);
    }
    assert.equal(routingHeader(decode([['ccx', { t: 'V' }]])), undefined);
    assert.equal(routingHeader(undefined), undefined);
  });
});

describe('forwardedHeaders: trace context', () => {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

  it('forwards a W3C traceparent and its tracestate', () => {
    const forwarded = forwardedHeaders({ traceparent, tracestate: 'vendor=x' }, 'rik-bot', 1);
    assert.equal(forwarded.traceparent, traceparent);
    assert.equal(forwarded.tracestate, 'vendor=x');
  });

  it('drops an invalid traceparent, and the tracestate with it', () => {
    for (const bad of ['tp', `ff${traceparent.slice(2)}`, traceparent.replace('00f067aa0ba902b7', '0'.repeat(16))]) {
      const forwarded = forwardedHeaders({ traceparent: bad, tracestate: 'vendor=x' }, 'rik-bot', 1);
      assert.equal(forwarded.traceparent, undefined, bad);
      assert.equal(forwarded.tracestate, undefined, bad);
    }
  });
});
