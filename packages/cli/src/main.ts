import { Command, Option } from 'commander';
import { OUTPUT_CHOICES } from './output.js';

/**
 * Command groups load on demand: the PKI library, fastify, kysely and the
 * AMQP client together take about a second to import, and `dmr ctl get`
 * should not pay for `dmr broker`. Only the invoked group is imported; the
 * others appear in `dmr --help` from this table.
 */
export const COMMAND_GROUPS = [
  {
    name: 'pki',
    description: 'certificate authority: keys, CSRs, certificates, revocation, CRLs',
    load: async () => (await import('./commands/pki.js')).pkiCommand(),
  },
  {
    name: 'broker',
    description: 'start, stop and inspect TLS-only RabbitMQ nodes for tests and the local mesh',
    load: async () => (await import('./commands/broker.js')).brokerCommand(),
  },
  {
    name: 'centops',
    description: 'set up and run CentOps, the control plane (registry, CA, configuration feed)',
    load: async () => (await import('./commands/centops.js')).centopsCommand(),
  },
  {
    name: 'ctl',
    description: "operate a running CentOps: registry, apply, tokens, certificates, nodes' status",
    load: async () => (await import('./commands/ctl/index.js')).ctlCommand(),
  },
  {
    name: 'node',
    description: 'run a DMR node: enrol, follow the CentOps configuration feed, reconcile the broker, run routers',
    load: async () => (await import('./commands/node.js')).nodeCommand(),
  },
  {
    name: 'audit',
    description: 'audit logs that prove themselves: export, verify offline, prove a message passed',
    load: async () => (await import('./commands/audit.js')).auditCommand(),
  },
  {
    name: 'trace',
    description: "a message's path from the audit records: nodes, hops, time at each, decisions; the Jaeger link",
    load: async () => (await import('./commands/trace.js')).traceCommand(),
  },
  {
    name: 'queue',
    description: "a node's queues: list with depth and rates, peek evidence, replay dead letters, purge",
    load: async () => (await import('./commands/queue.js')).queueCommand(),
  },
  {
    name: 'policy',
    description: 'check, test, evaluate and build Rego policy bundles (local files or a bundle)',
    load: async () => (await import('./commands/policy.js')).policyCommand(),
  },
  {
    name: 'bridge',
    description: 'run the HTTP bridge (Bürokratt v1 JSON API) for one DMR client',
    load: async () => (await import('./commands/bridge.js')).bridgeCommand(),
  },
  {
    name: 'up',
    description:
      'start the local mesh (CentOps, --nodes N DMR nodes each with its RabbitMQ, --topology line|ring|star, two demo clients); --foreground to watch',
    load: async () => (await import('./commands/mesh.js')).upCommand(),
  },
  {
    name: 'down',
    description: 'stop the local mesh started by `dmr up`',
    load: async () => (await import('./commands/mesh.js')).downCommand(),
  },
  {
    name: 'status',
    description: 'the local mesh: each node, each link (up or down, messages waiting), the round trips per path',
    load: async () => (await import('./commands/mesh.js')).statusCommand(),
  },
] as const satisfies ReadonlyArray<{ name: string; description: string; load: () => Promise<Command> }>;

function baseProgram(): Command {
  return new Command('dmr')
    .description('DMR: a secure message relay for the Bürokratt network of public-sector chatbots')
    .version('0.1.0')
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_CHOICES).default('text'))
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions(false);
}

/**
 * The command group argv invokes: its first operand (after node and the
 * script), skipping global options and their values; for `dmr help X`, X.
 */
export function invokedGroup(argv: readonly string[]): string | undefined {
  const operands: string[] = [];
  const args = argv.slice(2);
  for (let i = 0; i < args.length && operands.length < 2; i += 1) {
    const arg = args[i] as string;
    if (arg === '-o' || arg === '--output') i += 1;
    else if (!arg.startsWith('-')) operands.push(arg);
  }
  return operands[0] === 'help' ? operands[1] : operands[0];
}

/**
 * Builds the program with the named groups loaded fully and the rest as
 * description-only placeholders (enough for `dmr --help`). With no names,
 * every group is loaded, which the tests use to walk the whole command tree.
 */
export async function buildProgram(
  load: readonly string[] = COMMAND_GROUPS.map((group) => group.name),
): Promise<Command> {
  const program = baseProgram();
  for (const group of COMMAND_GROUPS) {
    const command = load.includes(group.name) ? await group.load() : new Command(group.name);
    program.addCommand(command.description(group.description));
  }
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const group = invokedGroup(argv);
  const program = await buildProgram(group === undefined ? [] : [group]);
  await program.parseAsync(argv);
}
