import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBad, renderTable, type Row } from './report.js';

const row: Row = {
  scenario: 'router-kill',
  title: 'router SIGKILL',
  via: 'sdk',
  sent: 100,
  confirmed: 100,
  delivered: 99,
  reported: 1,
  lost: 0,
  duplicates: 0,
  redeliveries: 0,
  notAccepted: 0,
  recoveryMs: 1234,
  note: 'a | b',
};

describe('renderTable', () => {
  it('prints one Markdown row per scenario with recovery in seconds and pipes escaped', () => {
    const lines = renderTable([
      row,
      { ...row, scenario: 'x', title: 'x', recoveryMs: null, error: 'boom', note: '' },
      { ...row, scenario: 'bridge-kill', title: 'bridge SIGKILL', via: 'bridge', redeliveries: 2 },
    ]).split('\n');
    assert.equal(lines.length, 5);
    assert.match(
      lines[0] ?? '',
      /^\| scenario +\| sent \| confirmed \| delivered \| reported \| lost \| duplicate POSTs \| duplicates at the application \| recovery \| note +\|$/,
    );
    assert.match(
      lines[2] ?? '',
      /\| router SIGKILL \(`router-kill`\) \| 100 +\| 100 +\| 99 +\| 1 +\| 0 +\| — +\| 0 +\| 1\.2 s +\| a \\\| b/,
    );
    assert.match(lines[3] ?? '', /\| — +\| FAILED: boom/);
    assert.match(lines[4] ?? '', /\| 0 +\| 2 +\| 0 +\| 1\.2 s/, 'a bridge row: duplicate POSTs, then duplicates');
  });
});

describe('isBad', () => {
  it('flags a loss, a duplicate and a failure, and nothing else', () => {
    assert.equal(isBad(row), false);
    assert.equal(isBad({ ...row, lost: 1 }), true);
    assert.equal(isBad({ ...row, duplicates: 1 }), true);
    assert.equal(isBad({ ...row, error: 'x' }), true);
  });
});
