/**
 * Where everything of one local mesh lives. One place, so that the process
 * that runs the mesh and a later `dmr status` / `dmr down` agree on every path.
 */
import { join, resolve } from 'node:path';

export const DEFAULT_MESH_DIR = '.dmr/mesh';

/** The files of one DMR node of the mesh. */
export interface MeshNodePaths {
  id: string;
  /** The node's data directory (identity, last good configuration, status.json). */
  dataDir: string;
  /** Its run-config (`dmr node run --config`). */
  configFile: string;
  tokenFile: string;
  log: string;
}

export interface MeshPaths {
  dir: string;
  /** PIDs, ports and status of every component (MeshState). */
  stateFile: string;
  /** The demo clients' counters, rewritten about once a second. */
  statsFile: string;
  logsDir: string;
  /** stdout/stderr of the supervising `dmr up --foreground` when started detached. */
  supervisorLog: string;
  centopsDir: string;
  centopsLog: string;
  /** One broker harness holds every node's RabbitMQ (`mesh-broker-<n>`). */
  brokerDir: string;
  clientsDir: string;
  /** `dmr up --observability`: Prometheus' configuration, rules, targets and data. */
  prometheusDir: string;
  prometheusLog: string;
  /** `dmr up --observability`: Jaeger's configuration. */
  jaegerDir: string;
  jaegerLog: string;
  node(id: string): MeshNodePaths;
}

export function meshPaths(dir: string): MeshPaths {
  const root = resolve(dir);
  const logsDir = join(root, 'logs');
  return {
    dir: root,
    stateFile: join(root, 'mesh.json'),
    statsFile: join(root, 'demo-stats.json'),
    logsDir,
    supervisorLog: join(logsDir, 'mesh.log'),
    centopsDir: join(root, 'centops'),
    centopsLog: join(logsDir, 'centops.log'),
    brokerDir: join(root, 'broker'),
    clientsDir: join(root, 'clients'),
    prometheusDir: join(root, 'prometheus'),
    prometheusLog: join(logsDir, 'prometheus.log'),
    jaegerDir: join(root, 'jaeger'),
    jaegerLog: join(logsDir, 'jaeger.log'),
    node: (id) => ({
      id,
      dataDir: join(root, id),
      configFile: join(root, `${id}.yaml`),
      tokenFile: join(root, `${id}.token`),
      log: join(logsDir, `${id}.log`),
    }),
  };
}
