import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

/** packages/, from packages/testkit/dist. */
const PACKAGES = fileURLToPath(new URL('../..', import.meta.url));

interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
}

describe('@dmr/testkit stays out of production', () => {
  it('no package lists it as a dependency (a devDependency is fine)', () => {
    const offenders: string[] = [];
    for (const dir of readdirSync(PACKAGES)) {
      let manifest: Manifest;
      try {
        manifest = JSON.parse(readFileSync(join(PACKAGES, dir, 'package.json'), 'utf8')) as Manifest;
      } catch {
        continue; // not a package
      }
      if (manifest.dependencies?.['@dmr/testkit'] !== undefined) offenders.push(manifest.name);
    }
    assert.deepEqual(offenders, []);
  });

  it('no package index exports a testing module', () => {
    for (const pkg of ['core', 'centops', 'node']) {
      const index = readFileSync(join(PACKAGES, pkg, 'src', 'index.ts'), 'utf8');
      assert.doesNotMatch(index, /testing|test-support|node-fixture/, `${pkg}/src/index.ts`);
    }
  });
});
