#!/usr/bin/env node
// The one entry for benchmarks (`npm run bench -- <name> [flags]`, after `tsc -b`).
// Layout: a benchmark is a file in src/bench/ of the package it measures
// (compiled to packages/<package>/dist/bench/<file>.js); the cross-package
// table of the DMR path is the @dmr/bench package (bench/). Names:
//   dmr                  the DMR path table (bench/README.md); the default
//   <package>/<file>     e.g. centops/feed, node/hop-chain
//   <file> or <package>  when that names one benchmark (feed, api, policy, bridge, node); a file name wins
// Helpers a benchmark starts (child processes) live in a subfolder of src/bench/, so they are not listed.
// `npm run bench -- --list` lists them; every flag after the name goes to the benchmark.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';

const benches = [{ name: 'dmr', pkg: 'bench', file: 'main', path: join('bench', 'dist', 'main.js') }];
for (const pkg of readdirSync('packages').sort()) {
  const dir = join('packages', pkg, 'dist', 'bench');
  if (!existsSync(dir)) continue;
  for (const entry of readdirSync(dir).sort()) {
    if (!entry.endsWith('.js') || entry.endsWith('.test.js')) continue;
    const file = basename(entry, '.js');
    benches.push({ name: `${pkg}/${file}`, pkg, file, path: join(dir, entry) });
  }
}

const [first, ...rest] = process.argv.slice(2);
if (first === '--list') {
  for (const bench of benches) console.log(`${bench.name.padEnd(24)} ${bench.path}`);
  process.exit(0);
}
// No name, or a flag first: the DMR path table, as `npm run bench` always ran it.
const wanted = first === undefined || first.startsWith('-') ? 'dmr' : first;
const args = first === undefined || first.startsWith('-') ? process.argv.slice(2) : rest;
// A full name first, then a file name, then a package name: `bridge` is bridge/bridge even though the bridge
// package has other benchmarks.
const exact = benches.filter((bench) => bench.name === wanted);
const byFile = benches.filter((bench) => bench.file === wanted);
const byPackage = benches.filter((bench) => bench.pkg === wanted);
const matches = exact.length > 0 ? exact : byFile.length > 0 ? byFile : byPackage;
if (matches.length !== 1) {
  const known = benches.map((bench) => bench.name).join(', ');
  console.error(
    matches.length === 0
      ? `error: no benchmark named "${wanted}" (known: ${known}; run \`npm run build\` first if one is missing)`
      : `error: "${wanted}" names ${matches.map((bench) => bench.name).join(' and ')}: say which`,
  );
  process.exit(2);
}
const result = spawnSync(process.execPath, ['--enable-source-maps', matches[0].path, ...args], { stdio: 'inherit' });
process.exit(result.status ?? 1);
