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

describe('agent queue gauges', () => {
  it('shows each client dead-letter queue and dmr.rejected, keeps a depth not yet known, and drops a queue that went', async () => {
    const metrics = new AgentMetrics();
    metrics.setQueueDepths([
      { name: 'dmr.client.bot-a.dlq', messages: 4 },
      { name: 'dmr.client.bot-b.dlq', messages: 0 },
      { name: 'dmr.client.bot-a', messages: 99 },
      { name: 'dmr.rejected', messages: 7 },
    ]);
    let text = await metrics.registry.metrics();
    assert.match(text, /^dmr_node_dead_letter_messages\{client="bot-a"\} 4$/m);
    assert.match(text, /^dmr_node_dead_letter_messages\{client="bot-b"\} 0$/m);
    assert.match(text, /^dmr_node_rejected_messages 7$/m);
    assert.doesNotMatch(text, /99/);
    metrics.setQueueDepths([
      { name: 'dmr.client.bot-a.dlq', messages: undefined },
      { name: 'dmr.rejected', messages: 8 },
    ]);
    text = await metrics.registry.metrics();
    assert.match(text, /^dmr_node_dead_letter_messages\{client="bot-a"\} 4$/m);
    assert.doesNotMatch(text, /bot-b/);
    assert.match(text, /^dmr_node_rejected_messages 8$/m);
  });

  it('starts with no configuration refused', async () => {
    const metrics = new AgentMetrics();
    assert.match(await metrics.registry.metrics(), /^dmr_node_config_refused 0$/m);
  });
});
