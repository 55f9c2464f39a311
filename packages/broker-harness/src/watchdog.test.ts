import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { isRunning, processRef, type ProcessRef } from './processes.js';
import { readState, writeState } from './state.js';
import { makeTempDir, sampleState } from './testing.js';
import { runWatchdog } from './watchdog.js';
import { waitFor } from '@dmr/core/testing';

function sleeper(detached: boolean): ProcessRef {
  const child = spawn('sleep', ['30'], { stdio: 'ignore', detached });
  child.unref();
  const ref = processRef(child.pid);
  assert.ok(ref);
  return ref;
}

describe('orphan watchdog', () => {
  it('kills the recorded processes once the owner is gone', async () => {
    const temp = await makeTempDir('watchdog');
    const owner = sleeper(false);
    const shell = sleeper(true);
    const epmd = sleeper(true);
    try {
      const state = sampleState(temp.path);
      const [node] = state.nodes;
      assert.ok(node);
      await writeState({
        ...state,
        owner,
        epmd: { ...state.epmd, process: epmd },
        nodes: [{ ...node, shell, beam: null }],
      });
      let polls = 0;
      const sleep = (ms: number) => {
        polls += 1;
        return new Promise((resolve) => setTimeout(resolve, ms));
      };
      const watching = runWatchdog(temp.path, owner, { pollMs: 20, stateCheckMs: 50, sleep });
      // Counted polls, not a pause: some of them also re-read the state file (every 50 ms).
      await waitFor('the watchdog to poll the living owner 10 times', () => polls >= 10);
      assert.ok(isRunning(shell) && isRunning(epmd), 'killed while the owner lived');
      process.kill(owner.pid, 'SIGKILL');
      assert.match(await watching, /killed the harness processes/);
      await waitFor('!isRunning(shell) && !isRunning(epmd)', () => !isRunning(shell) && !isRunning(epmd), {
        timeoutMs: 2000,
      });
      const after = await readState(temp.path);
      assert.equal(after.status, 'stopped');
      assert.match(after.error ?? '', /watchdog/);
    } finally {
      for (const ref of [owner, shell, epmd]) if (isRunning(ref)) process.kill(ref.pid, 'SIGKILL');
      await temp.remove();
    }
  });

  it('ends quietly when the harness was stopped normally', async () => {
    const temp = await makeTempDir('watchdog');
    const owner = sleeper(false);
    try {
      await writeState({ ...sampleState(temp.path), owner, status: 'stopped' });
      assert.match(await runWatchdog(temp.path, owner, { pollMs: 20, stateCheckMs: 20 }), /stopped normally/);
      assert.ok(isRunning(owner));
    } finally {
      process.kill(owner.pid, 'SIGKILL');
      await temp.remove();
    }
  });
});
