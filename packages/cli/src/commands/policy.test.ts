/**
 * `dmr policy` usage errors: each refusal exits with its catalogue code and
 * says what to do, in text and in `-o json`. None of these reach opa
 * (policy.integration.test.ts runs the real thing). They run in this process
 * (runDmrInProcess, docs/decisions/0038-ci-time.md); the first refusal and
 * the JSON error are also spawned as a user runs them, for the binary's exit
 * code and streams.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dmrCli, runDmrInProcess, type DmrRun as Run } from '../test-support.js';

let cwd = '';
const { dmr } = dmrCli(() => ({ cwd }), runDmrInProcess);
const spawned = dmrCli(() => ({ cwd }));

async function refused(code: string, exit: number, args: string[], message?: RegExp, via = dmr): Promise<Run> {
  const run = await via(...args);
  assert.equal(run.status, exit, `dmr ${args.join(' ')} should exit ${exit}\n${run.stderr}`);
  assert.match(run.stderr, new RegExp(`^error\\[${code}\\]: `), run.stderr);
  if (message !== undefined) assert.match(run.stderr, message);
  assert.equal(run.stdout, '', 'nothing on stdout when refused');
  return run;
}

describe('dmr policy: usage errors', () => {
  before(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dmr-cli-policy-unit-'));
    await writeFile(join(cwd, 'not-json.json'), '{ nope');
    await writeFile(join(cwd, 'empty.json'), '{}');
  });
  after(async () => {
    await rm(cwd, { recursive: true, force: true });
  });

  it('check and test need --dir (or --centops), with a hint', async () => {
    const run = await refused('INVALID_ARGUMENT', 2, ['policy', 'check'], /--dir is required/, spawned.dmr);
    assert.match(run.stderr, /hint: e\.g\. --dir/);
    await refused('INVALID_ARGUMENT', 2, ['policy', 'test'], /--dir is required/);
    await refused('INVALID_ARGUMENT', 2, ['policy', 'check', '--dir', 'x', '--centops'], /not both/);
  });

  it('-o json reports the error as JSON on stderr with the same exit code', async () => {
    const run = await spawned.dmr('-o', 'json', 'policy', 'check');
    assert.equal(run.status, 2);
    assert.equal(run.stdout, '');
    const { error } = JSON.parse(run.stderr) as { error: { code: string; message: string; hint?: string } };
    assert.equal(error.code, 'INVALID_ARGUMENT');
    assert.match(error.message, /--dir/);
    assert.match(error.hint ?? '', /--dir/);
  });

  it('eval needs --input, a readable JSON file, and exactly one policy source', async () => {
    await refused('INVALID_ARGUMENT', 2, ['policy', 'eval', '--dir', 'x'], /--input is required/);
    await refused('NOT_FOUND', 3, ['policy', 'eval', '--dir', 'x', '--input', 'missing.json'], /missing\.json/);
    await refused('INVALID_ARGUMENT', 2, ['policy', 'eval', '--dir', 'x', '--input', 'not-json.json'], /not JSON/);
    await refused(
      'INVALID_ARGUMENT',
      2,
      ['policy', 'eval', '--dir', 'x', '--bundle', 'b.tar.gz', '--input', 'empty.json'],
      /exactly one of --dir DIR, --bundle FILE or --centops/,
    );
    await refused('INVALID_ARGUMENT', 2, ['policy', 'eval', '--input', 'empty.json'], /exactly one/);
  });

  it('build needs --dir and --out, a decimal revision, and key and certificate together', async () => {
    await refused('INVALID_ARGUMENT', 2, ['policy', 'build', '--out', 'b.tar.gz'], /--dir is required/);
    await refused('INVALID_ARGUMENT', 2, ['policy', 'build', '--dir', 'x'], /--out is required/);
    await refused(
      'INVALID_ARGUMENT',
      2,
      ['policy', 'build', '--dir', 'x', '--out', 'b.tar.gz', '--revision', 'v1'],
      /not a decimal integer/,
    );
    await refused(
      'INVALID_ARGUMENT',
      2,
      ['policy', 'build', '--dir', 'x', '--out', 'b.tar.gz', '--signing-key', 'k.pem'],
      /go together/,
    );
  });

  it('--centops without a CLI config says which file it looked for', async () => {
    const run = await dmr('policy', 'test', '--centops', '--config', join(cwd, 'nope.yaml'));
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /^error\[(CLI_CONFIG_INVALID|NOT_FOUND)\]: /);
    assert.match(run.stderr, /nope\.yaml/);
  });
});
