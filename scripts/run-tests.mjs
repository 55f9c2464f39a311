#!/usr/bin/env node
// Runs the compiled tests with node's own test runner. Node 20's `--test`
// takes no globs, so the files are listed here.
//   node scripts/run-tests.mjs            every test
//   node scripts/run-tests.mjs --unit     skip *.integration.test.js (no broker, no opa)
//   node scripts/run-tests.mjs pki        only test files whose path contains "pki"
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const filters = args.filter((arg) => !arg.startsWith('--'));

function findTests(dir) {
  const found = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...findTests(path));
    else if (entry.endsWith('.test.js')) found.push(path);
  }
  return found;
}

const files = [...readdirSync('packages').map((pkg) => join('packages', pkg, 'dist')), join('bench', 'dist')]
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

if (files.length === 0) {
  console.error('no test files found: run `npm run build` first');
  process.exit(1);
}

const result = spawnSync(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-timeout=600000', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
