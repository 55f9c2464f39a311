import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sumShares } from './cpu.js';

describe('sumShares', () => {
  it('adds the processes of a group and keeps null for a group with nothing measured', () => {
    assert.deepEqual(
      sumShares({ 'broker.0': 80, 'broker.1': 45, 'worker.0': null, bench: 30 }, ['broker', 'worker', 'bench']),
      { broker: 125, worker: null, bench: 30 },
    );
    assert.deepEqual(sumShares({ 'broker.0': 10, 'worker.0': 5, 'worker.1': null }, ['broker', 'worker']), {
      broker: 10,
      worker: 5,
    });
  });
});
