import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@dmr/core/testing';

const STOP_REQUEST = fileURLToPath(new URL('./stop-request.js', import.meta.url));

/** A stand-in router: waits for stopRequested() and prints why (a real process; only the router's work is left out). */
const CHILD = `
import { stopRequested } from ${JSON.stringify(STOP_REQUEST)};
const keepAlive = setInterval(() => undefined, 60_000);
process.stdout.write('ready\\n');
const reason = await stopRequested();
clearInterval(keepAlive);
process.stdout.write(reason + '\\n');
`;

/** A stand-in agent: spawns the child with an IPC channel, prints its pid, then idles until killed. */
const PARENT = `
import { spawn } from 'node:child_process';
const child = spawn(process.execPath, ['--input-type=module', '-e', ${JSON.stringify(CHILD)}], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
process.stdout.write('child ' + child.pid + '\\n');
setInterval(() => undefined, 60_000);
`;

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every line a process printed so far; `wait(n)` until there are n. */
function lines(child: ChildProcess): { wait(count: number): Promise<string[]> } {
  const seen: string[] = [];
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    seen.push(...parts);
  });
  return {
    async wait(count) {
      await waitFor(`${count} lines from the child`, () => seen.length >= count, { timeoutMs: 10_000, intervalMs: 10 });
      return [...seen];
    },
  };
}

describe('stopRequested', () => {
  it('a child spawned with an IPC channel stops when its parent is killed with SIGKILL', async () => {
    const parent = spawn(process.execPath, ['--input-type=module', '-e', PARENT], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const [childLine, ready] = await lines(parent).wait(2);
    assert.equal(ready, 'ready');
    const childPid = Number(childLine?.split(' ')[1]);
    assert.ok(Number.isInteger(childPid) && isRunning(childPid));
    parent.kill('SIGKILL'); // our own child, by PID
    await once(parent, 'exit');
    try {
      await waitFor('the orphaned child to stop by itself', () => !isRunning(childPid), {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
    } finally {
      if (isRunning(childPid)) process.kill(childPid, 'SIGKILL'); // our own grandchild, by PID
    }
  });

  it('resolves with the signal, and with "parent gone" when the channel closes', async () => {
    const bySignal = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const signalLines = lines(bySignal);
    assert.deepEqual(await signalLines.wait(1), ['ready']);
    const signalExit = once(bySignal, 'exit');
    bySignal.kill('SIGTERM');
    assert.deepEqual(await signalExit, [0, null]);
    assert.deepEqual(await signalLines.wait(2), ['ready', 'SIGTERM']);

    const byChannel = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    const channelLines = lines(byChannel);
    assert.deepEqual(await channelLines.wait(1), ['ready']);
    const channelExit = once(byChannel, 'exit');
    byChannel.disconnect();
    assert.deepEqual(await channelExit, [0, null]);
    assert.deepEqual(await channelLines.wait(2), ['ready', 'parent gone']);
  });
});
