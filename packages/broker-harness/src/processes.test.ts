import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { isRunning, processRef, readProcStat, signalGroup, signalProcess, waitForExit } from './processes.js';

function sleeper(detached = false): { pid: number; exited: Promise<void> } {
  const child = spawn('sleep', ['30'], { stdio: 'ignore', detached });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  assert.ok(child.pid);
  return { pid: child.pid, exited };
}

describe('process identity', () => {
  it('reads its own /proc entry', () => {
    const stat = readProcStat(process.pid);
    assert.ok(stat);
    assert.equal(stat.state === 'R' || stat.state === 'S', true);
    assert.ok(isRunning(processRef(process.pid)));
  });

  it('treats a PID with a different start time as someone else, and never signals it', async () => {
    const child = sleeper();
    const ref = processRef(child.pid);
    assert.ok(ref);
    const impostor = { pid: ref.pid, startTicks: ref.startTicks + 1 };
    assert.equal(isRunning(impostor), false);
    assert.equal(signalProcess(impostor, 'SIGKILL'), false);
    assert.ok(isRunning(ref), 'the real process was hit');
    assert.equal(signalProcess(ref, 'SIGKILL'), true);
    await child.exited;
    assert.equal(await waitForExit([ref], 2000), true);
    assert.equal(isRunning(ref), false);
  });

  it('signals a whole process group only while its leader is the recorded process', async () => {
    const leader = sleeper(true);
    const ref = processRef(leader.pid);
    assert.ok(ref);
    assert.equal(readProcStat(leader.pid)?.pgrp, leader.pid);
    assert.equal(signalGroup({ pid: ref.pid, startTicks: ref.startTicks + 1 }, [], 'SIGKILL'), false);
    assert.equal(signalGroup(ref, [], 'SIGKILL'), true);
    await leader.exited;
    assert.equal(signalGroup(ref, [], 'SIGKILL'), false);
  });

  it('knows nothing about PIDs that do not exist', () => {
    assert.equal(readProcStat(2 ** 22 + 1), undefined);
    assert.equal(processRef(undefined), undefined);
    assert.equal(isRunning(null), false);
  });
});
