import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { RouterMetrics } from './metrics.js';

describe('router metrics', () => {
  it('reads the replay window when scraped (0 before a guard exists)', async () => {
    const registry = new Registry();
    const metrics = new RouterMetrics(registry);
    let window: { size: number; capacity: number } | undefined;
    metrics.watchReplayWindow(() => window);
    assert.match(await registry.metrics(), /^dmr_router_replay_window_capacity 0$/m);
    window = { size: 12, capacity: 1000 };
    let text = await registry.metrics();
    assert.match(text, /^dmr_router_replay_window_ids 12$/m);
    assert.match(text, /^dmr_router_replay_window_capacity 1000$/m);
    window = { size: 13, capacity: 1000 };
    text = await registry.metrics();
    assert.match(text, /^dmr_router_replay_window_ids 13$/m);
  });

  it('observes a hop by previous node, counts clock skew as zero and skips an unreadable time', async () => {
    const registry = new Registry();
    const metrics = new RouterMetrics(registry);
    const now = Date.parse('2026-12-05T10:00:01.000Z');
    metrics.observeHop('node-2', '2026-12-05T10:00:00.750Z', now);
    metrics.observeHop('node-2', '2026-12-05T10:00:02.000Z', now);
    metrics.observeHop('node-3', 'not a time', now);
    metrics.observeHop('node-3', undefined, now);
    const text = await registry.metrics();
    assert.match(text, /^dmr_router_hop_seconds_count\{peer="node-2"\} 2$/m);
    assert.match(text, /^dmr_router_hop_seconds_sum\{peer="node-2"\} 0\.25$/m);
    assert.match(text, /^dmr_router_hop_seconds_bucket\{le="0\.001",peer="node-2"\} 1$/m);
    assert.doesNotMatch(text, /node-3/);
  });

  it('shows every requeue reason and relay outcome at zero from the start', async () => {
    const registry = new Registry();
    new RouterMetrics(registry);
    const text = await registry.metrics();
    for (const reason of ['policy', 'audit', 'broker']) {
      assert.match(text, new RegExp(`^dmr_router_messages_requeued_total\\{reason="${reason}"\\} 0$`, 'm'));
    }
    for (const outcome of ['delivered', 'forwarded']) {
      assert.match(text, new RegExp(`^dmr_router_mesh_messages_relayed_total\\{outcome="${outcome}"\\} 0$`, 'm'));
    }
  });
});

describe('router audit gauge', () => {
  it('counts how long records wait unwitnessed, and restarts when a checkpoint is witnessed', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const registry = new Registry();
    const metrics = new RouterMetrics(registry);
    const log = { size: 0, witnessedSize: 0 };
    metrics.watchAuditLog(() => log);
    const value = async () =>
      Number(/^dmr_router_audit_unwitnessed_seconds (\S+)$/m.exec(await registry.metrics())?.[1]);
    assert.equal(await value(), 0);
    log.size = 10;
    t.mock.timers.tick(30_000);
    assert.equal(await value(), 30);
    log.witnessedSize = 8; // a checkpoint witnessed: the wait starts again
    assert.equal(await value(), 0);
    log.size = 20;
    t.mock.timers.tick(400_000);
    assert.equal(await value(), 400);
    log.witnessedSize = 20;
    assert.equal(await value(), 0);
  });
});
