/**
 * `npm run bench`: raw one hop (a), raw relay (b), the DMR path (c) and the
 * DMR path with an allow-all policy (d), measured in one run on one harness
 * broker. The table goes to stdout, progress to stderr; `--json FILE` keeps
 * the raw numbers. See bench/README.md.
 *
 * Points run load by load, each load across every row, so drift in the
 * machine's background load (other processes share the cores) spreads over
 * all rows instead of penalising whichever row ran last.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import { DmrError } from '@dmr/core';
import { CertificateAuthority } from '@dmr/pki';
import { PREFETCH, type BenchContext, type RowDriver, type RowSetup } from './context.js';
import { startCpuSample, sumShares, type CpuShares } from './cpu.js';
import { setupDmrRows } from './dmr.js';
import { ROW_IDS, USAGE, brokerPlan, parseOptions, type BenchOptions, type RowId } from './options.js';
import { setupRawRows } from './raw.js';
import { setupShovelRow } from './shovel.js';
import { setupMeshRows } from './mesh.js';
import {
  ROW_LABELS,
  computeRatios,
  evaluateGoals,
  renderReport,
  type BenchReport,
  type PointResult,
  type RowResult,
} from './report.js';

function settingsFor(brokers: number): string {
  const where =
    brokers === 1 ? 'one RabbitMQ node' : `${brokers} RabbitMQ nodes (rows a–d on the first, s–f on their own)`;
  return (
    `${where}: AMQPS only (TLS 1.2/1.3, client certificates, EXTERNAL), quorum queues, ` +
    'persistent messages, publisher confirms, manual acks'
  );
}

const PRE_WARM_S = 2;
const PRE_WARM_RATE = 500;

const started = performance.now();
function log(message: string): void {
  process.stderr.write(`[bench +${((performance.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}

function describePoint(row: RowId, p: PointResult): string {
  const extra = [
    p.nacked > 0 ? `${p.nacked} nacked` : '',
    p.skipped > 0 ? `${p.skipped} skipped` : '',
    p.missing > 0 ? `${p.missing} missing` : '',
  ].filter((part) => part !== '');
  return (
    `${row} @ ${p.load}: ${p.achieved.toFixed(0)} msg/s, p50 ${p.latencyMs.p50.toFixed(2)} ms, ` +
    `p99 ${p.latencyMs.p99.toFixed(2)} ms (n=${p.latencyMs.n})${extra.length > 0 ? `, ${extra.join(', ')}` : ''}` +
    `; CPU % ${JSON.stringify(p.cpu ?? {})}`
  );
}

async function measureAll(
  options: BenchOptions,
  harness: BrokerHarness,
  drivers: readonly RowDriver[],
  results: Map<RowId, RowResult>,
): Promise<void> {
  // One unmeasured run per row first: a fresh router process (JIT, Wasm, first stream and queue
  // writes) was several times slower in its first seconds than after, which the first point would pay.
  for (const driver of drivers) {
    await driver.activate?.();
    log(`${driver.row}: ${PRE_WARM_S} s unmeasured pre-warm at ${PRE_WARM_RATE} msg/s`);
    await driver.probe.runPoint({
      load: PRE_WARM_RATE,
      warmupMs: 0,
      measureMs: PRE_WARM_S * 1000,
      window: options.window,
    });
    driver.probe.abandonInFlight();
  }
  for (const load of options.loads) {
    for (const driver of drivers) {
      await driver.activate?.();
      log(`${driver.row} @ ${load}: ${options.warmupS} s warm-up + ${options.durationS} s`);
      let cpu: CpuShares | undefined;
      const point = await driver.probe.runPoint({
        load,
        warmupMs: options.warmupS * 1000,
        measureMs: options.durationS * 1000,
        window: options.window,
        onWindow: () => {
          const brokers = driver.brokerPids?.() ?? [harness.node().pid];
          const workers = driver.workerPids?.() ?? [driver.workerPid?.()];
          const sample = startCpuSample({
            ...Object.fromEntries(brokers.map((pid, i) => [`broker.${i}`, pid ?? undefined])),
            ...Object.fromEntries(workers.map((pid, i) => [`worker.${i}`, pid])),
            bench: process.pid,
          });
          return () => {
            cpu = sumShares(sample(), ['broker', 'worker', 'bench']);
          };
        },
      });
      if (cpu !== undefined) point.cpu = cpu;
      const abandoned = driver.probe.abandonInFlight();
      if (abandoned > 0) log(`${driver.row}: gave up on ${abandoned} message(s) still in flight after the drain`);
      results.get(driver.row)?.points.push(point);
      log(describePoint(driver.row, point));
      // Let the quorum queues finish their housekeeping before the next point.
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

async function run(options: BenchOptions): Promise<BenchReport> {
  const dir = await mkdtemp(join(tmpdir(), 'dmr-bench-'));
  log(`working directory ${dir}${options.keep ? ' (kept)' : ''}`);
  const loadAverage = loadavg() as [number, number, number];
  let harness: BrokerHarness | undefined;
  const setups: Array<Extract<RowSetup, { ok: true }>> = [];
  const results = new Map<RowId, RowResult>(
    options.rows.map((row) => [row, { row, label: ROW_LABELS[row], points: [] }]),
  );
  try {
    const ca = await CertificateAuthority.init(join(dir, 'ca'), { trustDomain: 'dmr.bench' });
    const { brokers, meshBroker } = brokerPlan(options.rows);
    log(`starting ${brokers === 1 ? 'the broker' : `${brokers} brokers`} (TLS, EXTERNAL; ≈ 7 s each)`);
    harness = await startBrokers({
      dir: join(dir, 'brokers'),
      ca,
      nodes: brokers,
      namePrefix: 'bench',
      onProgress: (event) => log(`broker: ${event.message}`),
    });
    const context: BenchContext = {
      dir,
      ca,
      harness,
      meshBroker,
      options,
      body: Buffer.alloc(options.sizeBytes, 0x61),
      log,
    };
    const drivers: RowDriver[] = [];
    const groups = [
      { rows: ['a', 'b'], setup: setupRawRows },
      { rows: ['c', 'd'], setup: setupDmrRows },
      { rows: ['s'], setup: setupShovelRow },
      { rows: ['e', 'f'], setup: setupMeshRows },
    ] as const;
    for (const group of groups) {
      let done: RowSetup;
      try {
        done = await group.setup(context, options.rows);
      } catch (error) {
        // One broken setup must not cost the other rows their numbers; the table says why.
        done = { ok: false, unavailable: `setup failed: ${error instanceof Error ? error.message : String(error)}` };
      }
      if (done.ok) {
        setups.push(done);
        drivers.push(...done.drivers);
        continue;
      }
      log(`rows ${group.rows.join(', ')} not available: ${done.unavailable}`);
      for (const row of group.rows) {
        const result = results.get(row);
        if (result) result.unavailable = done.unavailable;
      }
    }
    drivers.sort((x, y) => ROW_IDS.indexOf(x.row) - ROW_IDS.indexOf(y.row));
    await measureAll(options, harness, drivers, results);
    const strays = drivers.reduce((sum, driver) => sum + driver.probe.strays, 0);
    if (strays > 0) log(`${strays} unexpected or duplicate deliveries (ignored in the figures)`);
    const rows = [...results.values()];
    return {
      info: {
        startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
        node: process.version,
        rabbitmq: harness.state.rabbitmq.version,
        cpus: availableParallelism(),
        loadAverage,
        loadAverageEnd: loadavg() as [number, number, number],
        durationS: options.durationS,
        warmupS: options.warmupS,
        sizeBytes: options.sizeBytes,
        window: options.window,
        settings:
          `${settingsFor(harness.nodes.length)}; prefetch ${PREFETCH} (relay, consumers), ` +
          `router ${options.routerPrefetch ?? "Router's default"}` +
          (options.noAudit ? '; EXPERIMENT: router without audit (c/d are not the product path)' : '') +
          (options.noReplayJournal ? '; EXPERIMENT: replay memory not on disk (c/d are not the product path)' : '') +
          (options.rawFirstQueue === 'classic' ? '; EXPERIMENT: rows a/b first queue classic' : ''),
      },
      rows,
      ratios: computeRatios(rows, options.loads),
      goals: evaluateGoals(rows),
    };
  } finally {
    for (const setup of setups.reverse()) await setup.close().catch((error: unknown) => log(`close: ${String(error)}`));
    if (harness !== undefined) {
      log('stopping the broker');
      await harness.stop();
    }
    if (!options.keep) await rm(dir, { recursive: true, force: true });
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(argv);
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const report = await run(options);
  process.stdout.write(renderReport(report));
  if (options.jsonFile !== undefined) {
    await writeFile(options.jsonFile, `${JSON.stringify(report, (_key, value: unknown) => jsonSafe(value), 2)}\n`);
    log(`raw numbers written to ${options.jsonFile}`);
  }
  return 0;
}

/** NaN and ±Infinity are not JSON: write them as null rather than let JSON.stringify do so silently. */
function jsonSafe(value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  const hint = error instanceof DmrError && error.hint !== undefined ? `\nhint: ${error.hint}` : '';
  process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}${hint}\n`);
  process.exitCode = 1;
}
