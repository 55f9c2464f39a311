/**
 * `dmr up --observability`: a real mesh of two linked nodes (CentOps, two
 * TLS-only RabbitMQ nodes, two agents with their routers, the demo asking
 * across the link) and Debian's Prometheus scraping all of it with the
 * shipped configuration and alert rules. While the demo's traffic flows
 * (plus one message the policy denies, so the refusal series exist), every
 * expression of every Grafana panel and the signal of every alert rule (the
 * expression without its threshold) must return a series through
 * Prometheus' HTTP API. Last, `dmr status` lists it and `dmr down` stops it.
 * One mesh for the file.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile, readdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { connectWithCertificate } from '@dmr/broker';
import { skipUnless } from '@dmr/broker/testing';
import { CONTRACT_VERSION, INGRESS_EXCHANGE, RECIPIENT_HEADER, VERSION_HEADER } from '@dmr/contract';
import { locateJaeger, locatePrometheus, type MeshState } from '@dmr/mesh';
import { brokerServerCheck } from '@dmr/pki';
import { waitFor } from '@dmr/testkit';
import { dmrCli, runDmr } from '../test-support.js';

const DEPLOY = fileURLToPath(new URL('../../../../deploy/', import.meta.url));
const skip = skipUnless('prometheus', locatePrometheus);

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

describe('dmr up --observability (Prometheus scraping a running mesh)', { skip }, () => {
  let root: string;
  let meshDir: string;
  let state: MeshState;
  const { ok, json } = dmrCli(() => ({ cwd: root }));

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'dmr-observability-'));
    meshDir = join(root, 'mesh');
    const up = await ok('-o', 'json', 'up', '--dir', meshDir, '--nodes', '2', '--interval', '250', '--observability');
    state = JSON.parse(up.stdout) as MeshState;
  });

  after(async () => {
    await runDmr(['down', '--dir', meshDir], { cwd: root });
    await rm(root, { recursive: true, force: true });
  });

  it('Jaeger: started with every process exporting to it when installed; else the step says how to install it and the mesh runs', async () => {
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
  });

  it('starts Prometheus on its own port and data directory, with every component as a target', async () => {
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
      'dmr-router node-1',
      'dmr-router node-2',
      'rabbitmq node-1',
      'rabbitmq node-2',
    ]);
  });

  it('every dashboard panel and every alert signal returns a series while traffic flows', async () => {
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
      () => `a series for each expression; none yet for:\n${missing.map((e) => `  ${e.where}: ${e.expr}`).join('\n')}`,
      async () => {
        const counts = await Promise.all(missing.map((expression) => seriesOf(prometheus.url, expression.expr)));
        missing = missing.filter((_, index) => counts[index] === 0);
        return missing.length === 0;
      },
      { timeoutMs: 120_000, intervalMs: 2000 },
    );
  });

  it('dmr status lists Prometheus, and dmr down stops it with the mesh', async () => {
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
    const down = await json<{ stopped: Array<{ name: string; result: string }> }>('down', '--dir', meshDir);
    assert.ok(down.stopped.length > 0);
    // Nothing answers on its port any more: the process is gone, whoever holds its PID now.
    await assert.rejects(fetch(`${prometheus.url}/-/ready`));
  });
});
