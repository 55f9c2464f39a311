import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const STOP_REQUEST = fileURLToPath(new URL('./stop-request.js', import.meta.url));

/** A stand-in router: waits for stopRequested() and prints why (a real process; only the router's work is left out). */
const CHILD = `
import { stopRequested } from ${JSON.stringify(STOP_REQUEST)};
const keepAlive = setInterval(() => undefined, 60_000);
// Listening before saying so: a signal sent the moment 'ready' arrives must find the handler.
const stopping = stopRequested();
process.stdout.write('ready\\n');
const reason = await stopping;
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

/**
 * Every line a process printed; `wait(n)` resolves when there are n, `ended` when every writer of its stdout
 * (the process and any child that inherited the pipe) is gone. Event-driven, with no timeout of its own: a
 * slow machine only makes it later, and a hang is the test runner's timeout.
 */
function lines(child: ChildProcess): { wait(count: number): Promise<string[]>; ended: Promise<string[]> } {
  const seen: string[] = [];
  const waiting: Array<{ count: number; resolve: (lines: string[]) => void }> = [];
  let buffered = '';
  const stdout = child.stdout;
  assert.ok(stdout, 'the child has a stdout pipe');
  const ended = once(stdout, 'end').then(() => [...seen]);
  stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    seen.push(...parts);
    for (const entry of waiting.filter((candidate) => seen.length >= candidate.count)) {
      waiting.splice(waiting.indexOf(entry), 1);
      entry.resolve([...seen]);
    }
  });
  return {
    wait(count) {
      if (seen.length >= count) return Promise.resolve([...seen]);
      return new Promise((resolve) => waiting.push({ count, resolve }));
    },
    ended,
  };
}

describe('stopRequested', () => {
  it('a child spawned with an IPC channel stops when its parent is killed with SIGKILL', async () => {
    const parent = spawn(process.execPath, ['--input-type=module', '-e', PARENT], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const output = lines(parent);
    const [childLine, ready] = await output.wait(2);
    assert.equal(ready, 'ready');
    const childPid = Number(childLine?.split(' ')[1]);
    assert.ok(Number.isInteger(childPid) && isRunning(childPid));
    parent.kill('SIGKILL'); // our own child, by PID
    await once(parent, 'exit');
    try {
      // The orphan inherited the parent's stdout: the pipe ends only when it has exited too, after saying why.
      assert.deepEqual(await output.ended, [childLine, 'ready', 'parent gone']);
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
    assert.deepEqual(await signalLines.ended, ['ready', 'SIGTERM']);

    const byChannel = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    const channelLines = lines(byChannel);
    assert.deepEqual(await channelLines.wait(1), ['ready']);
    const channelExit = once(byChannel, 'exit');
    byChannel.disconnect();
    assert.deepEqual(await channelExit, [0, null]);
    assert.deepEqual(await channelLines.ended, ['ready', 'parent gone']);
  });
});
