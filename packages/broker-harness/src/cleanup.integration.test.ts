/**
 * The cleanup guarantees of a harness tied to its process, each checked on a
 * real node started by a child process: nothing the harness started may
 * outlive the child, however the child ends.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isRunning } from './processes.js';
import { readState, type HarnessState } from './state.js';
import { harnessProcesses } from './teardown.js';
import { leftoverProcesses, makeTempDir, makeTestCa } from './testing.js';
import { waitFor } from '@dmr/core/testing';

const FIXTURE = fileURLToPath(new URL('./fixtures/hold-brokers.js', import.meta.url));

interface Held {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  state: HarnessState;
  dir: string;
}

describe('cleanup when the process that started the brokers ends', () => {
  let temp: Awaited<ReturnType<typeof makeTempDir>>;
  let pkiDir: string;
  let counter = 0;
  const children: ChildProcess[] = [];

  before(async () => {
    temp = await makeTempDir('cleanup-test');
    pkiDir = `${temp.path}/pki`;
    await makeTestCa(pkiDir);
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await temp?.remove();
  });

  async function hold(mode: 'exit' | 'wait'): Promise<Held> {
    const dir = `${temp.path}/brokers-${++counter}`;
    const child = spawn(process.execPath, [FIXTURE, dir, pkiDir, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    let stdout = '';
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const ready = await new Promise<boolean>((resolve) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        const line = /READY (.*)\n/.exec(stdout);
        if (line) {
          process.stdout.write(`# broker-timing cleanup-${mode} boot_ms=${JSON.parse(line[1] as string).bootMs}\n`);
          resolve(true);
        }
      });
      void exit.then(() => resolve(false));
    });
    assert.ok(ready, `the fixture did not start brokers: ${stderr}`);
    return { child, exit, state: await readState(dir), dir };
  }

  function assertAllGone(held: Held, what: string): void {
    const alive = harnessProcesses(held.state).filter((entry) => entry.running);
    assert.deepEqual(alive, [], `${what}: still running`);
    assert.deepEqual(leftoverProcesses(held.dir), [], `${what}: processes still refer to ${held.dir}`);
  }

  it('the orphan watchdog kills the nodes when the owner is SIGKILLed (no hook can run)', async () => {
    const held = await hold('wait');
    assert.ok(isRunning(held.state.watchdog), 'no watchdog is running');
    held.child.kill('SIGKILL');
    await held.exit;
    const killedAt = Date.now();
    await waitFor(
      'the processes to end with their owner',
      () => harnessProcesses(held.state).every((entry) => !entry.running),
      { timeoutMs: 15_000 },
    );
    process.stdout.write(`# watchdog cleaned up ${Date.now() - killedAt} ms after the owner died\n`);
    assertAllGone(held, 'after SIGKILL of the owner');
    const state = await readState(held.dir);
    assert.equal(state.status, 'stopped');
    assert.match(state.error ?? '', /watchdog/);
  });

  it('the exit hook kills the nodes when the owner exits without stopping them', async () => {
    const held = await hold('exit');
    const { code } = await held.exit;
    assert.equal(code, 0);
    await waitFor(
      'harnessProcesses(held.state).every((entry) => !entry.running)',
      () => harnessProcesses(held.state).every((entry) => !entry.running),
      { timeoutMs: 5000 },
    );
    assertAllGone(held, 'after process.exit()');
  });

  it('SIGTERM to the owner stops the nodes gracefully, then the owner ends by that signal', async () => {
    const held = await hold('wait');
    const started = Date.now();
    held.child.kill('SIGTERM');
    const { signal } = await held.exit;
    process.stdout.write(`# broker-timing cleanup-sigterm stop_ms=${Date.now() - started}\n`);
    assert.equal(signal, 'SIGTERM');
    assertAllGone(held, 'after SIGTERM');
    const state = await readState(held.dir);
    assert.equal(state.status, 'stopped');
    assert.equal(state.error, null, 'the stop was not graceful');
  });
});
