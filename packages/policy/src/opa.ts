/**
 * The real `opa` binary, pinned (scripts/install-opa.sh), wrapped for the
 * tooling: check, test, eval and building DMR bundles. CentOps refuses a
 * policy change on these results, so failures carry OPA's output verbatim.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DmrError } from '@dmr/core';
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

export interface OpaRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runOpa(
  args: string[],
  options: { cwd?: string; stdin?: string; opa?: string } = {},
): Promise<OpaRun> {
  const opa = options.opa ?? findOpa();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(opa, args, { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) =>
      reject(
        new DmrError('DEPENDENCY_MISSING', `cannot run ${opa}: ${error.message}`, { hint: 'run `npm run setup:opa`' }),
      ),
    );
    child.on('close', (code) =>
      resolvePromise({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
    child.stdin.end(options.stdin ?? '');
  });
}

function policyInvalid(what: string, run: OpaRun): DmrError {
  const output = `${run.stdout}${run.stderr}`.trimEnd();
  return new DmrError('POLICY_INVALID', `${what} failed:\n${output}`, { details: { output } });
}

/**
 * OPA's capabilities narrowed to the built-ins the opa-wasm JS SDK runs, so
 * `check` refuses a policy nodes could not evaluate (its own capabilities.json
 * lacks OPA's `features`, which v1 Rego parsing needs).
 */
async function wasmCapabilities(dir: string, opa: string): Promise<string> {
  const current = await runOpa(['capabilities', '--current'], { opa });
  const all = JSON.parse(current.stdout) as { builtins: Array<{ name: string }> } & Record<string, unknown>;
  const require = createRequire(import.meta.url);
  // The package exports no package.json; its main entry is src/index.cjs.
  const sdkDir = dirname(dirname(require.resolve('@open-policy-agent/opa-wasm')));
  const sdk = JSON.parse(await readFile(join(sdkDir, 'capabilities.json'), 'utf8')) as {
    builtins: Array<{ name: string }>;
  };
  const names = new Set(sdk.builtins.map((builtin) => builtin.name));
  const path = join(dir, 'capabilities.json');
  await writeFile(
    path,
    JSON.stringify({ ...all, builtins: all.builtins.filter((builtin) => names.has(builtin.name)) }),
  );
  return path;
}

async function withTempDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'dmr-policy-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `opa check --strict`, the shipped Rego also limited to the Wasm SDK's built-ins; throws POLICY_INVALID with OPA's output. */
export async function opaCheck(policyDir: string): Promise<void> {
  const opa = findOpa();
  await withTempDir(async (tmp) => {
    const all = await runOpa(['check', '--strict', resolve(policyDir)], { opa });
    if (all.code !== 0) throw policyInvalid('opa check --strict', all);
    // Tests run in OPA, not in Wasm: only the shipped Rego is held to the SDK's built-ins.
    const capabilities = await wasmCapabilities(tmp, opa);
    const shipped = [
      'check',
      '--strict',
      '--capabilities',
      capabilities,
      '--ignore',
      '*_test.rego',
      resolve(policyDir),
    ];
    const run = await runOpa(shipped, { opa });
    if (run.code !== 0) throw policyInvalid('opa check --strict (opa-wasm built-ins)', run);
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

/** `opa test`: the parsed results, or POLICY_INVALID carrying OPA's own (verbose) output verbatim. */
export async function opaTest(policyDir: string): Promise<OpaTestReport> {
  const dir = resolve(policyDir);
  const run = await runOpa(['test', '--format', 'json', dir]);
  let raw: RawOpaTest[];
  try {
    raw = JSON.parse(run.stdout) as RawOpaTest[];
  } catch {
    throw policyInvalid('opa test', run); // compile errors come as text
  }
  const tests = raw.map((test): OpaTestCase => {
    const passed = test.fail !== true && test.error === undefined;
    return {
      package: test.package ?? '',
      name: test.name ?? '',
      passed,
      durationNs: test.duration ?? 0,
      ...(passed ? {} : { problem: test.error?.message ?? `${test.location?.file ?? ''}:${test.location?.row ?? 0}` }),
    };
  });
  const failed = tests.filter((test) => !test.passed).length;
  if (run.code !== 0 || failed > 0) {
    // The human output is what an operator fixes a policy from: hand it over unedited.
    throw policyInvalid('opa test', await runOpa(['test', dir]));
  }
  return { passed: tests.length, failed, tests };
}

export interface BuildOptions {
  /** Directory of Rego, data.json and *_test.rego (tests are left out of the bundle). */
  dir: string;
  revision: string;
  /** Data roots the bundle owns (default ["dmr"]). */
  roots?: string[];
  entrypoint?: string;
  signer?: BundleSigner;
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
  return withTempDir(async (tmp) => {
    const common = ['--ignore', '*_test.rego', '-r', options.revision, '-b', '.'];
    const plain = await runOpa(['build', ...common, '-o', join(tmp, 'plain.tar.gz')], { cwd: dir, opa });
    if (plain.code !== 0) throw policyInvalid('opa build', plain);
    const wasm = await runOpa(['build', '-t', 'wasm', '-e', entrypoint, ...common, '-o', join(tmp, 'wasm.tar.gz')], {
      cwd: dir,
      opa,
    });
    if (wasm.code !== 0) throw policyInvalid(`opa build -t wasm -e ${entrypoint}`, wasm);
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
