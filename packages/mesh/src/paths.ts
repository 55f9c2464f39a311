/**
 * Where everything of one local mesh lives. One place, so that the process
 * that runs the mesh and a later `dmr status` / `dmr down` agree on every path.
 */
import { join, resolve } from 'node:path';

export const DEFAULT_MESH_DIR = '.dmr/mesh';
export const NODE_ID = 'node-1';

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
  brokerDir: string;
  nodeDir: string;
  nodeConfigFile: string;
  nodeTokenFile: string;
  nodeLog: string;
  clientsDir: string;
}

export function meshPaths(dir: string): MeshPaths {
  const root = resolve(dir);
  const logsDir = join(root, 'logs');
  const nodeDir = join(root, NODE_ID);
  return {
    dir: root,
    stateFile: join(root, 'mesh.json'),
    statsFile: join(root, 'demo-stats.json'),
    logsDir,
    supervisorLog: join(logsDir, 'mesh.log'),
    centopsDir: join(root, 'centops'),
    centopsLog: join(logsDir, 'centops.log'),
    brokerDir: join(root, 'broker'),
    nodeDir,
    nodeConfigFile: join(root, `${NODE_ID}.yaml`),
    nodeTokenFile: join(root, `${NODE_ID}.token`),
    nodeLog: join(logsDir, `${NODE_ID}.log`),
    clientsDir: join(root, 'clients'),
  };
}
