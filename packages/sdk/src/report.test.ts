import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDeliveryReport } from './report.js';

const base = {
  messageId: '0b5a8f4e-3c43-4d52-9d0e-7e2a0c1f9a11',
  status: 'rejected',
  reason: 'POLICY_DENIED',
  detail: 'policy revision 1 denied: NO_GRANT',
  policy: { revision: '1', reasons: ['NO_GRANT'] },
  node: 'node-a',
  at: '2026-11-27T17:00:00.000Z',
};

describe('parseDeliveryReport', () => {
  it('parses the router report body', () => {
    const report = parseDeliveryReport(Buffer.from(JSON.stringify(base)));
    assert.equal(report.messageId, base.messageId);
    assert.equal(report.status, 'rejected');
    assert.equal(report.reason, 'POLICY_DENIED');
    assert.deepEqual(report.policy, { revision: '1', reasons: ['NO_GRANT'] });
    assert.equal(report.at.toISOString(), base.at);
  });

  it('accepts a report without policy and with a null message id', () => {
    const report = parseDeliveryReport(
      JSON.stringify({
        ...base,
        messageId: null,
        policy: undefined,
        status: 'dead-lettered',
        reason: 'MESSAGE_EXPIRED',
      }),
    );
    assert.equal(report.messageId, null);
    assert.equal(report.policy, undefined);
    assert.equal(report.status, 'dead-lettered');
  });

  it('refuses what is not a report', () => {
    for (const body of [
      'not json',
      '[]',
      JSON.stringify({ ...base, status: 'delivered' }),
      JSON.stringify({ ...base, reason: 'NOT_A_CODE' }),
      JSON.stringify({ ...base, at: 'yesterday' }),
      JSON.stringify({ ...base, messageId: 42 }),
      JSON.stringify({ ...base, policy: { reasons: [1] } }),
      JSON.stringify({ ...base, node: undefined }),
    ]) {
      assert.throws(() => parseDeliveryReport(body), SyntaxError, body);
    }
  });

  it('does not trust a __proto__ key', () => {
    const report = parseDeliveryReport('{"__proto__":{"polluted":true},' + JSON.stringify(base).slice(1));
    assert.equal((report as unknown as Record<string, unknown>).polluted, undefined);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});
