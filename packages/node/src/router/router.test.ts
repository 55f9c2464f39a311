import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeConfig } from '@dmr/contract';
import { ROUTER_TEST_LIMITS } from './test-support.js';
import type { PolicyDecider } from '@dmr/policy';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { RouterMetrics } from './metrics.js';
import { Router } from './router.js';

const policy: PolicyDecider = {
  mode: 'wasm',
  activeRevision: '1',
  decide: () => Promise.resolve({ allow: true, reasons: ['GRANT'], revision: '1' }),
  close: () => Promise.resolve(),
};

function config(nodeId = 'node-a'): NodeConfig {
  return {
    apiVersion: 'dmr.ee/v1',
    kind: 'NodeConfig',
    trustDomain: 'dmr.test',
    node: { id: nodeId, amqpsEndpoint: 'amqps://127.0.0.1:5671', managementEndpoint: 'https://127.0.0.1:15671' },
    revision: 1,
    issuedAt: '2026-01-01T00:00:00.000Z',
    clients: [],
    directory: [],
    links: [],
    routes: [],
    denylist: [],
    limits: ROUTER_TEST_LIMITS,
  };
}

describe('Router lifecycle (no broker)', () => {
  it('needs a configuration of its own node before it starts', async () => {
    const router = new Router({
      nodeId: 'node-a',
      connect: () => Promise.reject(new Error('unused')),
      policy,
      logger: pino({ level: 'silent' }),
      metrics: new RouterMetrics(new Registry()),
    });
    await assert.rejects(router.start(), /applyConfig/);
    assert.throws(() => router.applyConfig(config('node-b')), /node-b/);
  });

  it('backs off while the broker is unreachable, and stop() ends it with nothing pending', async (t) => {
    // The test runner's clock: the back-off's sleeps pass exactly, not as the machine's load allows.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    /** Moves the mocked clock by `ms` in small steps, letting each woken attempt run before the next step. */
    const advance = async (ms: number): Promise<void> => {
      for (let passed = 0; passed < ms; passed += 5) {
        t.mock.timers.tick(5);
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    let attempts = 0;
    const registry = new Registry();
    const router = new Router({
      nodeId: 'node-a',
      connect: () => {
        attempts += 1;
        return Promise.reject(new Error('ECONNREFUSED'));
      },
      policy,
      logger: pino({ level: 'silent' }),
      metrics: new RouterMetrics(registry),
      backoff: { initialMs: 20, maxMs: 80 },
    });
    router.applyConfig(config());
    const started = router.start();
    await advance(400);
    assert.equal(router.state, 'backing-off');
    // 20, 40, 80, 80 … ms ceilings, each jittered down to no less than half: several attempts, but bounded.
    assert.ok(attempts >= 3 && attempts <= 20, `${attempts} attempts in 400 ms`);
    await router.stop();
    await started;
    assert.equal(router.state, 'stopped');
    const after = attempts;
    await advance(1_000);
    assert.equal(attempts, after, 'no attempt after stop()');
    const state = (await registry.getMetricsAsJSON()).find((metric) => metric.name === 'dmr_router_state');
    assert.ok(state?.values.some((value) => value.labels.state === 'stopped' && value.value === 1));
  });
});
