/**
 * Runs the built `dmr` binary as a user would, for the CLI's tests. Not
 * exported from the package. DMR_CONFIG is cleared so a developer's own
 * `~/.dmr/config.yaml` or environment never leaks into a test.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CommanderError, type Command } from 'commander';
import { buildProgram, invokedGroup } from './main.js';

export const DMR_BIN = fileURLToPath(new URL('../bin/dmr.js', import.meta.url));

export interface DmrRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface DmrRunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Written to standard input (closed either way). */
  input?: string;
}

/** Asynchronous, so several tests' processes do not block the runner. */
export function runDmr(args: readonly string[], options: DmrRunOptions = {}): Promise<DmrRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DMR_BIN, ...args], {
      cwd: options.cwd,
      env: { ...process.env, DMR_CONFIG: '', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/**
 * `dmr`, `ok` (asserts exit 0) and `json` (`-o json`, parsed) bound to
 * options read at call time, e.g. a temp directory made in `before`.
 */
export function dmrCli(options: () => DmrRunOptions) {
  const dmr = (...args: string[]) => runDmr(args, options());
  const ok = async (...args: string[]): Promise<DmrRun> => {
    const run = await dmr(...args);
    assert.equal(run.status, 0, `dmr ${args.join(' ')}\n${run.stderr}`);
    return run;
  };
  const json = async <T = Record<string, unknown>>(...args: string[]): Promise<T> =>
    JSON.parse((await ok('-o', 'json', ...args)).stdout) as T;
  return { dmr, ok, json };
}

/** A test's command line as its words: split at single spaces (the tests' arguments hold none), for `dmr(...words(…))`. */
export function words(command: string): string[] {
  return command.split(' ');
}

/**
 * What `dmr <path> --help` prints, parsed in process the way main() parses
 * argv (only the path's group loaded): commander writes the help and
 * "exits", which exitOverride turns into a CommanderError.
 */
export async function helpOf(path: string[]): Promise<string> {
  const argv = ['node', 'dmr', ...path, '--help'];
  const program = await buildProgram([invokedGroup(argv) ?? '']);
  let out = '';
  const quiet = (command: Command): void => {
    command.exitOverride().configureOutput({
      writeOut: (text) => (out += text),
      writeErr: (text) => assert.fail(`dmr ${path.join(' ')} --help wrote to stderr: ${text}`),
    });
    command.commands.forEach(quiet);
  };
  quiet(program);
  await assert.rejects(program.parseAsync(argv), (error) => {
    assert.ok(error instanceof CommanderError, String(error));
    assert.equal(error.code, 'commander.helpDisplayed', `dmr ${path.join(' ')} --help: ${error.message}`);
    return true;
  });
  return out;
}
