import type { Command } from 'commander';
import { parseOutputFormat, reportError, type OutputFormat } from './output.js';

/**
 * Wraps a command action so that every failure is reported the same way
 * (catalogue code, message, hint) and sets the exit code, and so that the
 * action gets the global `-o` format already parsed.
 */
export function action<Args extends unknown[]>(
  handler: (context: { format: OutputFormat; command: Command }, ...args: Args) => Promise<void>,
): (...args: unknown[]) => Promise<void> {
  return async (...rawArgs: unknown[]) => {
    const command = rawArgs[rawArgs.length - 1] as Command;
    const globals = command.optsWithGlobals<{ output?: string }>();
    let format: OutputFormat = 'text';
    try {
      format = parseOutputFormat(globals.output ?? 'text');
      await handler({ format, command }, ...(rawArgs.slice(0, -1) as Args));
    } catch (error) {
      process.exitCode = reportError(error, format);
    }
  };
}
