import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isHolderReply, isHolderRequest } from './netns-protocol.js';

describe('netns holder protocol', () => {
  it('accepts ip commands made of plain words and addresses only', () => {
    assert.ok(isHolderRequest({ op: 'ip', id: 1, commands: [['addr', 'add', '198.18.0.2/30', 'dev', 'dmrpabcdefn']] }));
    assert.ok(
      isHolderRequest({
        op: 'ip',
        id: 2,
        commands: [['rule', 'add', 'pref', '10', 'from', '198.18.0.1', 'blackhole']],
      }),
    );
    for (const bad of ['-batch /etc/passwd', 'a b', '', 'x'.repeat(65), 'a;b', '$(id)']) {
      assert.ok(!isHolderRequest({ op: 'ip', id: 3, commands: [['link', bad]] }), bad);
    }
    assert.ok(!isHolderRequest({ op: 'ip', id: 4, commands: [[]] }));
    assert.ok(!isHolderRequest({ op: 'ip', id: 5, commands: 'link set lo up' }));
  });

  it('accepts a listen request for an IPv4 address and a port', () => {
    assert.ok(isHolderRequest({ op: 'listen', id: 1, host: '198.18.0.2', port: 0 }));
    assert.ok(!isHolderRequest({ op: 'listen', id: 1, host: 'example.com', port: 0 }));
    assert.ok(!isHolderRequest({ op: 'listen', id: 1, host: '198.18.0.2', port: 70_000 }));
    assert.ok(!isHolderRequest({ op: 'exec', id: 1 }));
    assert.ok(!isHolderRequest({ op: 'listen', host: '198.18.0.2', port: 1 }));
  });

  it('checks replies', () => {
    assert.ok(isHolderReply({ op: 'ready', id: 0 }));
    assert.ok(isHolderReply({ op: 'listening', id: 3, port: 41_000 }));
    assert.ok(isHolderReply({ op: 'failed', id: 3, message: 'RTNETLINK answers: File exists' }));
    assert.ok(!isHolderReply({ op: 'listening', id: 3 }));
    assert.ok(!isHolderReply(null));
  });
});
