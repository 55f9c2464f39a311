/**
 * `dmr node run | router | check | status`: a thin layer over @dmr/node's
 * agent (docs/node-run.md).
 *
 * The agent is reached through a checked dynamic import: it is loaded only
 * when a `node` command runs (the agent pulls in the policy engine and the
 * broker client), and the check turns a package built without the agent
 * into a clear error instead of a crash.
 */
import { Command } from 'commander';
import type { LocalStatus } from '@dmr/contract';
import { DmrError } from '@dmr/core';
import { action } from '../action.js';
import { printResult, renderFields } from '../output.js';

interface RunConfigView {
  file: string;
  node: string;
  dataDir: string;
  routers: number;
  centops: { url: string };
  broker: { amqpsUrl: string };
}

type LocalStatusView = LocalStatus;

/** What this command needs from @dmr/node's agent (packages/node/src/agent/index.ts). */
interface AgentModule {
  loadRunConfig(file: string): Promise<RunConfigView>;
  runNode(config: RunConfigView): Promise<void>;
  routerMain(argv: string[]): Promise<number>;
  readLocalStatus(dataDir: string): Promise<LocalStatusView | undefined>;
}

async function agentModule(): Promise<AgentModule> {
  const loaded = (await import('@dmr/node')) as unknown as Partial<AgentModule>;
  const { loadRunConfig, runNode, routerMain, readLocalStatus } = loaded;
  if (
    typeof loadRunConfig !== 'function' ||
    typeof runNode !== 'function' ||
    typeof routerMain !== 'function' ||
    typeof readLocalStatus !== 'function'
  ) {
    throw new DmrError('INTERNAL', '@dmr/node was built without the node agent', {
      hint: "export it from packages/node/src/index.ts (export * from './agent/index.js') and rebuild",
    });
  }
  return { loadRunConfig, runNode, routerMain, readLocalStatus };
}

function renderStatus(status: LocalStatusView): string {
  return renderFields([
    ['node', status.node],
    ['applied revision', status.appliedRevision ?? 'none'],
    ['policy revision', status.policyRevision ?? 'none'],
    [
      'refused',
      status.refused === null
        ? 'nothing'
        : `revision ${status.refused.revision} at ${status.refused.at}: ${status.refused.reason}`,
    ],
    ['CentOps connected', status.centopsConnected ? 'yes' : 'no'],
    [
      'certificate',
      status.certificate === null
        ? 'none'
        : `serial ${status.certificate.serial}, expires ${status.certificate.notAfter}`,
    ],
    ['updated', status.updatedAt],
  ]);
}

export function nodeCommand(): Command {
  const command = new Command('node').description('run a DMR node: the agent that follows CentOps, and its routers');
  command.addCommand(
    new Command('run')
      .description('enrol if needed, follow the CentOps configuration feed, run the routers; until SIGINT/SIGTERM')
      .requiredOption('--config <file>', 'the run-config file (YAML or JSON, see docs/node-run.md)')
      .action(
        action<[{ config: string }]>(async (_context, options) => {
          const agent = await agentModule();
          await agent.runNode(await agent.loadRunConfig(options.config));
        }),
      ),
  );
  command.addCommand(
    new Command('router')
      .description("run one router process on the node's state dir (what `dmr node run` spawns per shard)")
      .requiredOption('--config <file>', 'the run-config file')
      .option('--shard <n>', 'the ingress shard to consume (0 … routers-1)', '0')
      .action(
        action<[{ config: string; shard: string }]>(async (_context, options) => {
          const agent = await agentModule();
          process.exitCode = await agent.routerMain(['--config', options.config, '--shard', options.shard]);
        }),
      ),
  );
  command.addCommand(
    new Command('check')
      .description('validate a run-config file and print what it resolves to')
      .requiredOption('--config <file>', 'the run-config file')
      .action(
        action<[{ config: string }]>(async (context, options) => {
          const config = await (await agentModule()).loadRunConfig(options.config);
          printResult(context.format, config, (value) =>
            renderFields([
              ['file', value.file],
              ['node', value.node],
              ['data dir', value.dataDir],
              ['CentOps', value.centops.url],
              ['broker', value.broker.amqpsUrl],
              ['routers', value.routers],
            ]),
          );
        }),
      ),
  );
  command.addCommand(
    new Command('status')
      .description("what the node's agent last did (its status.json): revision, refusal, CentOps connection")
      .requiredOption('--config <file>', 'the run-config file')
      .action(
        action<[{ config: string }]>(async (context, options) => {
          const agent = await agentModule();
          const config = await agent.loadRunConfig(options.config);
          const status = await agent.readLocalStatus(config.dataDir);
          if (status === undefined) {
            throw new DmrError('NOT_FOUND', `no status in ${config.dataDir} yet`, {
              hint: 'start the node with `dmr node run --config FILE`',
            });
          }
          printResult(context.format, status, renderStatus);
        }),
      ),
  );
  return command;
}
