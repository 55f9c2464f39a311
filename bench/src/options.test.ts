import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { brokerPlan, parseLoads, parseOptions, parseRows } from './options.js';

function invalid(run: () => unknown): boolean {
  try {
    run();
  } catch (error) {
    return isDmrError(error) && error.code === 'INVALID_ARGUMENT';
  }
  return false;
}

describe('parseOptions', () => {
  it('has the documented defaults', () => {
    const options = parseOptions([]);
    assert.equal(options.durationS, 5);
    assert.equal(options.warmupS, 1);
    assert.deepEqual(options.loads, [1000, 2000, 4000, 'max']);
    assert.equal(options.sizeBytes, 1024);
    assert.deepEqual(options.rows, ['a', 'b', 'c', 'd', 's', 'e', 'f']);
    assert.equal(options.jsonFile, undefined);
    assert.equal(options.routerPrefetch, undefined);
    assert.equal(options.noAudit, false);
    assert.equal(options.rawFirstQueue, 'quorum');
  });

  it('reads every flag', () => {
    const options = parseOptions([
      '--duration',
      '2.5',
      '--warmup',
      '0',
      '--loads',
      'max,500',
      '--size',
      '64',
      '--window',
      '10',
      '--rows',
      'b,a',
      '--json',
      'out.json',
      '--keep',
      '--router-prefetch',
      '128',
      '--no-audit',
      '--raw-first-queue',
      'classic',
    ]);
    assert.equal(options.durationS, 2.5);
    assert.equal(options.warmupS, 0);
    assert.deepEqual(options.loads, [500, 'max']);
    assert.equal(options.sizeBytes, 64);
    assert.equal(options.window, 10);
    assert.deepEqual(options.rows, ['a', 'b']);
    assert.equal(options.jsonFile, 'out.json');
    assert.equal(options.keep, true);
    assert.equal(options.routerPrefetch, 128);
    assert.equal(options.noAudit, true);
    assert.equal(options.rawFirstQueue, 'classic');
  });

  it('refuses nonsense with INVALID_ARGUMENT', () => {
    for (const argv of [
      ['--duration', '0'],
      ['--duration', 'x'],
      ['--warmup', '-1'],
      ['--size', '1.5'],
      ['--window', ''],
      ['--loads', '1000,,max'],
      ['--rows', 'x'],
      ['--router-prefetch', '0'],
      ['--raw-first-queue', 'stream'],
      ['--unknown'],
      ['positional'],
    ]) {
      assert.ok(
        invalid(() => parseOptions(argv)),
        argv.join(' '),
      );
    }
  });
});

describe('parseLoads / parseRows', () => {
  it('sorts fixed rates ascending with max last', () => {
    assert.deepEqual(parseLoads('max, 4000,1000'), [1000, 4000, 'max']);
  });

  it('refuses duplicates', () => {
    assert.ok(invalid(() => parseLoads('1000,1000')));
    assert.ok(invalid(() => parseLoads('max,max')));
  });

  it('keeps rows in table order without duplicates', () => {
    assert.deepEqual(parseRows('d,a,d'), ['a', 'd']);
  });
});

describe('brokerPlan', () => {
  it('puts rows a–d on the first broker and the link rows on brokers of their own', () => {
    assert.deepEqual(brokerPlan(['a', 'b', 'c', 'd']), { brokers: 1, meshBroker: 1 });
    assert.deepEqual(brokerPlan(['a', 'b']), { brokers: 1, meshBroker: 0 });
    assert.deepEqual(brokerPlan(['s']), { brokers: 2, meshBroker: 0 });
    assert.deepEqual(brokerPlan(['s', 'e', 'f']), { brokers: 3, meshBroker: 0 });
    assert.deepEqual(brokerPlan(['a', 'b', 'c', 'd', 's', 'e', 'f']), { brokers: 4, meshBroker: 1 });
    assert.deepEqual(brokerPlan(['c', 'e']), { brokers: 3, meshBroker: 1 });
  });
});
