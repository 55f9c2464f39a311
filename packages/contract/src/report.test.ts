import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MESSAGE_REJECTION_CODES } from './message.js';
import { buildDeliveryReport, parseDeliveryReport } from './report.js';

describe('delivery reports', () => {
  it('parse what a node builds, field for field', () => {
    fc.assert(
      fc.property(
        fc.option(fc.uuid(), { nil: null }),
        fc.constantFrom('rejected' as const, 'dead-lettered' as const),
        fc.constantFrom(...MESSAGE_REJECTION_CODES),
        fc.string(),
        fc.option(fc.record({ revision: fc.option(fc.string(), { nil: undefined }), reasons: fc.array(fc.string()) }), {
          nil: undefined,
        }),
        fc.integer({ min: 0, max: 4_102_444_800_000 }),
        (messageId, status, reason, detail, policy, now) => {
          const built = buildDeliveryReport({ messageId, status, reason, detail, policy, node: 'node-a', now });
          const parsed = parseDeliveryReport(Buffer.from(JSON.stringify(built)));
          assert.equal(parsed.messageId, messageId);
          assert.equal(parsed.status, status);
          assert.equal(parsed.reason, reason);
          assert.equal(parsed.detail, detail);
          assert.equal(parsed.node, 'node-a');
          assert.equal(parsed.at.getTime(), now);
          assert.deepEqual(
            parsed.policy,
            policy === undefined ? undefined : { ...policy, reasons: [...policy.reasons] },
          );
        },
      ),
    );
  });

  it('refuses bodies that are not a report', () => {
    for (const body of ['not json', '[]', '{}', '{"messageId":1}', JSON.stringify({ status: 'rejected' })]) {
      assert.throws(() => parseDeliveryReport(body), SyntaxError, body);
    }
    const valid = {
      messageId: null,
      status: 'rejected',
      reason: 'POLICY_DENIED',
      detail: '',
      node: 'n1',
      at: '2026-01-01T00:00:00Z',
    };
    assert.throws(() => parseDeliveryReport(JSON.stringify({ ...valid, reason: 'NOT_A_CODE' })), /reason/);
    assert.throws(() => parseDeliveryReport(JSON.stringify({ ...valid, policy: { reasons: 'x' } })), /policy/);
    assert.equal(parseDeliveryReport(JSON.stringify(valid)).policy, undefined);
  });
});
