/**
 * The shipped Prometheus and Grafana files (deploy/), checked with the
 * real `promtool` (Debian's prometheus package): the configuration the
 * mesh writes with its target files, the alert rules, and the rules' unit
 * tests (deploy/prometheus/tests). The dashboards are checked for what
 * Grafana needs to provision them; that their expressions return series
 * against a running mesh is the cli's observability test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { makeTempDir, skipUnless } from '@dmr/broker/testing';
import { PROMETHEUS_DEPLOY_DIR, locatePrometheus, meshTargets, writePrometheusFiles } from './prometheus.js';
import type { MeshNodeState } from './state.js';

const run = promisify(execFile);
const GRAFANA_DIR = fileURLToPath(new URL('../../../deploy/grafana/', import.meta.url));
const skip = skipUnless('promtool', locatePrometheus);

function node(id: string, metricsPort: number | null): MeshNodeState {
  return {
    id,
    amqpsUrl: 'amqps://localhost:1',
    amqpsPort: 1,
    vhost: `dmr-${id}`,
    managementUrl: 'http://127.0.0.1:2',
    broker: { name: `mesh-broker-${id}`, pid: null },
    metricsUrl: metricsPort === null ? null : `http://127.0.0.1:${metricsPort}/metrics`,
    config: `${id}.yaml`,
    dataDir: id,
    process: null,
    log: `${id}.log`,
  };
}

describe('the mesh scrape targets', () => {
  it('name CentOps, every running agent, its routers on the next ports and every broker, each labelled with its node', () => {
    const targets = meshTargets(
      {
        centops: {
          dir: 'c',
          apiUrl: 'https://127.0.0.1:8443',
          enrolUrl: 'https://127.0.0.1:8444',
          adminConfig: 'a.yaml',
          metricsUrl: 'http://127.0.0.1:50001/metrics',
          process: null,
          log: 'c.log',
        },
        nodes: [node('node-1', 49100), node('node-2', null)],
      },
      new Map([
        ['node-1', 'http://127.0.0.1:30001/metrics'],
        ['node-2', 'http://127.0.0.1:30002/metrics'],
      ]),
      2,
    );
    assert.deepEqual(targets, {
      centops: [{ targets: ['127.0.0.1:50001'], labels: {} }],
      nodes: [{ targets: ['127.0.0.1:49100'], labels: { node: 'node-1' } }],
      routers: [
        { targets: ['127.0.0.1:49101'], labels: { node: 'node-1', shard: '0' } },
        { targets: ['127.0.0.1:49102'], labels: { node: 'node-1', shard: '1' } },
      ],
      rabbitmq: [
        { targets: ['127.0.0.1:30001'], labels: { node: 'node-1' } },
        { targets: ['127.0.0.1:30002'], labels: { node: 'node-2' } },
      ],
    });
  });
});

describe('deploy/prometheus with promtool', { skip }, () => {
  let dir: { path: string; remove: () => Promise<void> };
  let promtool: string;
  before(async () => {
    promtool = locatePrometheus().promtool;
    dir = await makeTempDir('prometheus-deploy');
  });
  after(() => dir?.remove());

  it('the configuration the mesh writes, with its target files, passes promtool check config', async () => {
    const config = await writePrometheusFiles(dir.path, {
      centops: [{ targets: ['127.0.0.1:50001'], labels: {} }],
      nodes: [{ targets: ['127.0.0.1:49100'], labels: { node: 'node-1' } }],
      routers: [{ targets: ['127.0.0.1:49101'], labels: { node: 'node-1', shard: '0' } }],
      rabbitmq: [],
    });
    const { stdout, stderr } = await run(promtool, ['check', 'config', config]);
    assert.match(stdout, /SUCCESS: 1 rule files found/);
    assert.doesNotMatch(`${stdout}${stderr}`, /WARNING/);
  });

  it('the alert rules pass promtool check rules', async () => {
    const { stdout } = await run(promtool, ['check', 'rules', join(PROMETHEUS_DEPLOY_DIR, 'rules', 'dmr-alerts.yml')]);
    assert.match(stdout, /SUCCESS: \d+ rules found/);
  });

  it('every alert has a unit test, and every unit test passes (promtool test rules)', async () => {
    const tests = join(PROMETHEUS_DEPLOY_DIR, 'tests', 'dmr-alerts.test.yml');
    const { stdout } = await run(promtool, ['test', 'rules', tests], { cwd: join(PROMETHEUS_DEPLOY_DIR, 'tests') });
    assert.match(stdout, /SUCCESS/);
    const rules = await readFile(join(PROMETHEUS_DEPLOY_DIR, 'rules', 'dmr-alerts.yml'), 'utf8');
    const alerts = [...rules.matchAll(/^\s+- alert: (\w+)$/gm)].map((match) => match[1]);
    const tested = await readFile(tests, 'utf8');
    for (const alert of alerts)
      assert.match(tested, new RegExp(`alertname: ${alert}$`, 'm'), `${alert} has a unit test`);
  });
});

interface Dashboard {
  uid: string;
  title: string;
  panels: Array<{ id: number; title: string; datasource: { uid: string }; targets: Array<{ expr: string }> }>;
}

describe('deploy/grafana', () => {
  it('holds the five dashboards, each with a unique uid and panel ids, every panel on the provisioned datasource', async () => {
    const files = (await readdir(join(GRAFANA_DIR, 'dashboards'))).sort();
    assert.deepEqual(files, ['certificates.json', 'link.json', 'mesh-overview.json', 'node.json', 'policy.json']);
    const datasources = await readFile(join(GRAFANA_DIR, 'provisioning', 'datasources', 'dmr.yml'), 'utf8');
    const uid = /^\s+uid: (\S+)$/m.exec(datasources)?.[1];
    assert.equal(uid, 'dmr-prometheus');
    const uids = new Set<string>();
    for (const file of files) {
      const dashboard = JSON.parse(await readFile(join(GRAFANA_DIR, 'dashboards', file), 'utf8')) as Dashboard;
      assert.ok(!uids.has(dashboard.uid), `${file}: uid ${dashboard.uid} is unique`);
      uids.add(dashboard.uid);
      assert.ok(dashboard.panels.length > 0, file);
      assert.equal(new Set(dashboard.panels.map((panel) => panel.id)).size, dashboard.panels.length, file);
      for (const panel of dashboard.panels) {
        assert.equal(panel.datasource.uid, uid, `${file}: ${panel.title}`);
        assert.ok(panel.targets.length > 0 && panel.targets.every((target) => target.expr.trim() !== ''), panel.title);
      }
    }
    const provider = await readFile(join(GRAFANA_DIR, 'provisioning', 'dashboards', 'dmr.yml'), 'utf8');
    assert.match(provider, /type: file/);
  });
});
