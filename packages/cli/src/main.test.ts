import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from './main.js';

const DMR_BIN = fileURLToPath(new URL('../bin/dmr.js', import.meta.url));

function commandPaths(command: Command, prefix: string[] = []): string[][] {
  return command.commands.flatMap((sub) => {
    const path = [...prefix, sub.name()];
    return [path, ...commandPaths(sub, path)];
  });
}

describe('dmr command line', () => {
  it('lists every top-level subcommand in `dmr --help`', () => {
    const result = spawnSync(process.execPath, [DMR_BIN, '--help'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    for (const sub of buildProgram().commands) assert.match(result.stdout, new RegExp(`\\n  ${sub.name()}\\b`));
  });

  it('gives every command a description and a working --help', () => {
    const paths = commandPaths(buildProgram());
    assert.ok(paths.length >= 2);
    for (const path of paths) {
      const result = spawnSync(process.execPath, [DMR_BIN, ...path, '--help'], { encoding: 'utf8' });
      assert.equal(result.status, 0, `dmr ${path.join(' ')} --help: ${result.stderr}`);
      assert.match(result.stdout, /Usage: dmr /, path.join(' '));
    }
    for (const command of buildProgram().commands) assert.ok(command.description().length > 0, command.name());
  });

  it('rejects an unknown command with a non-zero exit and a pointer to --help', () => {
    const result = spawnSync(process.execPath, [DMR_BIN, 'no-such-command'], { encoding: 'utf8' });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /unknown command|--help/);
  });
});
