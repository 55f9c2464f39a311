/**
 * Prometheus for the local mesh (`dmr up --observability`): Debian's
 * `prometheus`, with the shipped configuration and alert rules
 * (`deploy/prometheus/`) copied into `<mesh>/prometheus/` and one target
 * file per job written from what the mesh started (file service discovery,
 * so the shipped configuration never names the mesh's ephemeral ports). It
 * listens on loopback on a port of its own, keeps its data in
 * `<mesh>/prometheus/data`, and is stopped with the mesh.
 */
import { accessSync, constants } from 'node:fs';
import { cp, mkdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DmrError } from '@dmr/core';
import { writeFilesAtomic } from '@dmr/pki';
import type { MeshState } from './state.js';

/** The shipped configuration, alert rules and their tests (the repository's deploy/prometheus). */
export const PROMETHEUS_DEPLOY_DIR = fileURLToPath(new URL('../../../deploy/prometheus/', import.meta.url));

const INSTALL_HINT = 'install it with: bash scripts/install-prometheus.sh (Debian: apt-get install prometheus)';

export interface PrometheusInstall {
  prometheus: string;
  promtool: string;
}

function onPath(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** `prometheus` and `promtool` from the PATH (Debian puts both in /usr/bin). */
export function locatePrometheus(): PrometheusInstall {
  const prometheus = onPath('prometheus');
  const promtool = onPath('promtool');
  if (prometheus === undefined || promtool === undefined) {
    const missing = [prometheus === undefined ? 'prometheus' : [], promtool === undefined ? 'promtool' : []].flat();
    throw new DmrError('DEPENDENCY_MISSING', `${missing.join(' and ')} not found on the PATH`, {
      hint: INSTALL_HINT,
      details: { missing },
    });
  }
  return { prometheus, promtool };
}

/** One file_sd group: where to scrape and the labels every series of those targets gets. */
export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

export interface MeshTargets {
  centops: TargetGroup[];
  nodes: TargetGroup[];
  routers: TargetGroup[];
  rabbitmq: TargetGroup[];
}

const hostPort = (url: string): string => new URL(url).host;

/**
 * The scrape targets of a running mesh: CentOps' metrics listener, each
 * agent, each agent's routers (router N on the agent's port + 1 + N,
 * docs/node-run.md) and each broker's Prometheus plugin.
 */
export function meshTargets(
  state: Pick<MeshState, 'centops' | 'nodes'>,
  brokerMetrics: ReadonlyMap<string, string>,
  routersPerNode = 1,
): MeshTargets {
  const centopsMetrics = state.centops?.metricsUrl;
  const nodes = state.nodes.filter((node) => node.metricsUrl !== null);
  return {
    centops: centopsMetrics == null ? [] : [{ targets: [hostPort(centopsMetrics)], labels: {} }],
    nodes: nodes.map((node) => ({ targets: [hostPort(node.metricsUrl as string)], labels: { node: node.id } })),
    routers: nodes.flatMap((node) => {
      const agent = new URL(node.metricsUrl as string);
      return Array.from({ length: routersPerNode }, (_, shard) => ({
        targets: [`${agent.hostname}:${Number(agent.port) + 1 + shard}`],
        labels: { node: node.id, shard: String(shard) },
      }));
    }),
    rabbitmq: state.nodes.flatMap((node) => {
      const url = brokerMetrics.get(node.id);
      return url === undefined ? [] : [{ targets: [hostPort(url)], labels: { node: node.id } }];
    }),
  };
}

/** Copies the shipped configuration and rules into `dir` and writes the target files beside them. */
export async function writePrometheusFiles(dir: string, targets: MeshTargets): Promise<string> {
  await mkdir(join(dir, 'data'), { recursive: true, mode: 0o700 });
  await cp(join(PROMETHEUS_DEPLOY_DIR, 'prometheus.yml'), join(dir, 'prometheus.yml'));
  await cp(join(PROMETHEUS_DEPLOY_DIR, 'rules'), join(dir, 'rules'), { recursive: true });
  await mkdir(join(dir, 'targets'), { recursive: true });
  await writeFilesAtomic(
    (Object.keys(targets) as Array<keyof MeshTargets>).map((job) => ({
      path: join(dir, 'targets', `${job}.json`),
      data: `${JSON.stringify(targets[job], null, 2)}\n`,
      mode: 0o644,
      overwrite: true,
    })),
  );
  return join(dir, 'prometheus.yml');
}

/** The command line of the mesh's Prometheus. */
export function prometheusArgs(dir: string, port: number): string[] {
  return [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    // A local mesh keeps a day: enough to look back at a demo, small on disk.
    '--storage.tsdb.retention.time=1d',
    `--web.listen-address=127.0.0.1:${port}`,
    `--web.external-url=http://127.0.0.1:${port}/`,
  ];
}
