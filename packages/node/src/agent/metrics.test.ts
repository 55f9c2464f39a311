import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AgentMetrics } from './metrics.js';

describe('agent metrics', () => {
  it('shows one dmr_link_up and dmr_link_backlog_messages series per link, and drops a link that went', async () => {
    const metrics = new AgentMetrics();
    metrics.setLinks([
      { peer: 'node-b', state: 'running', messages: 3 },
      { peer: 'node-c', state: 'starting', messages: 12 },
    ]);
    let text = await metrics.registry.metrics();
    assert.match(text, /^dmr_link_up\{peer="node-b"\} 1$/m);
    assert.match(text, /^dmr_link_up\{peer="node-c"\} 0$/m);
    assert.match(text, /^dmr_link_backlog_messages\{peer="node-c"\} 12$/m);
    metrics.setLinks([{ peer: 'node-b', state: 'draining', messages: 1 }]);
    text = await metrics.registry.metrics();
    assert.match(text, /^dmr_link_up\{peer="node-b"\} 0$/m);
    assert.doesNotMatch(text, /node-c/);
  });
});
