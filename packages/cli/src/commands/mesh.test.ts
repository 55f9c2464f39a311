/** `dmr up`'s options are checked before anything starts: no broker, no CentOps, no directory. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runDmr } from '../test-support.js';

describe('dmr up: bad input', () => {
  let root: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'dmr-up-args-'));
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  for (const [args, message] of [
    [['--nodes', '0'], /--nodes must be a whole number from 1 to 8, not "0"/],
    [['--nodes', '9'], /from 1 to 8, not "9"/],
    [['--nodes', 'three'], /not "three"/],
    [['--topology', 'mesh'], /unknown topology "mesh"/],
    [['--foreground', '--topology', 'tree'], /unknown topology "tree"/],
  ] as const) {
    it(`refuses ${args.join(' ')} with INVALID_ARGUMENT and a hint, and starts nothing`, async () => {
      const dir = join(root, 'mesh');
      const run = await runDmr(['up', '--dir', dir, ...args], { cwd: root });
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, /^error\[INVALID_ARGUMENT\]: /);
      assert.match(run.stderr, message);
      assert.match(run.stderr, /\n {2}hint: /);
      assert.equal(existsSync(dir), false);
    });
  }

  it('answers -o json with the catalogue error shape', async () => {
    const run = await runDmr(['-o', 'json', 'up', '--dir', join(root, 'mesh'), '--nodes', '-1'], { cwd: root });
    assert.equal(run.status, 2);
    const body = JSON.parse(run.stderr) as { error: { code: string; details: Record<string, unknown> } };
    assert.equal(body.error.code, 'INVALID_ARGUMENT');
    assert.deepEqual(body.error.details, { option: 'nodes', value: '-1', min: 1, max: 8 });
  });

  it('documents --nodes and --topology in --help', async () => {
    const run = await runDmr(['up', '--help'], { cwd: root });
    assert.equal(run.status, 0);
    assert.match(run.stdout, /--nodes <n>/);
    assert.match(run.stdout, /--topology <name>/);
    assert.match(run.stdout, /line \| ring \| star/);
  });
});
