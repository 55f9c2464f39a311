/**
 * The real `opa` binary, pinned (scripts/install-opa.sh), wrapped for the
 * tooling: check, test, eval and building DMR bundles. CentOps refuses a
 * policy change on these results, so failures carry OPA's output verbatim.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DmrError, isDmrError } from '@dmr/core';
import { MANIFEST_FILE, WASM_FILE, parseBundle, writeBundle, type BundleManifest } from './bundle.js';
import { DECISION_ENTRYPOINT, toPolicyResult, type PolicyResult } from './decision.js';
import type { BundleSigner } from './signing.js';
import { readTarGz } from './tar.js';

/** Where the binary is: $DMR_OPA, else node_modules/.bin/opa of the workspace. */
export function findOpa(): string {
  const fromEnv = process.env.DMR_OPA;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!existsSync(fromEnv)) {
      throw new DmrError('DEPENDENCY_MISSING', `DMR_OPA points at ${fromEnv}, which does not exist`, {
        hint: 'run `npm run setup:opa`, or unset DMR_OPA',
      });
    }
    return fromEnv;
  }
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', '.bin', 'opa');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) break;
  }
  throw new DmrError(
    'DEPENDENCY_MISSING',
    'the opa binary is not installed (looked in node_modules/.bin and $DMR_OPA)',
    {
      hint: 'run `npm run setup:opa` (installs the pinned OPA), or set DMR_OPA to an opa binary',
    },
  );
}

/** scripts/install-opa.sh of the checkout this module runs from, if it runs from one. */
function findInstallScript(): string | undefined {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'scripts', 'install-opa.sh');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

export interface EnsureOpaOptions {
  /** Called once when opa is missing and the build starts (it takes minutes). */
  onBuild?: () => void;
  /** The install script's progress and errors, line by line; default: stderr. */
  onOutput?: (line: string) => void;
}

/**
 * The opa binary, built first when it is missing: `npm ci` then `npm start`
 * (or `npm test`) is enough on a fresh machine. The build is
 * scripts/install-opa.sh, the one place that knows the pinned version
 * (Go, about 3 minutes on 2 cores, cached in ~/.cache/dmr).
 */
export async function ensureOpa(options: EnsureOpaOptions = {}): Promise<string> {
  let missing: DmrError;
  try {
    return findOpa();
  } catch (error) {
    // A DMR_OPA that points nowhere is the caller's choice to fix, not something to build over.
    if (!isDmrError(error) || process.env.DMR_OPA) throw error;
    missing = error;
  }
  const script = findInstallScript();
  if (script === undefined) throw missing;
  options.onBuild?.();
  const output = options.onOutput ?? ((line: string) => process.stderr.write(`${line}\n`));
  const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on('line', output);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) {
    throw new DmrError('DEPENDENCY_MISSING', `the pinned opa could not be built (${script} exited with ${code})`, {
      hint:
        'the lines above say why; without Go: install it (https://go.dev/doc/install, or apt-get install golang) ' +
        'and try again, or set DMR_OPA to an opa binary',
    });
  }
  return findOpa();
}

export interface OpaRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The run was killed because it outlived its time. */
  timedOut: boolean;
  /** Output beyond MAX_OPA_OUTPUT_BYTES (per stream) was dropped. */
  truncated: boolean;
}

/** How long one policy operation (check, test, build together) may take by default. */
export const DEFAULT_OPA_TIMEOUT_MS = 60_000;
/** What is kept of each of OPA's output streams; the rest is dropped, not buffered. */
export const MAX_OPA_OUTPUT_BYTES = 4 * 1024 * 1024;
/** What of OPA's output goes back to the caller in an error (details.output). */
export const MAX_REPORTED_OUTPUT_CHARS = 64 * 1024;

export interface OpaSandbox {
  /**
   * When the whole operation must be over (ms since the epoch); each run gets
   * what is left. Default: DEFAULT_OPA_TIMEOUT_MS from the start of each call.
   */
  deadline?: number;
}

function deadlineOf(sandbox: OpaSandbox | undefined): number {
  return sandbox?.deadline ?? Date.now() + DEFAULT_OPA_TIMEOUT_MS;
}

/**
 * Runs opa with an empty environment (no secret of the caller's can reach a
 * policy, e.g. through opa.runtime().env), in `cwd`, killed once `timeoutMs`
 * has passed, and with at most MAX_OPA_OUTPUT_BYTES kept per stream.
 */
export async function runOpa(
  args: string[],
  options: { cwd?: string; stdin?: string; opa?: string; timeoutMs?: number } = {},
): Promise<OpaRun> {
  const opa = options.opa ?? findOpa();
  const timeoutMs = Math.max(1, options.timeoutMs ?? DEFAULT_OPA_TIMEOUT_MS);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(opa, args, { cwd: options.cwd, env: {}, stdio: ['pipe', 'pipe', 'pipe'] });
    let timedOut = false;
    let truncated = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const collect = () => {
      const chunks: Buffer[] = [];
      let size = 0;
      return {
        chunks,
        push(chunk: Buffer) {
          if (size >= MAX_OPA_OUTPUT_BYTES) {
            truncated = true;
            return;
          }
          const kept = chunk.subarray(0, MAX_OPA_OUTPUT_BYTES - size);
          if (kept.length < chunk.length) truncated = true;
          chunks.push(kept);
          size += kept.length;
        },
      };
    };
    const out = collect();
    const err = collect();
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(
        new DmrError('DEPENDENCY_MISSING', `cannot run ${opa}: ${error.message}`, { hint: 'run `npm run setup:opa`' }),
      );
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({
        code: code ?? 1,
        stdout: Buffer.concat(out.chunks).toString('utf8'),
        stderr: Buffer.concat(err.chunks).toString('utf8'),
        timedOut,
        truncated,
      });
    });
    // A child killed before it read its input closes the pipe under us; that is not our failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

/** OPA's output as it goes back to a caller: verbatim, but no more than MAX_REPORTED_OUTPUT_CHARS. */
function reportedOutput(run: OpaRun): string {
  const output = `${run.stdout}${run.stderr}`.trimEnd();
  if (output.length <= MAX_REPORTED_OUTPUT_CHARS && !run.truncated) return output;
  return `${output.slice(0, MAX_REPORTED_OUTPUT_CHARS)}\n… (output cut at ${MAX_REPORTED_OUTPUT_CHARS} characters)`;
}

function policyInvalid(what: string, run: OpaRun, timeoutMs: number): DmrError {
  const output = reportedOutput(run);
  if (run.timedOut) {
    return new DmrError('POLICY_INVALID', `${what} did not finish within ${timeoutMs} ms and was stopped`, {
      details: { check: 'timeout', timeoutMs, output },
      hint: 'look for a rule or test that iterates over a huge range or loops; policies must evaluate quickly',
    });
  }
  return new DmrError('POLICY_INVALID', `${what} failed:\n${output}`, { details: { output } });
}

/** One sandboxed run toward `deadline`: refused as POLICY_INVALID when it fails or times out. */
async function runChecked(
  what: string,
  args: string[],
  deadline: number,
  options: { cwd?: string; opa: string },
): Promise<OpaRun> {
  const timeoutMs = Math.max(1, deadline - Date.now());
  const run = await runOpa(args, { ...options, timeoutMs });
  if (run.timedOut || run.code !== 0) throw policyInvalid(what, run, timeoutMs);
  return run;
}

let sdkBuiltins: Promise<Set<string>> | undefined;

/** The built-ins the opa-wasm JS SDK can run (its capabilities.json), read once. */
function wasmBuiltinNames(): Promise<Set<string>> {
  sdkBuiltins ??= (async () => {
    const require = createRequire(import.meta.url);
    // The package exports no package.json; its main entry is src/index.cjs.
    const sdkDir = dirname(dirname(require.resolve('@open-policy-agent/opa-wasm')));
    const sdk = JSON.parse(await readFile(join(sdkDir, 'capabilities.json'), 'utf8')) as {
      builtins: Array<{ name: string }>;
    };
    return new Set(sdk.builtins.map((builtin) => builtin.name));
  })();
  return sdkBuiltins;
}

/**
 * OPA's capabilities narrowed to what a node's Wasm engine runs: the
 * built-ins of the opa-wasm SDK (no http.send, opa.runtime, net.*, time.now_ns,
 * print, crypto.*, …) and no network (`allow_net: []`). Everything
 * CentOps runs, tests included, is held to it, so nothing an operator sends
 * can read files, the environment or the network of the CentOps host. Taken
 * from `opa capabilities --current` (the SDK's own file lacks OPA's
 * `features`, which v1 Rego parsing needs).
 */
async function wasmCapabilities(dir: string, opa: string, deadline: number): Promise<string> {
  let text = capabilitiesByOpa.get(opa);
  if (text === undefined) {
    const current = await runChecked('opa capabilities', ['capabilities', '--current'], deadline, { opa });
    const all = JSON.parse(current.stdout) as { builtins: Array<{ name: string }> } & Record<string, unknown>;
    const names = await wasmBuiltinNames();
    const builtins = all.builtins.filter((builtin) => names.has(builtin.name));
    text = JSON.stringify({ ...all, builtins, allow_net: [] });
    capabilitiesByOpa.set(opa, text);
  }
  const path = join(dir, 'capabilities.json');
  await writeFile(path, text);
  return path;
}

const capabilitiesByOpa = new Map<string, string>();

async function withTempDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'dmr-policy-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `opa check --strict` of every file with the Wasm capabilities, then of the
 * shipped Rego (tests ignored) the same way; throws POLICY_INVALID with OPA's
 * output. Runs in `policyDir` with an empty environment, stopped at the
 * sandbox's deadline.
 */
export async function opaCheck(policyDir: string, sandbox: OpaSandbox = {}): Promise<void> {
  const opa = findOpa();
  const deadline = deadlineOf(sandbox);
  const dir = resolve(policyDir);
  await withTempDir(async (tmp) => {
    const capabilities = await wasmCapabilities(tmp, opa, deadline);
    await runChecked('opa check --strict', ['check', '--strict', '--capabilities', capabilities, dir], deadline, {
      cwd: dir,
      opa,
    });
    const shipped = ['check', '--strict', '--capabilities', capabilities, '--ignore', '*_test.rego', dir];
    await runChecked('opa check --strict (the shipped Rego)', shipped, deadline, { cwd: dir, opa });
  });
}

export interface OpaTestCase {
  package: string;
  name: string;
  passed: boolean;
  durationNs: number;
  /** OPA's error or failure location, when it did not pass. */
  problem?: string;
}

export interface OpaTestReport {
  passed: number;
  failed: number;
  tests: OpaTestCase[];
}

interface RawOpaTest {
  package?: string;
  name?: string;
  fail?: boolean;
  error?: { message?: string };
  duration?: number;
  location?: { file?: string; row?: number };
  skip?: boolean;
}

/**
 * `opa test` with the Wasm capabilities: the parsed results, or
 * POLICY_INVALID carrying OPA's own (verbose) output verbatim, cut at
 * MAX_REPORTED_OUTPUT_CHARS. Sandboxed like opaCheck.
 */
export async function opaTest(policyDir: string, sandbox: OpaSandbox = {}): Promise<OpaTestReport> {
  const opa = findOpa();
  const deadline = deadlineOf(sandbox);
  const dir = resolve(policyDir);
  return withTempDir(async (tmp) => {
    const capabilities = await wasmCapabilities(tmp, opa, deadline);
    // OPA's own per-test timeout (5 s by default) would cut a slow but legitimate suite short of ours.
    const testArgs = () => [
      'test',
      '--capabilities',
      capabilities,
      '--timeout',
      `${Math.max(1, deadline - Date.now())}ms`,
    ];
    const timeoutMs = Math.max(1, deadline - Date.now());
    const run = await runOpa([...testArgs(), '--format', 'json', dir], { cwd: dir, opa, timeoutMs });
    if (run.timedOut) throw policyInvalid('opa test', run, timeoutMs);
    let raw: RawOpaTest[];
    try {
      raw = JSON.parse(run.stdout) as RawOpaTest[];
    } catch {
      throw policyInvalid('opa test', run, timeoutMs); // compile errors come as text
    }
    const tests = raw.map((test): OpaTestCase => {
      const passed = test.fail !== true && test.error === undefined;
      return {
        package: test.package ?? '',
        name: test.name ?? '',
        passed,
        durationNs: test.duration ?? 0,
        ...(passed
          ? {}
          : { problem: test.error?.message ?? `${test.location?.file ?? ''}:${test.location?.row ?? 0}` }),
      };
    });
    const failed = tests.filter((test) => !test.passed).length;
    if (run.code !== 0 || failed > 0) {
      // The human output is what an operator fixes a policy from: hand it over unedited.
      const rest = Math.max(1, deadline - Date.now());
      throw policyInvalid('opa test', await runOpa([...testArgs(), dir], { cwd: dir, opa, timeoutMs: rest }), rest);
    }
    return { passed: tests.length, failed, tests };
  });
}

export interface BuildOptions {
  /** Directory of Rego, data.json and *_test.rego (tests are left out of the bundle). */
  dir: string;
  revision: string;
  /** Data roots the bundle owns (default ["dmr"]). */
  roots?: string[];
  entrypoint?: string;
  signer?: BundleSigner;
  /** The deadline of the whole build (both opa runs); default DEFAULT_OPA_TIMEOUT_MS from now. */
  sandbox?: OpaSandbox;
}

export interface BuiltBundle {
  archive: Buffer;
  revision: string;
  files: Map<string, Buffer>;
}

/**
 * Two `opa build` runs: a plain one for the Rego and merged data exactly as
 * OPA lays them out, and `-t wasm -e ENTRYPOINT` for policy.wasm only (its
 * Rego has the entrypoint stripped, see bundle.ts). Then DMR's manifest and,
 * with a signer, `.signatures.json`.
 */
export async function buildBundle(options: BuildOptions): Promise<BuiltBundle> {
  const opa = findOpa();
  const entrypoint = options.entrypoint ?? DECISION_ENTRYPOINT;
  const dir = resolve(options.dir);
  const deadline = deadlineOf(options.sandbox);
  return withTempDir(async (tmp) => {
    const capabilities = await wasmCapabilities(tmp, opa, deadline);
    const common = ['--capabilities', capabilities, '--ignore', '*_test.rego', '-r', options.revision, '-b', '.'];
    await runChecked('opa build', ['build', ...common, '-o', join(tmp, 'plain.tar.gz')], deadline, { cwd: dir, opa });
    await runChecked(
      `opa build -t wasm -e ${entrypoint}`,
      ['build', '-t', 'wasm', '-e', entrypoint, ...common, '-o', join(tmp, 'wasm.tar.gz')],
      deadline,
      { cwd: dir, opa },
    );
    const module = readTarGz(await readFile(join(tmp, 'wasm.tar.gz'))).find((file) => file.name === WASM_FILE);
    if (module === undefined) throw new DmrError('INTERNAL', 'opa build -t wasm produced no policy.wasm');
    const files = new Map<string, Buffer>();
    const manifest: BundleManifest = {
      revision: options.revision,
      roots: options.roots ?? ['dmr'],
      rego_version: 1,
      metadata: { dmr: { entrypoint, wasm: WASM_FILE } },
    };
    files.set(MANIFEST_FILE, Buffer.from(JSON.stringify(manifest), 'utf8'));
    for (const file of readTarGz(await readFile(join(tmp, 'plain.tar.gz')))) {
      if (file.name !== MANIFEST_FILE) files.set(file.name, file.data);
    }
    files.set(WASM_FILE, module.data);
    const final = options.signer === undefined ? files : options.signer.sign(files);
    const archive = writeBundle(final);
    parseBundle(archive); // what we hand out must read back
    return { archive, revision: options.revision, files: final };
  });
}

/** `opa eval` of the decision entrypoint over a policy directory or a bundle file. */
export async function opaEval(
  source: { dir: string } | { bundle: string },
  input: unknown,
  entrypoint = DECISION_ENTRYPOINT,
): Promise<PolicyResult> {
  const args = ['eval', '--format', 'json', '--stdin-input'];
  args.push(
    ...('dir' in source ? ['-b', resolve(source.dir), '--ignore', '*_test.rego'] : ['-b', resolve(source.bundle)]),
  );
  args.push(`data.${entrypoint.replace(/\//g, '.')}`);
  const run = await runOpa(args, { stdin: input === undefined ? '' : JSON.stringify(input) });
  if (run.code !== 0) throw new DmrError('POLICY_UNAVAILABLE', `opa eval failed:\n${run.stdout}${run.stderr}`);
  const parsed = JSON.parse(run.stdout) as { result?: Array<{ expressions?: Array<{ value?: unknown }> }> };
  return toPolicyResult(parsed.result?.[0]?.expressions?.[0]?.value, 'opa eval');
}
