import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_MAX_HOPS } from '@dmr/contract';
import { DEFAULT_LIMITS, MAX_HEADER_BYTES, MAX_HOPS_LIMIT, resolveLimits } from './limits.js';
import { nodeConfigProblems } from './node-config.js';

describe('limits', () => {
  it('defaults every field, the hardened message path included', () => {
    const limits = resolveLimits();
    assert.deepEqual(limits, DEFAULT_LIMITS);
    assert.equal(limits.maxHeaderBytes, 16_384);
    assert.ok(limits.maxIdsPerSender < 1_000_000, 'one sender cannot fill a router window of the default size');
    assert.ok(limits.ingressDeliveryLimit > limits.deliveryLimit);
  });

  it('puts maxHops (default DEFAULT_MAX_HOPS) into every limits, within the schema’s bound', () => {
    assert.equal(resolveLimits().maxHops, DEFAULT_MAX_HOPS);
    assert.equal(resolveLimits({ maxHops: 3 }).maxHops, 3);
    assert.throws(() => resolveLimits({ maxHops: MAX_HOPS_LIMIT + 1 }), /maxHops/);
    assert.throws(() => resolveLimits({ maxHops: 0 }), /maxHops/);
    const problems = nodeConfigProblems({ limits: { ...DEFAULT_LIMITS, maxHops: MAX_HOPS_LIMIT } }, 100);
    assert.deepEqual(
      problems.filter((problem) => problem.startsWith('/limits')),
      [],
    );
    const tooMany = nodeConfigProblems({ limits: { ...DEFAULT_LIMITS, maxHops: MAX_HOPS_LIMIT + 1 } }, 100);
    assert.ok(tooMany.some((problem) => problem.startsWith('/limits/maxHops')));
  });

  it('refuses a header limit a router could not re-encode, and non-positive values', () => {
    assert.throws(() => resolveLimits({ maxHeaderBytes: MAX_HEADER_BYTES + 1 }), /maxHeaderBytes/);
    assert.equal(resolveLimits({ maxHeaderBytes: MAX_HEADER_BYTES }).maxHeaderBytes, MAX_HEADER_BYTES);
    for (const field of ['queueMaxBytes', 'ingressDeliveryLimit', 'senderRatePerSecond', 'senderBurst'] as const) {
      assert.throws(() => resolveLimits({ [field]: 0 }), new RegExp(field));
    }
  });

  it('the NodeConfig schema requires the new fields and caps maxHeaderBytes', () => {
    const base = { limits: { ...DEFAULT_LIMITS } } as Record<string, unknown>;
    const problems = (limits: Record<string, unknown>): string[] =>
      nodeConfigProblems({ ...base, limits }, 100).filter((problem) => problem.startsWith('/limits'));
    assert.deepEqual(problems({ ...DEFAULT_LIMITS }), []);
    const missing = Object.fromEntries(Object.entries(DEFAULT_LIMITS).filter(([key]) => key !== 'maxIdsPerSender'));
    assert.ok(problems(missing).some((problem) => problem.includes('maxIdsPerSender')));
    assert.ok(problems({ ...DEFAULT_LIMITS, maxHeaderBytes: MAX_HEADER_BYTES + 1 }).length > 0);
  });
});
