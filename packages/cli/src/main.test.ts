import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { buildProgram, invokedGroup } from './main.js';
import { DMR_BIN } from './test-support.js';

function commandPaths(command: Command, prefix: string[] = []): string[][] {
  return command.commands.flatMap((sub) => {
    const path = [...prefix, sub.name()];
    return [path, ...commandPaths(sub, path)];
  });
}

describe('dmr command line', () => {
  it('lists every top-level subcommand in `dmr --help`', async () => {
    const result = spawnSync(process.execPath, [DMR_BIN, '--help'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    for (const sub of (await buildProgram()).commands) assert.match(result.stdout, new RegExp(`\\n  ${sub.name()}\\b`));
  });

  it('gives every command a description and a working --help', async () => {
    const paths = commandPaths(await buildProgram());
    assert.ok(paths.length >= 2);
    for (const path of paths) {
      const result = spawnSync(process.execPath, [DMR_BIN, ...path, '--help'], { encoding: 'utf8' });
      assert.equal(result.status, 0, `dmr ${path.join(' ')} --help: ${result.stderr}`);
      assert.match(result.stdout, /Usage: dmr /, path.join(' '));
    }
    for (const command of (await buildProgram()).commands) assert.ok(command.description().length > 0, command.name());
  });

  it('rejects an unknown command with a non-zero exit and a pointer to --help', () => {
    const result = spawnSync(process.execPath, [DMR_BIN, 'no-such-command'], { encoding: 'utf8' });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /unknown command|--help/);
  });

  it('loads only the invoked command group', () => {
    const argv = (...args: string[]) => ['node', 'dmr', ...args];
    assert.equal(invokedGroup(argv('pki', 'init', '--dir', 'x')), 'pki');
    assert.equal(invokedGroup(argv('-o', 'json', 'ctl', 'get', 'clients')), 'ctl');
    assert.equal(invokedGroup(argv('--output', 'yaml', 'broker')), 'broker');
    assert.equal(invokedGroup(argv('help', 'centops')), 'centops');
    assert.equal(invokedGroup(argv('--help')), undefined);
  });

  it('shows a lazily loaded group in full through `dmr help <group>`', () => {
    const result = spawnSync(process.execPath, [DMR_BIN, 'help', 'pki'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /\n {2}init\b/);
  });
});
