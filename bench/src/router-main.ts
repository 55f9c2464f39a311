/**
 * The router of rows c and d (and of each node of rows e/f), in its own process: the product's Router with
 * its real logger (JSON lines to a file), Prometheus metrics and audit stream.
 * Its PolicyDecider is a switch between the default policy pack (a signed
 * bundle evaluated in process as Wasm: row c) and BenchOnlyAllowAllDecider
 * (row d), flipped by a command between points. One warm process serves both
 * rows, so c and d differ in the decision only, not in JIT state,
 * connections or start-up.
 */
import { connectWithCertificate } from '@dmr/broker';
import { startTracing } from '@dmr/core';
import { isNodeConfig } from '@dmr/contract';
import { ReplayJournal, Router, RouterMetrics, StreamAuditSink } from '@dmr/node';
import { PolicyEngine, type PolicyDecider, type PolicyDecision } from '@dmr/policy';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { serveChild, type ChildInfo } from './child.js';
import type { RouterChildConfig, RouterCommand, RouterPolicyMode } from './context.js';

/**
 * BENCH ONLY — never product code: allows every message without looking at
 * it. Row d uses it to measure what the policy step costs (the goal: the
 * router with policy keeps ≥ 90 % of its throughput without).
 */
export class BenchOnlyAllowAllDecider implements PolicyDecider {
  // The router does not branch on the mode; 'wasm' because this one also runs in process.
  readonly mode = 'wasm' as const;
  readonly activeRevision = 'bench-only-allow-all';

  decide(): Promise<PolicyDecision> {
    return Promise.resolve({ allow: true, reasons: ['BENCH_ONLY_ALLOW_ALL'], revision: this.activeRevision });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Delegates to the decider of the current row; both rows pay for this one indirection alike. */
class BenchOnlySwitchingDecider implements PolicyDecider {
  readonly mode = 'wasm' as const;
  current: PolicyDecider;

  constructor(
    readonly deciders: Record<RouterPolicyMode, PolicyDecider>,
    initial: RouterPolicyMode,
  ) {
    this.current = deciders[initial];
  }

  get activeRevision(): string | undefined {
    return this.current.activeRevision;
  }

  decide(input: unknown): Promise<PolicyDecision> {
    return this.current.decide(input);
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.deciders).map((decider) => decider.close()));
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isRouterChildConfig(value: unknown): value is RouterChildConfig {
  if (!isRecord(value)) return false;
  const bundle = value.bundle;
  return (
    typeof value.port === 'number' &&
    (value.prefetch === undefined || typeof value.prefetch === 'number') &&
    typeof value.audit === 'boolean' &&
    (value.replayDir === undefined || typeof value.replayDir === 'string') &&
    ['caPem', 'certificatePem', 'privateKeyPem', 'vhost', 'logFile'].every((key) => typeof value[key] === 'string') &&
    isRecord(bundle) &&
    ['archiveBase64', 'trustBundlePem', 'expectedSigner'].every((key) => typeof bundle[key] === 'string') &&
    (value.identity === undefined ||
      (isRecord(value.identity) &&
        ['certificateChainPem', 'privateKeyPem', 'trustBundlePem'].every(
          (key) => typeof (value.identity as Record<string, unknown>)[key] === 'string',
        )))
  );
}

function isRouterCommand(value: unknown): value is RouterCommand {
  return isRecord(value) && (value.policy === 'bundle' || value.policy === 'bench-only-allow-all');
}

async function counterTotal(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  return values.reduce((sum, sample) => sum + sample.value, 0);
}

/** Count and sum (s) of a histogram: the router's own view of where a message's time went. */
async function histogramTotals(registry: Registry, name: string): Promise<{ count: number; sum: number }> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return { count: 0, sum: 0 };
  const { values } = await metric.get();
  // A histogram's samples carry their series name (_bucket, _sum, _count); the base type does not say so.
  const series = (suffix: string): number =>
    values.find((sample) => (sample as { metricName?: unknown }).metricName === `${name}${suffix}`)?.value ?? 0;
  return { count: series('_count'), sum: series('_sum') };
}

/** Mean in ms over what a histogram gained since `before`. */
function meanMsSince(now: { count: number; sum: number }, before: { count: number; sum: number }): number | null {
  const count = now.count - before.count;
  return count <= 0 ? null : Math.round(((now.sum - before.sum) / count) * 1e6) / 1e3;
}

serveChild(async (raw) => {
  if (!isRouterChildConfig(raw)) throw new Error('the router was started without a valid RouterChildConfig');
  const config = raw;
  const nodeConfig = config.nodeConfig;
  if (!isNodeConfig(nodeConfig)) throw new Error('the router was given an invalid NodeConfig');
  const engine = await PolicyEngine.load(Buffer.from(config.bundle.archiveBase64, 'base64'), {
    verification: { trustBundlePem: config.bundle.trustBundlePem, expectedSigner: config.bundle.expectedSigner },
  });
  const policy = new BenchOnlySwitchingDecider(
    { bundle: engine, 'bench-only-allow-all': new BenchOnlyAllowAllDecider() },
    'bundle',
  );
  const destination = pino.destination({ dest: config.logFile, sync: false, mkdir: true });
  const logger = pino({ level: 'info', base: { node: nodeConfig.node.id, component: 'router' } }, destination);
  const registry = new Registry();
  // Off unless the bench runs with OTEL_EXPORTER_OTLP_ENDPOINT (the router's per-message cost of tracing: README).
  const tracing = await startTracing({ serviceName: 'dmr-router', attributes: { 'dmr.node': nodeConfig.node.id } });
  if (tracing.endpoint !== undefined) process.stderr.write(`router ${process.pid}: traces to ${tracing.endpoint}\n`);
  const journal = config.replayDir === undefined ? undefined : ReplayJournal.open({ dir: config.replayDir });
  const router = new Router({
    nodeId: nodeConfig.node.id,
    connect: () =>
      connectWithCertificate({
        port: config.port,
        vhost: config.vhost,
        caPem: config.caPem,
        certificatePem: config.certificatePem,
        privateKeyPem: config.privateKeyPem,
      }),
    policy,
    logger,
    metrics: new RouterMetrics(registry),
    ...(config.audit ? { audit: new StreamAuditSink() } : {}),
    ...(journal === undefined ? {} : { replayMemory: journal }),
    ...(config.prefetch === undefined ? {} : { prefetch: config.prefetch }),
    ...(config.identity === undefined ? {} : { identity: config.identity }),
    ...(tracing.tracer === undefined ? {} : { tracer: tracing.tracer }),
  });
  router.applyConfig(nodeConfig);
  await router.start();
  let last = { route: { count: 0, sum: 0 }, decision: { count: 0, sum: 0 }, cpu: process.cpuUsage() };
  /** Totals so far, and the mean route and decision times since the previous call (≈ since the last switch). */
  const counters = async (): Promise<ChildInfo> => {
    const now = {
      route: await histogramTotals(registry, 'dmr_router_route_seconds'),
      decision: await histogramTotals(registry, 'dmr_policy_decision_seconds'),
      cpu: process.cpuUsage(),
    };
    const messages = now.route.count - last.route.count;
    const cpuUs = now.cpu.user + now.cpu.system - (last.cpu.user + last.cpu.system);
    const interval = {
      messages,
      routeMeanMs: meanMsSince(now.route, last.route),
      decisionMeanMs: meanMsSince(now.decision, last.decision),
      // This process's CPU time (user + system) per message settled, over the same interval: what a message costs
      // the router, which the machine's load distorts far less than a throughput (bench/README.md).
      cpuUsPerMessage: messages <= 0 ? null : Math.round(cpuUs / messages),
    };
    last = now;
    return {
      received: await counterTotal(registry, 'dmr_router_messages_received_total'),
      routed: await counterTotal(registry, 'dmr_router_messages_routed_total'),
      rejected: await counterTotal(registry, 'dmr_router_messages_rejected_total'),
      requeued: await counterTotal(registry, 'dmr_router_messages_requeued_total'),
      sinceLastSwitch: interval,
    };
  };
  return {
    info: { policy: engine.activeRevision ?? 'none' },
    command: async (command) => {
      if (!isRouterCommand(command)) throw new Error(`unknown command ${JSON.stringify(command)}`);
      policy.current = policy.deciders[command.policy];
      return counters();
    },
    stop: async () => {
      await router.stop();
      journal?.close();
      await policy.close();
      destination.flushSync();
      return counters();
    },
  };
});
