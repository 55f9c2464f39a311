/**
 * docs/architecture.md's dependency table is the map newcomers read first, so
 * it is held against the code: each row must name exactly the @dmr
 * dependencies (and test-only dependencies) of that workspace's package.json,
 * every workspace must have a row, and each package's sources may import only
 * what its package.json declares (code used only by tests may also import
 * devDependencies). This test reads the repository's sources, not `dist/`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

/** From packages/core/dist/architecture.test.js up to the repository root. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TABLE_HEADING = '## Dependencies between packages';
const SCOPE = '@dmr/';

interface Workspace {
  /** The name without `@dmr/`, as the table writes it. */
  name: string;
  dir: string;
  dependencies: string[];
  devDependencies: string[];
}

interface Row {
  dependencies: string[];
  testOnly: string[];
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

function dmrNames(map: unknown): string[] {
  if (typeof map !== 'object' || map === null) return [];
  return Object.keys(map)
    .filter((name) => name.startsWith(SCOPE))
    .map((name) => name.slice(SCOPE.length))
    .sort();
}

function workspaces(): Workspace[] {
  const root = readJson(join(ROOT, 'package.json'));
  const dirs = root.workspaces;
  assert.ok(Array.isArray(dirs), 'package.json has a workspaces list');
  return dirs.map((dir: unknown) => {
    assert.equal(typeof dir, 'string');
    const manifest = readJson(join(ROOT, String(dir), 'package.json'));
    const name = String(manifest.name);
    assert.ok(name.startsWith(SCOPE), `${String(dir)}/package.json is named ${SCOPE}…`);
    return {
      name: name.slice(SCOPE.length),
      dir: String(dir),
      dependencies: dmrNames(manifest.dependencies),
      devDependencies: dmrNames(manifest.devDependencies),
    };
  });
}

function cells(line: string): string[] {
  return line
    .trim()
    .replace(/^\||\|$/g, '')
    .split('|')
    .map((cell) => cell.trim());
}

function names(cell: string): string[] {
  const plain = cell.replace(/`/g, '').trim();
  if (plain === '' || plain === '—' || plain === '-') return [];
  return plain
    .split(',')
    .map((name) => name.trim().replace(SCOPE, ''))
    .sort();
}

/** The table under TABLE_HEADING: package | @dmr dependencies | in tests only. */
export function parseDependencyTable(markdown: string): Map<string, Row> {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.trim() === TABLE_HEADING);
  assert.ok(start >= 0, `docs/architecture.md has a "${TABLE_HEADING}" section`);
  const rows = new Map<string, Row>();
  let inTable = false;
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('#')) break;
    if (!line.trim().startsWith('|')) {
      if (inTable) break;
      continue;
    }
    if (!inTable) {
      inTable = true; // the header row
      continue;
    }
    if (/^\|[\s:|-]+\|$/.test(line.trim())) continue; // the separator row
    const [pkg, dependencies, testOnly, ...rest] = cells(line);
    assert.ok(pkg !== undefined && dependencies !== undefined && testOnly !== undefined && rest.length === 0, line);
    const [name] = names(pkg);
    assert.ok(name !== undefined, `a row without a package: ${line}`);
    assert.ok(!rows.has(name), `two rows for ${name}`);
    rows.set(name, { dependencies: names(dependencies), testOnly: names(testOnly) });
  }
  return rows;
}

function sourceFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'dist') found.push(...sourceFiles(path));
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      found.push(path);
    }
  }
  return found;
}

/**
 * Code that only tests, fixtures and benchmarks run, so it may use
 * devDependencies: `*.test.ts`, `*support.ts` (test-support.ts,
 * centops-support.ts, …), and whatever is under `testing/`, `test-support/`,
 * `fixtures/` or `bench/` (and `testing.ts`, a package's test-helper export).
 */
export function testOnly(relativePath: string): boolean {
  return (
    /\.test\.ts$/.test(relativePath) ||
    /support\.ts$/.test(relativePath) ||
    /(^|\/)(testing|test-support|fixtures|bench)(\/|\.ts$)/.test(relativePath)
  );
}

/** The @dmr packages a file imports: static imports and re-exports at the start of a line, and `import('…')`. */
export function importedPackages(source: string): string[] {
  const found = new Set<string>();
  const patterns = [/^(?:import|export)\s[^;]*?\sfrom\s+'@dmr\/([a-z0-9-]+)/gm, /\bimport\(\s*'@dmr\/([a-z0-9-]+)/g];
  for (const pattern of patterns) {
    for (const match of source.matchAll(pattern)) if (match[1] !== undefined) found.add(match[1]);
  }
  return [...found].sort();
}

describe('docs/architecture.md dependency table', () => {
  const all = workspaces();
  const table = parseDependencyTable(readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8'));

  it('has one row per workspace and no other', () => {
    assert.deepEqual([...table.keys()].sort(), all.map((workspace) => workspace.name).sort());
  });

  for (const workspace of all) {
    it(`matches ${workspace.dir}/package.json`, () => {
      const row = table.get(workspace.name);
      assert.ok(row, `no row for ${workspace.name}`);
      assert.deepEqual(row.dependencies, workspace.dependencies, `${workspace.name}: dependencies`);
      assert.deepEqual(row.testOnly, workspace.devDependencies, `${workspace.name}: devDependencies`);
    });

    it(`${workspace.dir} imports only the @dmr packages it declares`, () => {
      const wrong: string[] = [];
      for (const file of sourceFiles(join(ROOT, workspace.dir, 'src'))) {
        const path = relative(join(ROOT, workspace.dir, 'src'), file);
        const allowed = testOnly(path)
          ? [...workspace.dependencies, ...workspace.devDependencies]
          : workspace.dependencies;
        for (const imported of importedPackages(readFileSync(file, 'utf8'))) {
          if (imported !== workspace.name && !allowed.includes(imported))
            wrong.push(`${path} imports @dmr/${imported}`);
        }
      }
      assert.deepEqual(wrong, []);
    });
  }
});

describe('testOnly', () => {
  it('tells test code from production code', () => {
    for (const path of [
      'a.test.ts',
      'agent/test-support.ts',
      'centops-support.ts',
      'testing/node-fixture.ts',
      'testing.ts',
      'bench/x.ts',
      'fixtures/hold.ts',
    ]) {
      assert.equal(testOnly(path), true, path);
    }
    for (const path of ['agent/agent.ts', 'router/router.ts', 'contest.ts']) assert.equal(testOnly(path), false, path);
  });
});

describe('importedPackages', () => {
  it('sees static, multi-line and dynamic imports, not code quoted in a string', () => {
    // Built from parts so that this file's own source holds no import of those packages.
    const at = "'@dmr/";
    const source = [
      `import { a } from ${at}core';`,
      'import {',
      '  b,',
      `} from ${at}pki/testing';`,
      `export { c } from ${at}broker';`,
      `const m = await import(${at}node');`,
      'const hint = `',
      `  import { d } from ${at}sdk';`,
      '`;',
    ].join('\n');
    assert.deepEqual(importedPackages(source), ['broker', 'core', 'node', 'pki']);
  });
});
