/**
 * `dmr node run --config FILE`: the agent plus its router child processes,
 * until SIGINT/SIGTERM. The agent starts first (identity, broker TLS, last
 * good document), so the routers find what they read in the state dir;
 * with `routers: 0` the operator runs `dmr node router` processes instead.
 */
import { startTracing } from '@dmr/core';
import { pino } from 'pino';
import { NodeAgent } from './agent.js';
import type { RunConfig } from './run-config.js';
import { RouterSupervisor } from './supervisor.js';

export interface RunningNode {
  agent: NodeAgent;
  supervisor: RouterSupervisor | undefined;
  stop(): Promise<void>;
}

export async function startNode(config: RunConfig): Promise<RunningNode> {
  const logger = pino({ level: config.logLevel, base: { node: config.node, component: 'agent' } });
  const tracing = await startTracing({
    serviceName: 'dmr-agent',
    endpoint: config.tracing?.endpoint,
    attributes: { 'dmr.node': config.node },
  });
  const agent = new NodeAgent(config, { logger, ...(tracing.tracer === undefined ? {} : { tracer: tracing.tracer }) });
  await agent.start();
  let supervisor: RouterSupervisor | undefined;
  if (config.routers > 0) {
    supervisor = new RouterSupervisor({
      configFile: config.file,
      routers: config.routers,
      logger,
      backoff: { initialMs: config.feed.backoffInitialMs, maxMs: config.feed.backoffMaxMs },
      onRestart: () => agent.metrics.routerRestarts.inc(),
    });
    supervisor.start();
  }
  return {
    agent,
    supervisor,
    async stop() {
      // Routers first: they finish in-flight messages while the broker layout is still as they know it.
      await supervisor?.stop();
      await agent.stop();
      await tracing.shutdown();
    },
  };
}

/** Runs until a signal; resolves when stopped. */
export async function runNode(config: RunConfig): Promise<void> {
  const node = await startNode(config);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  node.agent.logger.info('stopping');
  await node.stop();
}
