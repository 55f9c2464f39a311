/**
 * `dmr up --nodes 3` (detached) → `dmr status` → `dmr down`, end to end
 * through the real CLI: a real CentOps, three real TLS-only RabbitMQ nodes,
 * three real `dmr node run` agents linked in a line, and the demo clients on
 * the first and last node; last, the last node denylisted in CentOps and cut
 * off by its peer. One mesh for the file: its start alone takes tens
 * of seconds on two cores, and three nodes are the most CI pays for.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { managementFor } from '@dmr/broker-harness';
import type { MeshState, MeshStatusReport } from '@dmr/mesh';
import { waitFor } from '@dmr/testkit';
import { dmrCli, runDmr } from '../test-support.js';
import { CentOpsClient } from './ctl/client.js';
import { loadCtlConfig } from './ctl/config.js';

/** Parsed /proc/<pid>/stat: state and parent, or undefined when gone. */
function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /s, '')
      .split(' ');
    return { state: fields[0] ?? '?', ppid: Number(fields[1]) };
  } catch {
    return undefined;
  }
}

/** Zombies count as gone; a PID reused within these seconds would make this fail, never pass wrongly. */
function alive(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

function livePids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => pid !== process.pid && alive(pid));
}

/** The processes under these ones (an agent's router processes, a broker's Erlang helpers). Read only. */
function descendants(roots: readonly number[]): number[] {
  const found = new Set(roots);
  const pids = livePids();
  for (let grew = true; grew;) {
    grew = false;
    for (const pid of pids) {
      const parent = procStat(pid)?.ppid;
      if (!found.has(pid) && parent !== undefined && found.has(parent)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  return [...found];
}

/** PIDs of live processes whose command line names `text` (read only: nothing is signalled). */
function processesMentioning(text: string): number[] {
  return livePids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
    } catch {
      return false;
    }
  });
}

describe('dmr up --nodes 3 | status | down (the local mesh)', () => {
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

  it('starts three linked nodes, every one applies its links and routes, the demo crosses two hops, down leaves no process', async () => {
    const started = Date.now();
    const up = await ok('-o', 'json', 'up', '--dir', meshDir, '--nodes', '3', '--interval', '250');
    const state = JSON.parse(up.stdout) as MeshState;
    const upMs = Date.now() - started;
    assert.equal(state.status, 'running');
    assert.equal(state.mode, 'detached');
    assert.equal(state.topology, 'line');
    assert.deepEqual(
      state.steps.map((step) => step.name.split(' ')[0]),
      ['CentOps', '3', 'registry:', 'DMR', 'demo'],
    );
    assert.match(up.stderr, /✓ CentOps/);

    // mesh.json lists every node with where to reach it.
    const onDisk = JSON.parse(await readFile(join(meshDir, 'mesh.json'), 'utf8')) as MeshState;
    assert.deepEqual(
      onDisk.nodes.map((node) => node.id),
      ['node-1', 'node-2', 'node-3'],
    );
    for (const node of onDisk.nodes) {
      assert.match(node.amqpsUrl, /^amqps:\/\/localhost:\d+$/, node.id);
      assert.equal(node.vhost, `dmr-${node.id}`);
      assert.match(node.managementUrl, /^http:\/\/127\.0\.0\.1:\d+$/, node.id);
    }
    assert.equal(new Set(onDisk.nodes.map((node) => node.amqpsUrl)).size, 3, 'one broker per node');
    assert.deepEqual(
      onDisk.links.map((link) => link.id),
      ['node-1--node-2', 'node-2--node-3'],
    );
    assert.deepEqual(
      onDisk.clients.map((client) => [client.id, client.node]),
      [
        ['bot-a', 'node-1'],
        ['bot-b', 'node-3'],
      ],
    );

    // Every node runs CentOps' current revision: its links, and the routes CentOps computed over them.
    const status = await json<MeshStatusReport>('status', '--dir', meshDir);
    assert.equal(status.running, true);
    for (const component of status.components) assert.equal(component.running, true, component.name);
    const nodes = new Map(status.nodes.map((node) => [node.id, node]));
    for (const node of status.nodes) {
      assert.equal(node.running, true, `${node.id}: ${JSON.stringify(node)}`);
      assert.equal(node.broker.running, true, node.id);
      assert.equal(node.inSync, true, `${node.id}: ${JSON.stringify(node)}`);
      assert.equal(node.applied?.revision, node.appliedRevision, node.id);
    }
    assert.deepEqual(nodes.get('node-1')?.applied?.links, ['node-2']);
    assert.deepEqual(nodes.get('node-2')?.applied?.links, ['node-1', 'node-3']);
    assert.deepEqual(nodes.get('node-3')?.applied?.links, ['node-2']);
    assert.deepEqual(nodes.get('node-1')?.applied?.routes, { 'node-2': 'node-2', 'node-3': 'node-2' });
    assert.deepEqual(nodes.get('node-3')?.applied?.routes, { 'node-1': 'node-2', 'node-2': 'node-2' });
    // Each direction of each link is up, as the node's agent reports it: the reconciler keeps a shovel per link.
    assert.deepEqual(
      status.links.map((link) => `${link.from}>${link.to}`),
      ['node-1>node-2', 'node-2>node-1', 'node-2>node-3', 'node-3>node-2'],
    );
    let links = status.links;
    await waitFor(
      () => `every link up and its waiting messages counted (${JSON.stringify(links)})`,
      async () => {
        links = (await json<MeshStatusReport>('status', '--dir', meshDir)).links;
        return links.every((link) => link.up && link.source === 'agent' && typeof link.messages === 'number');
      },
      { intervalMs: 500 },
    );
    const path = status.paths[0];
    assert.deepEqual(path?.route, ['node-1', 'node-2', 'node-3']);
    assert.equal(path?.hops, 2);

    // The demo keeps asking across the mesh: every question and every answer crosses both links.
    let counters = { sent: 0, roundTrips: 0, refused: 0, lastRefusal: null as string | null };
    await waitFor(
      () => `three round trips across two hops (${JSON.stringify(counters)})`,
      async () => {
        counters = (await json<MeshStatusReport>('status', '--dir', meshDir)).paths[0] ?? counters;
        return counters.roundTrips >= 3;
      },
      { intervalMs: 500 },
    );
    assert.equal(counters.refused, 0, counters.lastRefusal ?? '');
    const text = await ok('status', '--dir', meshDir);
    assert.match(text.stdout, /node-2\s+running pid \d+\s+broker running/);
    assert.match(text.stdout, /node-1 → node-2\s+up\s+running\s+\d+ waiting/);
    assert.match(text.stdout, /bot-a → bot-b {2}node-1 → node-2 → node-3 \(2 hops\)/);

    // Last: node-3 denylisted in CentOps is cut off by its peer node-2, timed from CentOps' answer.
    assert.ok(onDisk.centops !== null && onDisk.broker !== null);
    const peer = await managementFor(
      onDisk.broker.dir,
      onDisk.nodes.findIndex((node) => node.id === 'node-2'),
    );
    const peerVhost = 'dmr-node-2';
    const isNode3 = (user: string): boolean => user.endsWith('/node/node-3');
    await waitFor('node-3’s shovel connected to node-2', async () =>
      (await peer.listConnections()).some((connection) => isNode3(connection.user)),
    );
    const centops = await CentOpsClient.forApi(await loadCtlConfig(onDisk.centops.adminConfig));
    await centops.post('/v1/denylist', { id: 'node-3', kind: 'node', reason: 'cut-off test' });
    const answered = performance.now();
    let cut = { connections: -1, shovel: true, user: true };
    await waitFor(
      () => `node-2 to cut node-3 off (${JSON.stringify(cut)})`,
      async () => {
        const [connections, shovel, users] = await Promise.all([
          peer.listConnections(),
          peer.getShovel(peerVhost, 'dmr.link.node-3'),
          peer.request('GET', '/users'),
        ]);
        cut = {
          connections: connections.filter((connection) => isNode3(connection.user)).length,
          shovel: shovel !== undefined,
          // Without its user, node-3's certificate logs in nowhere on node-2: its messages are refused (403).
          user: Array.isArray(users) && users.some((user: { name?: unknown }) => isNode3(String(user.name))),
        };
        return cut.connections === 0 && !cut.shovel && !cut.user;
      },
      { intervalMs: 20 },
    );
    const cutoffMs = Math.round(performance.now() - answered);
    process.stdout.write(
      `# mesh-cutoff ${cutoffMs} ms from CentOps' answer to node-2 closing, unlinking and refusing node-3\n`,
    );

    // Every process the mesh started, and theirs (router processes, Erlang helpers), by PID.
    const recorded = [
      onDisk.supervisor.pid,
      ...(onDisk.centops?.process ? [onDisk.centops.process.pid] : []),
      ...onDisk.nodes.flatMap((node) => [node.process?.pid, node.broker.pid]),
    ].filter((pid): pid is number => pid !== undefined && pid !== null);
    assert.equal(recorded.length, 2 + 2 * 3);
    const started_ = descendants(recorded);
    assert.ok(started_.length > recorded.length, 'the agents run router processes');
    const downStarted = Date.now();
    const down = await ok('down', '--dir', meshDir);
    const downMs = Date.now() - downStarted;
    assert.match(down.stdout, /stopped the mesh/);
    assert.deepEqual(started_.filter(alive), [], 'a process of the mesh outlived dmr down');
    assert.deepEqual(processesMentioning(meshDir), [], 'a process naming the mesh directory outlived dmr down');

    const afterDown = await json<MeshStatusReport>('status', '--dir', meshDir);
    assert.equal(afterDown.running, false);
    assert.ok(afterDown.components.every((component) => !component.running));
    assert.ok(afterDown.nodes.every((node) => !node.running && !node.broker.running));
    // Again: nothing to stop is not an error.
    assert.match((await ok('down', '--dir', meshDir)).stdout, /nothing was running/);
    process.stdout.write(
      `# up ${upMs} ms (3 nodes), down ${downMs} ms, ${started_.length} processes, ${JSON.stringify(counters)}\n${down.stdout}`,
    );
  });
});
