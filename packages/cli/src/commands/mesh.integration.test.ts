/**
 * `dmr up --nodes 3` (detached) → `dmr status` → `dmr down`, end to end
 * through the real CLI: a real CentOps, three real TLS-only RabbitMQ nodes,
 * three real `dmr node run` agents linked in a line, and the demo clients on
 * the first and last node; last, the last node denylisted in CentOps and cut
 * off by its peer. One mesh for the file: its start alone takes tens
 * of seconds on two cores, and three nodes are the most CI pays for.
 *
 * Where Prometheus is installed (CI: always) the same mesh runs with
 * `--observability`: Debian's Prometheus scraping all of it with the shipped
 * configuration and alert rules. While the demo's traffic flows (plus one
 * message the policy denies, so the refusal series exist), every expression
 * of every Grafana panel and the signal of every alert rule (the expression
 * without its threshold) must return a series through Prometheus' HTTP API;
 * `dmr status` lists it and `dmr down` stops it. This was a file of its own
 * with a mesh of its own (two nodes): one mesh less is about 20 s of CPU
 * (docs/decisions/0038-ci-time.md).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { connectWithCertificate } from '@dmr/broker';
import { managementFor } from '@dmr/broker-harness';
import { skipUnless } from '@dmr/broker/testing';
import { CONTRACT_VERSION, INGRESS_EXCHANGE, RECIPIENT_HEADER, VERSION_HEADER } from '@dmr/contract';
import { locateJaeger, locatePrometheus, type MeshState, type MeshStatusReport } from '@dmr/mesh';
import { brokerServerCheck } from '@dmr/pki';
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

const DEPLOY = fileURLToPath(new URL('../../../../deploy/', import.meta.url));
/** False where Prometheus is installed, else why the observability tests skip (CI forbids that: DMR_REQUIRE_TOOLS). */
const noPrometheus = skipUnless('prometheus', locatePrometheus);

interface Expression {
  where: string;
  expr: string;
}

/** Grafana's variables as a dashboard user would pick them: every node, a one-minute rate window. */
function asQuery(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$node', '.*');
}

async function dashboardExpressions(): Promise<Expression[]> {
  const dir = join(DEPLOY, 'grafana', 'dashboards');
  const found: Expression[] = [];
  for (const file of (await readdir(dir)).filter((name) => name.endsWith('.json')).sort()) {
    const dashboard = JSON.parse(await readFile(join(dir, file), 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ refId: string; expr: string }> }>;
    };
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        found.push({ where: `${file} "${panel.title}" ${target.refId}`, expr: asQuery(target.expr) });
      }
    }
  }
  return found;
}

/** Each alert's signal: its expression without the final `<comparison> <number>` (the rules file keeps that form). */
async function alertSignals(): Promise<Expression[]> {
  const rules = parse(await readFile(join(DEPLOY, 'prometheus', 'rules', 'dmr-alerts.yml'), 'utf8')) as {
    groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
  };
  return rules.groups.flatMap((group) =>
    group.rules.map((rule) => {
      const signal = /^(.*\S)\s*(?:==|!=|>=|<=|>|<)\s*-?\d+(?:\.\d+)?\s*$/s.exec(rule.expr.trim())?.[1];
      assert.ok(signal !== undefined, `${rule.alert}: "${rule.expr}" ends in a comparison with a number`);
      return { where: `alert ${rule.alert}`, expr: signal };
    }),
  );
}

async function seriesOf(prometheusUrl: string, expr: string): Promise<number> {
  const response = await fetch(`${prometheusUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
  const body = (await response.json()) as { status: string; error?: string; data?: { result: unknown[] } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? response.status}`);
  return body.data?.result.length ?? 0;
}

describe('dmr up --nodes 3 | status | down (the local mesh), with --observability where Prometheus is installed', () => {
  let root: string;
  let meshDir: string;
  /** What `dmr up` printed and wrote: every test after the first one reads the mesh it started. */
  let state: MeshState;
  let onDisk: MeshState;
  let upMs: number;
  let counters = { sent: 0, roundTrips: 0, refused: 0, lastRefusal: null as string | null };
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

  it('starts three linked nodes, every one applies its links and routes, the demo crosses two hops', async () => {
    const started = Date.now();
    const observability = noPrometheus === false ? ['--observability'] : [];
    const up = await ok('-o', 'json', 'up', '--dir', meshDir, '--nodes', '3', '--interval', '250', ...observability);
    state = JSON.parse(up.stdout) as MeshState;
    upMs = Date.now() - started;
    assert.equal(state.status, 'running');
    assert.equal(state.mode, 'detached');
    assert.equal(state.topology, 'line');
    assert.deepEqual(
      state.steps.map((step) => step.name.split(' ')[0]),
      // Jaeger first (every process is started with its endpoint), Prometheus once the nodes it scrapes run.
      observability.length > 0
        ? ['Jaeger', 'CentOps', '3', 'registry:', 'DMR', 'Prometheus', 'demo']
        : ['CentOps', '3', 'registry:', 'DMR', 'demo'],
    );
    assert.match(up.stderr, /✓ CentOps/);

    // mesh.json lists every node with where to reach it.
    onDisk = JSON.parse(await readFile(join(meshDir, 'mesh.json'), 'utf8')) as MeshState;
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
  });

  it(
    'Jaeger: started with every process exporting to it when installed; else the step says how to install it and the mesh runs',
    { skip: noPrometheus },
    async () => {
      const step = state.steps.find((entry) => entry.name === 'Jaeger');
      assert.ok(step !== undefined, 'a Jaeger step either way');
      if (locateJaeger() === undefined) {
        assert.match(step.detail ?? '', /not installed.*npm run setup:jaeger/);
        assert.equal(state.jaeger ?? null, null);
        assert.equal(state.status, 'running');
        return;
      }
      // Installed (not in CI: decision 0032): the routers' spans reach it through the OTEL_* variables.
      const jaeger = state.jaeger;
      assert.ok(jaeger != null);
      await waitFor('dmr-router spans in Jaeger', async () => {
        const answer = (await (await fetch(`${jaeger.url}/api/services`)).json()) as { data: string[] | null };
        return answer.data?.includes('dmr-router') === true ? true : undefined;
      });
    },
  );

  it(
    'starts Prometheus on its own port and data directory, with every component as a target',
    { skip: noPrometheus },
    async () => {
      const prometheus = state.prometheus;
      assert.ok(prometheus != null, 'mesh.json names the Prometheus it started');
      assert.equal(prometheus.dir, join(meshDir, 'prometheus'));
      // Prometheus answers before its scrape manager has synced the configured targets: the list starts empty.
      const jobs = await waitFor('Prometheus to list its scrape targets', async () => {
        const answer = (await (await fetch(`${prometheus.url}/api/v1/targets`)).json()) as {
          data: { activeTargets: Array<{ labels: Record<string, string> }> };
        };
        const listed = answer.data.activeTargets.map((target) =>
          `${target.labels.job} ${target.labels.node ?? ''}`.trim(),
        );
        return listed.length > 0 ? listed : undefined;
      });
      assert.deepEqual(jobs.sort(), [
        'centops',
        'dmr-node node-1',
        'dmr-node node-2',
        'dmr-node node-3',
        'dmr-router node-1',
        'dmr-router node-2',
        'dmr-router node-3',
        'rabbitmq node-1',
        'rabbitmq node-2',
        'rabbitmq node-3',
      ]);
    },
  );

  it(
    'every dashboard panel and every alert signal returns a series while traffic flows',
    { skip: noPrometheus },
    async () => {
      const prometheus = state.prometheus;
      assert.ok(prometheus != null);
      // One message the policy denies (no grant covers its type), so refusals and denies have series too.
      const [client] = state.clients;
      const centops = state.centops;
      assert.ok(client !== undefined && centops !== null);
      const home = state.nodes.find((node) => node.id === client.node);
      assert.ok(home !== undefined);
      const connection = await connectWithCertificate({
        port: home.amqpsPort,
        vhost: home.vhost,
        caPem: await readFile(join(centops.dir, 'ca', 'root.crt'), 'utf8'),
        certificatePem: await readFile(client.certificate, 'utf8'),
        privateKeyPem: await readFile(client.key, 'utf8'),
        tls: { checkServerIdentity: brokerServerCheck('dmr.localhost', home.id) },
      });
      try {
        const channel = await connection.createConfirmChannel();
        channel.publish(INGRESS_EXCHANGE, '', Buffer.from('{}'), {
          messageId: randomUUID(),
          userId: `spiffe://dmr.localhost/client/${client.id}`,
          type: 'NotGrantedType',
          timestamp: Math.floor(Date.now() / 1000),
          persistent: true,
          headers: { [RECIPIENT_HEADER]: state.clients[1]?.id, [VERSION_HEADER]: CONTRACT_VERSION },
        });
        await channel.waitForConfirms();
      } finally {
        await connection.close();
      }

      const expressions = [...(await dashboardExpressions()), ...(await alertSignals())];
      assert.ok(expressions.length > 40, `${expressions.length} expressions`);
      let missing: Expression[] = expressions;
      await waitFor(
        () =>
          `a series for each expression; none yet for:\n${missing.map((e) => `  ${e.where}: ${e.expr}`).join('\n')}`,
        async () => {
          const counts = await Promise.all(missing.map((expression) => seriesOf(prometheus.url, expression.expr)));
          missing = missing.filter((_, index) => counts[index] === 0);
          return missing.length === 0;
        },
        { timeoutMs: 120_000, intervalMs: 2000 },
      );
    },
  );

  it('dmr status lists Prometheus', { skip: noPrometheus }, async () => {
    const prometheus = state.prometheus;
    assert.ok(prometheus != null);
    const status = await json<{ components: Array<{ name: string; running: boolean; endpoint: string | null }> }>(
      'status',
      '--dir',
      meshDir,
    );
    const listed = status.components.find((component) => component.name === 'prometheus');
    assert.deepEqual(listed && { running: listed.running, endpoint: listed.endpoint }, {
      running: true,
      endpoint: prometheus.url,
    });
  });

  it('node-3 denylisted in CentOps is cut off by its peer; dmr down stops every process of the mesh', async () => {
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
    // When each was first seen so (ms after the answer): where the time goes on the peer.
    const firstSeen: { connections?: number; shovel?: number; user?: number } = {};
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
        const now = Math.round(performance.now() - answered);
        if (cut.connections === 0) firstSeen.connections ??= now;
        if (!cut.shovel) firstSeen.shovel ??= now;
        if (!cut.user) firstSeen.user ??= now;
        return cut.connections === 0 && !cut.shovel && !cut.user;
      },
      { intervalMs: 20 },
    );
    const cutoffMs = Math.round(performance.now() - answered);
    // And really refused: node-3's own certificate no longer logs in to node-2's broker (the denylist revoked it
    // too, so the handshake fails; without the CRL the missing user would answer 403).
    const node2 = onDisk.nodes.find((node) => node.id === 'node-2');
    const node3 = onDisk.nodes.find((node) => node.id === 'node-3');
    assert.ok(node2 !== undefined && node3 !== undefined);
    const identity = join(node3.dataDir, 'identity');
    const refused = await connectWithCertificate({
      port: node2.amqpsPort,
      vhost: node2.vhost,
      caPem: await readFile(join(identity, 'trust-bundle.pem'), 'utf8'),
      certificatePem: await readFile(join(identity, 'node.crt'), 'utf8'),
      privateKeyPem: await readFile(join(identity, 'node.key'), 'utf8'),
    }).then(
      async (connection) => {
        await connection.close();
        return 'not refused';
      },
      (error: unknown) => String(error),
    );
    assert.match(refused, /certificate revoked|ACCESS_REFUSED/);
    process.stdout.write(
      `# mesh-cutoff ${cutoffMs} ms from CentOps' answer to node-2 closing, unlinking and refusing node-3 (then: ${refused.includes('revoked') ? 'certificate revoked' : 'ACCESS_REFUSED'}); first seen ${JSON.stringify(firstSeen)}\n`,
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

    if (state.prometheus != null) {
      // Nothing answers on its port any more: the process is gone, whoever holds its PID now.
      await assert.rejects(fetch(`${state.prometheus.url}/-/ready`));
    }

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
