import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DmrError } from './errors.js';
import { assertValidId, explainInvalidId, isValidId, parseSpiffeId, spiffeId } from './ids.js';

const idChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'.split(''));
const edgeChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'.split(''));
const validId = fc
  .tuple(edgeChar, fc.array(idChar, { maxLength: 61 }), edgeChar)
  .map(([first, middle, last]) => `${first}${middle.join('')}${last}`);

describe('principal ids', () => {
  it('accepts the examples from docs/contract.md', () => {
    for (const id of ['police-bot', 'dmr-tallinn', 'ab', 'x1', 'a'.repeat(63)]) assert.ok(isValidId(id), id);
  });

  it('refuses ids outside the rules, saying why', () => {
    const cases: Array<[string, RegExp]> = [
      ['a', /at least 2/],
      ['a'.repeat(64), /at most 63/],
      ['Police-bot', /lowercase/],
      ['police_bot', /lowercase/],
      ['police bot', /lowercase/],
      ['pölis', /lowercase/],
      ['-police', /start or end/],
      ['police-', /start or end/],
      ['', /at least 2/],
    ];
    for (const [id, why] of cases) assert.match(explainInvalidId(id) ?? 'accepted', why, JSON.stringify(id));
  });

  it('accepts every id built from the allowed alphabet (property)', () => {
    fc.assert(fc.property(validId, (id) => isValidId(id)));
  });

  it('refuses any id containing a character outside the alphabet (property)', () => {
    const bad = fc.string({ minLength: 1, maxLength: 1 }).filter((c) => !/[a-z0-9-]/.test(c));
    fc.assert(
      fc.property(validId, bad, fc.nat(), (id, c, at) => {
        const position = at % (id.length + 1);
        return !isValidId(id.slice(0, position) + c + id.slice(position));
      }),
    );
  });

  it('assertValidId throws the INVALID_ID catalogue error', () => {
    assert.throws(
      () => assertValidId('Nope'),
      (error: unknown) => error instanceof DmrError && error.code === 'INVALID_ID' && error.exitCode === 2,
    );
  });

  it('round-trips SPIFFE ids and rejects foreign ones (property)', () => {
    fc.assert(
      fc.property(validId, fc.constantFrom('client' as const, 'node' as const), (id, kind) => {
        const parsed = parseSpiffeId(spiffeId('dmr.example.ee', kind, id));
        return parsed?.id === id && parsed.kind === kind && parsed.trustDomain === 'dmr.example.ee';
      }),
    );
    assert.equal(parseSpiffeId('spiffe://dmr.example.ee/admin/police-bot'), undefined);
    assert.equal(parseSpiffeId('spiffe://dmr.example.ee/client/Police'), undefined);
    assert.equal(parseSpiffeId('https://dmr.example.ee/client/police-bot'), undefined);
  });
});
