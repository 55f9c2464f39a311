import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDmrError } from '@dmr/core';
import { parseOptions, retryAfterMs, USAGE } from './bridge-options.js';

/** The message of the INVALID_ARGUMENT `run` throws, or undefined when it throws nothing or something else. */
function refusal(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return isDmrError(error) && error.code === 'INVALID_ARGUMENT' ? error.message : undefined;
  }
  return undefined;
}

describe('bridge bench options', () => {
  it('has the documented defaults: no slow endpoint, the node and bridge defaults', () => {
    assert.deepEqual(parseOptions([]), {
      loop: 'arrival',
      seconds: 10,
      levels: [1, 8, 32],
      deliveryConcurrency: undefined,
      raw: true,
      endpointDelayMs: 0,
      queueMaxLength: undefined,
      retryAfterSeconds: undefined,
      cpuProfileDir: undefined,
    });
  });

  it('reads the overload flags', () => {
    const options = parseOptions([
      '--levels',
      '32',
      '--loop',
      'accepted',
      '--endpoint-delay-ms',
      '100',
      '--queue-max-length',
      '500',
      '--retry-after',
      '2',
      '--delivery-concurrency',
      '16',
      '--no-raw',
    ]);
    assert.equal(options?.loop, 'accepted');
    assert.deepEqual(options?.levels, [32]);
    assert.equal(options?.endpointDelayMs, 100);
    assert.equal(options?.queueMaxLength, 500);
    assert.equal(options?.retryAfterSeconds, 2);
    assert.equal(options?.deliveryConcurrency, 16);
    assert.equal(options?.raw, false);
  });

  it('takes an endpoint delay of 0 but no bound or Retry-After of 0', () => {
    assert.equal(parseOptions(['--endpoint-delay-ms', '0'])?.endpointDelayMs, 0);
    assert.match(refusal(() => parseOptions(['--queue-max-length', '0'])) ?? '', /--queue-max-length wants a positive/);
    assert.match(refusal(() => parseOptions(['--retry-after', '0'])) ?? '', /--retry-after wants a positive/);
  });

  it('refuses what is not a whole number, naming the flag', () => {
    for (const [flag, value] of [
      ['--endpoint-delay-ms', '-1'],
      ['--endpoint-delay-ms', '1.5'],
      ['--endpoint-delay-ms', ''],
      ['--queue-max-length', 'many'],
      ['--retry-after', '1e3x'],
      ['--levels', '1,,8'],
      ['--seconds', '0'],
    ] as const) {
      // `--flag=value`: parseArgs takes a separate `-1` for a flag of its own.
      assert.match(
        refusal(() => parseOptions([`${flag}=${value}`])) ?? '',
        new RegExp(`^${flag} wants`),
        `${flag} ${value}`,
      );
    }
    assert.match(refusal(() => parseOptions(['--loop', 'open'])) ?? '', /--loop is arrival or accepted/);
  });

  it('answers --help with undefined, and the help names every flag it parses', () => {
    assert.equal(parseOptions(['--help', '--endpoint-delay-ms', 'x']), undefined);
    for (const flag of ['--endpoint-delay-ms', '--queue-max-length', '--retry-after', '--loop', '--no-raw']) {
      assert.ok(USAGE.includes(flag), flag);
    }
  });
});

describe('retryAfterMs', () => {
  it('reads whole seconds, else falls back', () => {
    assert.equal(retryAfterMs('5', 1000), 5000);
    assert.equal(retryAfterMs(' 2 ', 1000), 2000);
    assert.equal(retryAfterMs(['3'], 1000), 3000);
    assert.equal(retryAfterMs(undefined, 1000), 1000);
    assert.equal(retryAfterMs('Wed, 21 Oct 2026 07:28:00 GMT', 1000), 1000);
    assert.equal(retryAfterMs('-1', 1000), 1000);
  });
});
