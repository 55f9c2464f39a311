import assert from 'node:assert/strict';
import { test } from 'node:test';
import { policyInputProblems, isPolicyInput } from './input.js';
import { decisionTable } from './test-support.js';

test('the TS validation agrees with the table on every case (invalid exactly where the table says INPUT_INVALID)', async () => {
  for (const c of await decisionTable()) {
    const invalid = c.expect.reasons.includes('INPUT_INVALID');
    assert.equal(isPolicyInput(c.input), !invalid, `${c.name}: ${JSON.stringify(policyInputProblems(c.input))}`);
  }
});

test('problems name every breach with its JSON pointer', () => {
  const problems = policyInputProblems({
    sender: { id: '', organisation: 'ria', roles: ['bot'], labels: {} },
    recipient: { id: 'b', organisation: 'rik', roles: [], labels: { tier: 1 } },
    message: { id: 'm', type: 'ChatMessage', size: -1, colour: 'red' },
    hop: { origin: 'n', count: 0 },
  });
  assert.deepEqual(
    problems.map((p) => p.path),
    ['/node', '/sender/id', '/recipient/labels/tier', '/message/colour', '/message/size'],
  );
});

test('non-objects are invalid', () => {
  for (const value of [undefined, null, 'x', 1, [], true]) assert.equal(isPolicyInput(value), false);
});
