#!/usr/bin/env node
// Runs the compiled tests with node's own test runner, several files at a
// time. Node 20's `--test` runs the files it is given one after another, and
// most of the suite's time is spent waiting on RabbitMQ nodes and child
// processes, not on the CPU: so each file gets a `node --test` child of its
// own, DMR_TEST_JOBS of them at once (docs/testing.md,
// docs/decisions/0017-parallel-test-files.md).
//
//   node scripts/run-tests.mjs                   every test
//   node scripts/run-tests.mjs --unit            skip *.integration.test.js (no broker, no opa)
//   node scripts/run-tests.mjs pki router        only test files whose path contains "pki" or "router"
//   node scripts/run-tests.mjs --record-timings  also write this run's file durations to scripts/test-timings.json
//   node scripts/run-tests.mjs --cpu             also report each file's CPU seconds (its own and every child's)
//
// A file's output is printed in one piece when it finishes, so files never
// interleave; the run ends with a summary, the ten slowest files and the
// names of the files that failed. The exit code is non-zero when any file failed.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Buffer } from 'node:buffer';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TIMINGS_FILE = join(ROOT, 'scripts', 'test-timings.json');
// One more than the cores, 2 to 4: the integration files wait on brokers far more than they compute,
// and 3 on 2 cores is the middle of what was measured (docs/decisions/0017-parallel-test-files.md).
const DEFAULT_JOBS = Math.max(2, Math.min(4, availableParallelism() + 1));
// Without a recorded time, a file that starts brokers or binaries is assumed slow and a unit file quick.
const GUESS_INTEGRATION_S = 60;
const GUESS_UNIT_S = 2;

const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const recordTimings = args.includes('--record-timings');
const measureCpu = args.includes('--cpu') || process.env.DMR_TEST_CPU === '1';
const filters = args.filter((arg) => !arg.startsWith('--'));

function parseJobs(value) {
  if (value === undefined || value === '') return DEFAULT_JOBS;
  const jobs = Number(value);
  if (!Number.isInteger(jobs) || jobs < 1) {
    console.error(`DMR_TEST_JOBS must be a whole number of 1 or more, not "${value}"`);
    process.exit(2);
  }
  return jobs;
}
const jobs = parseJobs(process.env.DMR_TEST_JOBS);

function findTests(dir) {
  const found = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...findTests(path));
    else if (entry.endsWith('.test.js')) found.push(path);
  }
  return found;
}

/**
 * A compiled test whose source is gone (moved or deleted since the last build) would run stale code:
 * tsc -b never deletes outputs. Its source is the same path under src/ with .ts.
 */
function hasSource(file) {
  const source = file.replace(/([\\/])dist([\\/])/, '$1src$2').replace(/\.js$/, '.ts');
  return existsSync(source);
}

process.chdir(ROOT);
const allFiles = [...readdirSync('packages').map((pkg) => join('packages', pkg, 'dist')), join('bench', 'dist')]
  .filter((dist) => {
    try {
      return statSync(dist).isDirectory();
    } catch {
      return false;
    }
  })
  .flatMap(findTests)
  .filter((file) => !unitOnly || !file.endsWith('.integration.test.js'))
  .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
  .sort();
const stale = allFiles.filter((file) => !hasSource(file));
if (stale.length > 0) {
  console.log(`skipping ${stale.length} compiled test file(s) whose source is gone (\`npm run clean\` removes them):`);
  for (const file of stale) console.log(`  ${file}`);
}
const files = allFiles.filter(hasSource);

if (files.length === 0) {
  console.error('no test files found: run `npm run build` first');
  process.exit(1);
}

function readTimings() {
  try {
    return JSON.parse(readFileSync(TIMINGS_FILE, 'utf8'));
  } catch {
    return {};
  }
}
const timings = readTimings();
const expected = (file) =>
  timings[file] ?? (file.endsWith('.integration.test.js') ? GUESS_INTEGRATION_S : GUESS_UNIT_S);
// Longest first: the last file to start should be a short one, or one slow file ends the run alone.
const queue = [...files].sort((a, b) => expected(b) - expected(a) || a.localeCompare(b));

/**
 * The pinned opa is built on demand (scripts/install-opa.sh, the one place
 * that knows its version), so `npm ci && npm test` works on a fresh machine.
 * If it cannot be built (no Go), the run goes on: the tests that need opa
 * fail with DEPENDENCY_MISSING and the script's hint was printed above them.
 */
function ensureOpa() {
  if (process.env.DMR_OPA || existsSync(join(ROOT, 'node_modules', '.bin', 'opa'))) return;
  console.error('opa is not installed yet: building the pinned version (scripts/install-opa.sh)');
  const result = spawnSync('bash', [join(ROOT, 'scripts', 'install-opa.sh')], { stdio: 'inherit' });
  if (result.status !== 0) console.error('warning: opa could not be installed; the tests that need it will fail');
}
if (!unitOnly) ensureOpa();

const SUMMARY_FIELDS = ['tests', 'pass', 'fail', 'cancelled', 'skipped', 'todo'];
// eslint-disable-next-line no-control-regex -- colour codes are what is stripped
const stripAnsi = (text) => text.replace(/\u001b\[[0-9;]*m/g, '');

/** The counts node's spec reporter prints at the end of a file ("ℹ pass 12"). */
function countsOf(output) {
  const counts = {};
  for (const field of SUMMARY_FIELDS) {
    const matches = [...stripAnsi(output).matchAll(new RegExp(`^ℹ ${field} (\\d+)$`, 'gm'))];
    counts[field] = matches.length === 0 ? 0 : Number(matches[matches.length - 1][1]);
  }
  return counts;
}

/**
 * --cpu: the file runs under bash, whose `times` prints (second line) the user and system CPU of every
 * child it waited for, and of their waited-for descendants: the test process, the RabbitMQ nodes it
 * starts (the server script waits for beam.smp, the test process for the script), every rabbitmqctl,
 * opa and `dmr` child. A process nobody waits for (a daemon, one left running) is not counted.
 */
const CPU_WRAPPER = '"$@"; status=$?; times >&3; exit $status';
/** Seconds from bash's `times` (two lines of "0m1.234s 0m0.567s": the shell, then its children). */
function cpuOf(text) {
  const lines = text.trim().split('\n');
  const match = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines[lines.length - 1] ?? '');
  if (!match) return undefined;
  return {
    user: Number(match[1]) * 60 + Number(match[2]),
    system: Number(match[3]) * 60 + Number(match[4]),
  };
}
const cpuSeconds = (cpu) => (cpu === undefined ? 0 : cpu.user + cpu.system);

const colour = process.stdout.isTTY === true;
const childEnv = { ...process.env, ...(colour ? { FORCE_COLOR: '1' } : {}) };
const running = new Set();

function runFile(file) {
  return new Promise((resolve) => {
    const started = performance.now();
    const command = [
      process.execPath,
      '--enable-source-maps',
      '--test',
      '--test-timeout=600000',
      '--test-reporter=spec',
      file,
    ];
    const child = measureCpu
      ? spawn('bash', ['-c', CPU_WRAPPER, 'dmr-test', ...command], {
          stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
          env: childEnv,
        })
      : spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
    running.add(child);
    const chunks = [];
    const cpuChunks = [];
    child.stdout.on('data', (chunk) => chunks.push(chunk));
    child.stderr.on('data', (chunk) => chunks.push(chunk));
    child.stdio[3]?.on('data', (chunk) => cpuChunks.push(chunk));
    child.on('close', (code, signal) => {
      running.delete(child);
      const output = Buffer.concat(chunks).toString('utf8');
      const seconds = (performance.now() - started) / 1000;
      const counts = countsOf(output);
      const ok = code === 0 && counts.fail === 0 && counts.cancelled === 0;
      const cpu = measureCpu ? cpuOf(Buffer.concat(cpuChunks).toString('utf8')) : undefined;
      resolve({ file, seconds, ok, code, signal, counts, output, cpu });
    });
  });
}

function printResult(result) {
  const status = result.ok ? 'ok' : `FAILED (exit ${result.signal ?? result.code})`;
  const cpu = result.cpu === undefined ? '' : `, ${cpuSeconds(result.cpu).toFixed(1)} s CPU`;
  const header = `── ${result.file}  ${result.counts.tests} tests, ${result.seconds.toFixed(1)} s${cpu}, ${status}`;
  process.stdout.write(`\n${header}\n${result.output}${result.output.endsWith('\n') ? '' : '\n'}`);
}

// Ctrl-C reaches the children too (same process group); a plain kill of this runner must not leave them behind.
for (const [signal, number] of [
  ['SIGINT', 2],
  ['SIGTERM', 15],
]) {
  process.on(signal, () => {
    for (const child of running) child.kill(signal);
    process.exit(128 + number);
  });
}

const startedAt = performance.now();
console.log(`running ${files.length} test files, ${Math.min(jobs, files.length)} at a time (DMR_TEST_JOBS)`);
const results = [];
async function worker() {
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    const result = await runFile(file);
    results.push(result);
    printResult(result);
  }
}
await Promise.all(Array.from({ length: Math.min(jobs, files.length) }, worker));
const wallSeconds = (performance.now() - startedAt) / 1000;

const total = Object.fromEntries(
  SUMMARY_FIELDS.map((field) => [field, results.reduce((sum, result) => sum + result.counts[field], 0)]),
);
const failed = results.filter((result) => !result.ok).sort((a, b) => a.file.localeCompare(b.file));
const slowest = [...results].sort((a, b) => b.seconds - a.seconds).slice(0, 10);
const fileSeconds = results.reduce((sum, result) => sum + result.seconds, 0);

console.log('\n══ summary');
console.log(
  `files ${results.length} (${failed.length} failed) · tests ${total.tests} · pass ${total.pass} · fail ${total.fail}` +
    ` · cancelled ${total.cancelled} · skipped ${total.skipped} · todo ${total.todo}`,
);
console.log(
  `wall time ${wallSeconds.toFixed(1)} s with ${Math.min(jobs, files.length)} at a time` +
    ` (the files' own times add up to ${fileSeconds.toFixed(1)} s)`,
);
console.log('\nthe ten slowest test files:');
for (const result of slowest) {
  console.log(
    `  ${result.seconds.toFixed(1).padStart(7)} s  ${String(result.counts.tests).padStart(4)} tests  ${result.file}`,
  );
}
if (measureCpu) {
  // Wall time under load is noise; CPU seconds add up the same on a busy machine and bound a quiet run's
  // wall from below (total CPU / cores).
  const cpuTotal = results.reduce((sum, result) => sum + cpuSeconds(result.cpu), 0);
  console.log(`\nCPU: ${cpuTotal.toFixed(1)} s in all (user + system of each file and its children); the ten most:`);
  for (const result of [...results].sort((a, b) => cpuSeconds(b.cpu) - cpuSeconds(a.cpu)).slice(0, 10)) {
    const cpu = result.cpu;
    console.log(
      `  ${cpuSeconds(cpu).toFixed(1).padStart(7)} s CPU (${(cpu?.user ?? 0).toFixed(1)} user)` +
        `  ${result.seconds.toFixed(1).padStart(7)} s wall  ${result.file}`,
    );
  }
}

if (recordTimings) {
  const updated = { ...timings };
  for (const result of results) updated[result.file] = Math.round(result.seconds * 10) / 10;
  const sorted = Object.fromEntries(Object.entries(updated).sort(([a], [b]) => a.localeCompare(b)));
  writeFileSync(TIMINGS_FILE, `${JSON.stringify(sorted, null, 2)}\n`);
  console.log(`\nrecorded the file durations in ${TIMINGS_FILE}`);
}

if (failed.length > 0) {
  console.log(`\n${failed.length} test file${failed.length === 1 ? '' : 's'} failed:`);
  for (const result of failed) console.log(`  ✖ ${result.file}`);
  process.exit(1);
}
