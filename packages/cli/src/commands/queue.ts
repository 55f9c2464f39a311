/**
 * `dmr queue list | peek | replay | purge`: an operator's view of a node's
 * queues, through the broker's management API with the run-config's admin
 * credentials (docs/queues.md). A thin layer over @dmr/node's queues/.
 */
import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { deadLetterQueueName, vhostName } from '@dmr/contract';
import { DmrError } from '@dmr/core';
import type * as NodeLibrary from '@dmr/node';
import type { DeadLetterReplay, PeekedSummary, QueueRow } from '@dmr/node';
import { action } from '../action.js';
import { positiveInt } from '../options.js';
import { printResult, progress, renderFields, renderTable } from '../output.js';

/** Loaded on demand: the node library pulls in the policy engine and the broker client. */
type NodeModule = typeof NodeLibrary;

async function nodeModule(): Promise<NodeModule> {
  return import('@dmr/node');
}

interface Target {
  node: NodeModule;
  vhost: string;
  management: Awaited<ReturnType<NodeModule['openManagement']>>;
}

async function target(configFile: string): Promise<Target> {
  const node = await nodeModule();
  const config = await node.loadRunConfig(configFile);
  return { node, vhost: vhostName(config.node), management: await node.openManagement(config) };
}

const dash = (value: number | string | null): string => (value === null ? '-' : String(value));
const rate = (value: number | null): string => (value === null ? '-' : value.toFixed(1));

function renderQueues(rows: readonly QueueRow[]): string {
  return renderTable(
    ['QUEUE', 'ROLE', 'TYPE', 'MESSAGES', 'READY', 'UNACKED', 'CONSUMERS', 'IN/S', 'OUT/S'],
    rows.map((row) => [
      row.name,
      row.role,
      dash(row.type),
      dash(row.messages),
      dash(row.ready),
      dash(row.unacked),
      dash(row.consumers),
      rate(row.publishRate),
      rate(row.deliverRate),
    ]),
  );
}

function renderPeek(messages: readonly PeekedSummary[]): string {
  if (messages.length === 0) return 'the queue is empty';
  return messages
    .map((message, index) =>
      renderFields([
        ['#', index + 1],
        ['message id', dash(message.messageId)],
        ['type', dash(message.type)],
        ['time', dash(message.timestamp)],
        ['sender', dash(message.sender)],
        ['recipient', dash(message.recipient)],
        ['origin', message.origin ?? undefined],
        ['reason', dash(message.reason)],
        ['detail', message.detail ?? undefined],
        [
          'dead-lettered',
          message.deaths.length === 0
            ? undefined
            : message.deaths.map((death) => `${death.reason} from ${death.queue} ×${dash(death.count)}`).join('; '),
        ],
        ['body bytes', message.bodyBytes],
        [
          'payload',
          message.payload === undefined
            ? undefined
            : `(${message.payload.encoding}${message.payload.truncated ? ', truncated' : ''}) ${message.payload.data}`,
        ],
      ]),
    )
    .join('\n\n');
}

/** The operator types the queue's name, or passes --yes; without a terminal, --yes is required. */
async function confirm(what: string, expected: string, yes: boolean): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY) {
    throw new DmrError('PRECONDITION_FAILED', `${what} needs a confirmation`, {
      hint: 'pass --yes to confirm without a terminal',
    });
  }
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await prompt.question(`${what}. Type the queue name (${expected}) to confirm: `);
    if (answer.trim() !== expected) {
      throw new DmrError('PRECONDITION_FAILED', 'not confirmed: nothing was changed', {
        hint: `type exactly ${expected}, or pass --yes`,
      });
    }
  } finally {
    prompt.close();
  }
}

export function queueCommand(): Command {
  const command = new Command('queue').description(
    "a node's queues: depth and rates, peek the evidence, replay dead letters, purge (docs/queues.md)",
  );
  command.addCommand(
    new Command('list')
      .description('every queue of the node: role, type, depth, consumers, rates in and out')
      .requiredOption('--config <file>', "the node's run-config file (its broker management credentials)")
      .action(
        action<[{ config: string }]>(async (context, options) => {
          const { node, vhost, management } = await target(options.config);
          printResult(context.format, await node.listNodeQueues(management, vhost), renderQueues);
        }),
      ),
  );
  command.addCommand(
    new Command('peek')
      .description(
        'show the first messages of dmr.rejected, a DLQ, dmr.dead-letter-reports or an outbound queue, and put them back; metadata only unless --payloads',
      )
      .argument('<queue>', 'the queue name, e.g. dmr.rejected or dmr.client.bot-a.dlq')
      .requiredOption('--config <file>', "the node's run-config file")
      .option('--count <n>', 'how many messages from the head (1–100)', '10')
      .option('--payloads', 'also show the message bodies (the parties’ data: only when you must)', false)
      .option('--max-payload-bytes <n>', 'bytes of each body to show with --payloads', '4096')
      .action(
        action<[string, { config: string; count: string; payloads: boolean; maxPayloadBytes: string }]>(
          async (context, queue, options) => {
            const count = positiveInt(options.count, '--count', 100) ?? 10;
            const maxPayloadBytes = positiveInt(options.maxPayloadBytes, '--max-payload-bytes', 1_048_576) ?? 4096;
            const { node, vhost, management } = await target(options.config);
            const messages = await node.peekQueue(management, vhost, queue, {
              count,
              payloads: options.payloads,
              maxPayloadBytes,
            });
            printResult(context.format, messages, renderPeek);
          },
        ),
      ),
  );
  command.addCommand(
    new Command('replay')
      .description(
        "move a client's dead letters (dmr.client.<id>.dlq) back to its queue, same message ids; run it after fixing what made them fail",
      )
      .requiredOption('--client <id>', 'the client whose dead letters to replay')
      .requiredOption('--config <file>', "the node's run-config file")
      .option('--count <n>', 'at most this many (default: all the DLQ holds now)')
      .option('--timeout <seconds>', 'stop waiting after this long (the move goes on in the broker)', '300')
      .option('-y, --yes', 'do not ask for confirmation', false)
      .action(
        action<[{ client: string; config: string; count?: string; timeout: string; yes: boolean }]>(
          async (context, options) => {
            const count = positiveInt(options.count, '--count', 1_000_000_000);
            const timeoutMs = (positiveInt(options.timeout, '--timeout', 86_400) ?? 300) * 1000;
            const { node, vhost, management } = await target(options.config);
            const dlq = deadLetterQueueName(options.client);
            await confirm(
              `replay ${count === undefined ? 'every message' : `up to ${count} messages`} of ${dlq} to its client`,
              dlq,
              options.yes,
            );
            const result = await node.replayDeadLetters(management, vhost, options.client, {
              ...(count === undefined ? {} : { count }),
              timeoutMs,
              onProgress: (remaining) => progress(`moving: ${dash(remaining)} left in ${dlq}`),
            });
            printResult(context.format, result, (value: DeadLetterReplay) =>
              renderFields([
                ['replayed', `${value.from} → ${value.to}`],
                ['DLQ before', dash(value.before)],
                ['DLQ after', `${dash(value.after)} (broker statistics; refreshed every few seconds)`],
              ]),
            );
          },
        ),
      ),
  );
  command.addCommand(
    new Command('purge')
      .description('empty dmr.rejected or a DLQ (evidence); queues holding accepted messages are never purged')
      .argument('<queue>', 'dmr.rejected or dmr.client.<id>.dlq')
      .requiredOption('--config <file>', "the node's run-config file")
      .option('-y, --yes', 'do not ask for confirmation', false)
      .action(
        action<[string, { config: string; yes: boolean }]>(async (context, queue, options) => {
          const { node, vhost, management } = await target(options.config);
          await confirm(`purge every message of ${queue}`, queue, options.yes);
          const result = await node.purgeEvidence(management, vhost, queue);
          printResult(context.format, result, (value) =>
            renderFields([
              ['purged', value.queue],
              ['messages', dash(value.purged)],
            ]),
          );
        }),
      ),
  );
  return command;
}
