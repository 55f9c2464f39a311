import { Command, Option } from 'commander';
import { brokerCommand } from './commands/broker.js';
import { pkiCommand } from './commands/pki.js';

export function buildProgram(): Command {
  const program = new Command('dmr')
    .description('DMR: a secure message relay for the Bürokratt network of public-sector chatbots')
    .version('0.1.0')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text'))
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions(false);
  program.addCommand(pkiCommand());
  program.addCommand(brokerCommand());
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
