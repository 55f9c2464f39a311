/**
 * Decision latency: the in-process Wasm engine vs an OPA sidecar over
 * loopback REST, over the valid cases of the policy test table. A benchmark,
 * not a test: it prints figures and asserts nothing (issue goal: in-process
 * p99 ≤ 50 µs).
 *
 *   npm run bench -- policy [N]     N decisions per mode (default 20000)
 *
 * Then the CPU time per decision of opa-wasm's own evaluate and of this
 * package's Wasm call (decision 0036).
 */
import { performance } from 'node:perf_hooks';
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import { dataOf, parseBundle, wasmOf } from '../bundle.js';
import { PolicyEngine, type PolicyDecider } from '../engine.js';
import { compilePolicy } from '../wasm.js';
import { isPolicyInput } from '../input.js';
import { buildBundle } from '../opa.js';
import { RestPolicyEngine } from '../rest-engine.js';
import { REGO_DIR, bundleServer, decisionTable, startSidecar, testPki } from '../test-support.js';
import { summarize } from '@dmr/core';

interface Stats {
  mode: string;
  n: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

function stats(mode: string, samplesNs: number[]): Stats {
  const { n, p50, p99, max, mean } = summarize(samplesNs);
  return { mode, n, p50: p50 / 1000, p99: p99 / 1000, max: max / 1000, mean: mean / 1000 };
}

async function measure(
  mode: string,
  n: number,
  inputs: unknown[],
  decide: (input: unknown) => unknown,
): Promise<Stats> {
  for (let i = 0; i < Math.min(2000, n); i++) await decide(inputs[i % inputs.length]); // warm up JIT, sockets
  const samples: number[] = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const input = inputs[i % inputs.length];
    const start = performance.now();
    const result = decide(input);
    if (result instanceof Promise) await result;
    samples[i] = (performance.now() - start) * 1e6;
  }
  return stats(mode, samples);
}

/**
 * CPU time per decision (user + system, the lowest of 12 alternating rounds
 * of 10,000): opa-wasm's own `evaluate` against this package's Wasm call
 * (wasm.ts, decision 0036), on the same module and data. CPU time, because
 * on a shared machine the latencies above measure the neighbours too.
 */
async function cpuPerDecision(archive: Buffer, inputs: unknown[]): Promise<void> {
  const bundle = parseBundle(archive);
  const { module, entrypoint } = wasmOf(bundle);
  const data = dataOf(bundle);
  const library = await loadPolicy(module);
  library.setData(data);
  const id = (library.entrypoints as Record<string, number>)[entrypoint] ?? 0;
  const ours = await compilePolicy(module, entrypoint, data);
  const modes: Array<[string, (input: unknown) => unknown]> = [
    ['opa-wasm evaluate', (input) => library.evaluate(input, id) as unknown],
    ['@dmr/policy wasm.ts', (input) => ours.evaluate(input)],
  ];
  const n = 10_000;
  const best = modes.map(() => Infinity);
  for (let round = 0; round < 12; round += 1) {
    for (const [index, [, decide]] of modes.entries()) {
      const started = process.cpuUsage();
      for (let i = 0; i < n; i += 1) decide(inputs[i % inputs.length]);
      const used = process.cpuUsage(started);
      best[index] = Math.min(best[index] ?? Infinity, (used.user + used.system) / n);
    }
  }
  console.log('CPU µs per decision (lowest of 12 rounds of 10,000):');
  for (const [index, [name]] of modes.entries()) console.log(`  ${name.padEnd(22)} ${(best[index] ?? NaN).toFixed(2)}`);
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 20000);
  const inputs = (await decisionTable()).map((c) => c.input).filter(isPolicyInput);
  const pki = await testPki();
  const built = await buildBundle({ dir: REGO_DIR, revision: '1', signer: pki.signer });
  const engine = await PolicyEngine.load(built.archive, { verification: pki.verification });
  const service = await bundleServer();
  service.publish(built.archive);
  const sidecar = await startSidecar(service.url, pki.signer.publicKeyPem);
  const rest: PolicyDecider = new RestPolicyEngine({ url: sidecar.url, timeoutMs: 5000 });
  try {
    const rows = [
      await measure('wasm in-process (evaluate)', n, inputs, (input) => engine.evaluate(input)),
      await measure('wasm in-process (decide, async)', n, inputs, (input) => engine.decide(input)),
      await measure('REST sidecar (loopback)', Math.min(n, 5000), inputs, (input) => rest.decide(input)),
    ];
    const header = ['mode', 'n', 'p50 µs', 'p99 µs', 'max µs', 'mean µs'];
    const lines = rows.map((r) => [
      r.mode,
      String(r.n),
      r.p50.toFixed(1),
      r.p99.toFixed(1),
      r.max.toFixed(1),
      r.mean.toFixed(1),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...lines.map((line) => (line[i] as string).length)));
    const format = (cells: string[]) =>
      cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ');
    console.log(`policy decision latency (${inputs.length} distinct valid inputs, node ${process.version})`);
    console.log(format(header));
    for (const line of lines) console.log(format(line));
    const p99 = rows[0]?.p99 ?? Infinity;
    console.log(`goal in-process p99 ≤ 50 µs: ${p99 <= 50 ? 'met' : 'NOT met'} (${p99.toFixed(1)} µs)`);
    await cpuPerDecision(built.archive, inputs);
  } finally {
    await sidecar.stop();
    await service.close();
    await pki.cleanup();
  }
}

await main();
