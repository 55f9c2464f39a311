/**
 * `dmr bridge run | check`: the HTTP bridge (docs/bridge.md) — the Bürokratt
 * v1 agent API on top of a DMR client. Configured by a file and/or
 * `DMR_BRIDGE_*` environment variables; a bad configuration fails here with
 * every problem listed (BRIDGE_CONFIG_INVALID).
 */
import { Command } from 'commander';
import { startTracing } from '@dmr/core';
import type * as BridgePackage from '@dmr/bridge';
import { action } from '../action.js';
import { printResult, renderFields } from '../output.js';

async function bridgeModule(): Promise<typeof BridgePackage> {
  // Loaded only for `dmr bridge`: fastify and the AMQP client are not free to import.
  return import('@dmr/bridge');
}

export function bridgeCommand(): Command {
  const command = new Command('bridge').description(
    'the HTTP bridge: POST /v1/messages in, v1 JSON out to an endpoint',
  );
  command.addCommand(
    new Command('run')
      .description(
        'connect to the DMR node, listen for POST /v1/messages, deliver to the endpoint; until SIGINT/SIGTERM',
      )
      .option('--config <file>', 'configuration file (YAML or JSON); DMR_BRIDGE_* variables override it')
      .option(
        '--drain-timeout <ms>',
        'on shutdown, how long deliveries under way may finish before the rest are handed back to the queue',
        '10000',
      )
      .action(
        action<[{ config?: string; drainTimeout: string }]>(async (_context, options) => {
          const { Bridge, loadBridgeConfig } = await bridgeModule();
          const config = await loadBridgeConfig(options.config);
          // Spans for POST /v1/messages over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; off (not even loaded) otherwise.
          const tracing = await startTracing({
            serviceName: 'dmr-bridge',
            attributes: { 'dmr.client': config.id, 'dmr.node': config.node },
          });
          const bridge = await Bridge.start(config, { tracer: tracing.tracer });
          const drainTimeoutMs = Number(options.drainTimeout);
          await new Promise<void>((resolve) => {
            const stop = (signal: string): void => {
              bridge.logger.info({ signal }, 'stopping');
              void bridge
                .close({ drainTimeoutMs: Number.isFinite(drainTimeoutMs) ? drainTimeoutMs : 10_000 })
                .then(async ({ requeued }) => {
                  if (requeued > 0) bridge.logger.warn({ requeued }, 'deliveries still retrying were handed back');
                  await tracing.shutdown().catch(() => undefined);
                  resolve();
                });
            };
            process.once('SIGINT', () => stop('SIGINT'));
            process.once('SIGTERM', () => stop('SIGTERM'));
          });
        }),
      ),
  );
  command.addCommand(
    new Command('check')
      .description('validate the configuration (file and DMR_BRIDGE_* variables) and print what it resolves to')
      .option('--config <file>', 'configuration file (YAML or JSON)')
      .action(
        action<[{ config?: string }]>(async (context, options) => {
          const bridge = await bridgeModule();
          const config = await bridge.loadBridgeConfig(options.config);
          printResult(context.format, bridge.printableConfig(config), (value) =>
            renderFields([
              ['id', value.id],
              ['node', value.node],
              ['broker', value.broker.url],
              [
                'listen',
                `${value.server.tls === undefined ? 'http' : 'https'}://${value.listen.host}:${value.listen.port}`,
              ],
              ['auth', describeAuth(value)],
              ['endpoint', value.endpoint.url],
              ['delivery', `${value.delivery.concurrency} at a time, ${value.delivery.maxAttempts} attempts`],
              ['CentOps', value.centops?.url ?? 'not configured'],
            ]),
          );
        }),
      ),
  );
  return command;
}

/** Which authentication a configuration turns on, without any secret. */
function describeAuth(config: BridgePackage.BridgeConfig): string {
  const parts: string[] = [];
  const tokens = config.auth.tokens;
  if (tokens !== undefined) parts.push(`${tokens.count} bearer token(s) from ${tokens.sources.join(', ')}`);
  if (config.server.tls?.clientCaFile !== undefined) parts.push(`mutual TLS (${config.server.tls.clientCaFile})`);
  return parts.length > 0 ? parts.join(' + ') : 'none: loopback only, loopback Host names only';
}
