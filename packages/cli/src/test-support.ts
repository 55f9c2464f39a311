/**
 * Runs `dmr` for the CLI's tests: the built binary as a user would
 * (`runDmr`), or the same parse in this process (`runDmrInProcess`). Not
 * exported from the package. DMR_CONFIG is cleared so a developer's own
 * `~/.dmr/config.yaml` or environment never leaks into a test.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CommanderError, type Command } from 'commander';
import { buildProgram, invokedGroup } from './main.js';
import { setCliStreams } from './output.js';

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

/** Commander's output into `out`/`err` and its exits into CommanderErrors, on every command of the tree. */
function captureCommander(command: Command, out: (text: string) => void, err: (text: string) => void): void {
  command.exitOverride().configureOutput({ writeOut: out, writeErr: err });
  for (const sub of command.commands) captureCommander(sub, out, err);
}

// In-process runs change the process's working directory, environment and exit code: one at a time.
let inProcessQueue: Promise<unknown> = Promise.resolve();

/**
 * `dmr <args>` parsed and run in this process, the way bin/dmr.js runs main(): only the invoked group
 * loaded, the same actions, the same error report and exit code; stdout and stderr captured from the
 * commands (setCliStreams) and from commander, the exit code from process.exitCode or commander's exit.
 * A child costs a Node start and the group's imports, about 1 s of CPU (2 s for the heavier groups);
 * this costs milliseconds after the group's first load. What only the binary shows (its entry point, a
 * real process exit) stays with runDmr: each test file keeps a few spawned runs for it. Runs with
 * standard input go to a child, since commands read process.stdin.
 */
export function runDmrInProcess(args: readonly string[], options: DmrRunOptions = {}): Promise<DmrRun> {
  if (options.input !== undefined) return runDmr(args, options);
  const run = inProcessQueue.then(() => runInProcessNow(args, options));
  inProcessQueue = run.catch(() => undefined);
  return run;
}

async function runInProcessNow(args: readonly string[], options: DmrRunOptions): Promise<DmrRun> {
  let stdout = '';
  let stderr = '';
  const out = (text: string): void => void (stdout += text);
  const err = (text: string): void => void (stderr += text);
  const env: Record<string, string> = { DMR_CONFIG: '', ...options.env };
  const savedEnv = Object.fromEntries(Object.keys(env).map((key) => [key, process.env[key]]));
  const savedCwd = process.cwd();
  const savedExitCode = process.exitCode;
  process.exitCode = undefined;
  setCliStreams({ stdout: { write: out }, stderr: { write: err } });
  try {
    Object.assign(process.env, env);
    if (options.cwd !== undefined) process.chdir(options.cwd);
    const argv = ['node', DMR_BIN, ...args];
    const program = await buildProgram([invokedGroup(argv) ?? '']);
    captureCommander(program, out, err);
    let status: number;
    try {
      await program.parseAsync(argv);
      status = Number(process.exitCode ?? 0);
    } catch (error) {
      if (!(error instanceof CommanderError)) throw error;
      status = error.exitCode;
    }
    return { status, stdout, stderr };
  } finally {
    setCliStreams(undefined);
    process.chdir(savedCwd);
    for (const [key, value] of Object.entries(savedEnv)) {
      if (value === undefined) Reflect.deleteProperty(process.env, key);
      else process.env[key] = value;
    }
    process.exitCode = savedExitCode;
  }
}

/**
 * `dmr`, `ok` (asserts exit 0) and `json` (`-o json`, parsed) bound to
 * options read at call time, e.g. a temp directory made in `before`; `run`
 * chooses a child per command (runDmr, the default) or runDmrInProcess.
 */
export function dmrCli(options: () => DmrRunOptions, run: typeof runDmr = runDmr) {
  const dmr = (...args: string[]) => run(args, options());
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
  captureCommander(
    program,
    (text) => (out += text),
    (text) => assert.fail(`dmr ${path.join(' ')} --help wrote to stderr: ${text}`),
  );
  await assert.rejects(program.parseAsync(argv), (error) => {
    assert.ok(error instanceof CommanderError, String(error));
    assert.equal(error.code, 'commander.helpDisplayed', `dmr ${path.join(' ')} --help: ${error.message}`);
    return true;
  });
  return out;
}
