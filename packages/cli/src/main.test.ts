import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { COMMAND_GROUPS, buildProgram, invokedGroup } from './main.js';
import { DMR_BIN, helpOf } from './test-support.js';

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
    // The binary once per group: what a lazily loaded group can break (its import, its registration) shows here.
    for (const group of COMMAND_GROUPS) {
      const result = spawnSync(process.execPath, [DMR_BIN, group.name, '--help'], { encoding: 'utf8' });
      assert.equal(result.status, 0, `dmr ${group.name} --help: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`Usage: dmr ${group.name}\\b`), group.name);
    }
    // Every deeper command in process, through the same parse as the binary (one child each took ~1 s of CPU).
    const paths = commandPaths(await buildProgram());
    assert.ok(paths.length > COMMAND_GROUPS.length);
    for (const path of paths) {
      const help = await helpOf(path);
      assert.match(help, /Usage: dmr /, path.join(' '));
      assert.match(help, new RegExp(`Usage: dmr ${path.join(' ')}\\b`), path.join(' '));
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
