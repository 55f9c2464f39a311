/**
 * `dmr up` (detached) → `dmr status` → `dmr down`, end to end through the
 * real CLI: a real CentOps, a real TLS-only RabbitMQ, the real `dmr node run`
 * and the demo clients exchanging messages through the node. One mesh for
 * the file (its start alone takes tens of seconds on this machine).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MeshState, MeshStatusReport } from '@dmr/mesh';
import { waitFor } from '@dmr/testkit';
import { dmrCli, runDmr } from '../test-support.js';

/** PIDs of live processes whose command line names `text` (read only: nothing is signalled). */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (/\) [ZX] /.test(stat)) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) found.push(Number(entry));
    } catch {
      // Gone while listing.
    }
  }
  return found;
}

/** Zombies count as gone; a PID reused within these seconds would make this fail, never pass wrongly. */
function alive(pid: number): boolean {
  try {
    return !/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('dmr up | status | down (the local mesh)', () => {
  let root: string;
  let meshDir: string;
  const { ok, json } = dmrCli(() => ({ cwd: root }));

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'dmr-mesh-'));
    meshDir = join(root, 'mesh');
  });

  after(async () => {
    // Whatever a failed assertion left running is stopped by the command under test itself.
    await runDmr(['down', '--dir', meshDir], { cwd: root });
    await rm(root, { recursive: true, force: true });
  });

  it('starts everything detached, exchanges messages through the node, and stops with no process left', async () => {
    const started = Date.now();
    const up = await ok('-o', 'json', 'up', '--dir', meshDir, '--interval', '250');
    const state = JSON.parse(up.stdout) as MeshState;
    const upMs = Date.now() - started;
    assert.equal(state.status, 'running');
    assert.equal(state.mode, 'detached');
    assert.deepEqual(
      state.steps.map((step) => step.name.split(' ')[0]),
      ['CentOps', 'RabbitMQ', 'registry:', 'DMR', 'demo'],
    );
    assert.match(up.stderr, /✓ CentOps/);

    // Each component is up, and the node runs CentOps' current revision.
    const status = await json<MeshStatusReport>('status', '--dir', meshDir);
    assert.equal(status.running, true);
    const byName = new Map(status.components.map((component) => [component.name, component]));
    for (const name of ['supervisor', 'centops', 'broker', 'node-1', 'bot-a', 'bot-b']) {
      assert.equal(byName.get(name)?.running, true, `${name}: ${JSON.stringify(byName.get(name))}`);
    }
    const node = byName.get('node-1')?.info ?? {};
    assert.equal(node.inSync, true, JSON.stringify(node));
    assert.equal(node.appliedRevision, node.currentRevision);

    // The demo keeps going: round trips are counted while it runs.
    let roundTrips = 0;
    await waitFor(
      () => `three round trips (${roundTrips} so far)`,
      async () => {
        roundTrips = (await json<MeshStatusReport>('status', '--dir', meshDir)).messages?.roundTrips ?? 0;
        return roundTrips >= 3;
      },
      { intervalMs: 500 },
    );
    const text = await ok('status', '--dir', meshDir);
    assert.match(text.stdout, /node-1\s+running/);
    assert.match(text.stdout, /round trips/);

    assert.ok(processesMentioning(meshDir).length > 0);
    const downStarted = Date.now();
    const down = await ok('down', '--dir', meshDir);
    const downMs = Date.now() - downStarted;
    assert.match(down.stdout, /stopped the mesh/);
    assert.deepEqual(processesMentioning(meshDir), [], 'a process of the mesh outlived dmr down');
    const pids = status.components.map((component) => component.pid).filter((pid): pid is number => pid !== null);
    assert.deepEqual(pids.filter(alive), [], 'a recorded process outlived dmr down');

    const afterDown = await json<MeshStatusReport>('status', '--dir', meshDir);
    assert.equal(afterDown.running, false);
    assert.ok(afterDown.components.every((component) => !component.running));
    // Again: nothing to stop is not an error.
    assert.match((await ok('down', '--dir', meshDir)).stdout, /nothing was running/);
    process.stdout.write(`# up ${upMs} ms, down ${downMs} ms, ${roundTrips} round trips seen\n${down.stdout}`);
  });
});
