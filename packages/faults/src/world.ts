/**
 * The processes a scenario breaks: the local mesh of `dmr up` (@dmr/mesh),
 * started in a temporary directory, so every component is the real one —
 * a CentOps server process, TLS-only RabbitMQ nodes from the broker harness,
 * a `dmr node run` agent per node with its router child processes, all
 * enrolled through CentOps. The demo's ping-pong is stopped once the mesh
 * runs: the scenario's own traffic uses the two enrolled clients, bot-a
 * (first node) and bot-b (last node).
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { processRef, readProcStat, type BrokerHarness, type ProcessRef } from '@dmr/broker-harness';
import { DmrError } from '@dmr/core';
import {
  meshShape,
  spawnLogged,
  startMesh,
  stopProcess,
  type DmrCommand,
  type LocalMesh,
  type MeshProgress,
} from '@dmr/mesh';

const require = createRequire(import.meta.url);
const execFileAsync = promisify(execFile);
/** The `dmr` command the mesh runs its components with: this checkout's CLI, on this Node. */
export const DMR: DmrCommand = {
  command: process.execPath,
  args: [join(dirname(require.resolve('@dmr/cli')), '..', 'bin', 'dmr.js')],
};

export interface WorldOptions {
  /** Names the temporary directory. */
  label: string;
  /** Nodes in a line node-1 – node-2 – …; bot-a on the first, bot-b on the last. */
  nodes: number;
  /** Router processes per node agent (default 1). */
  routers?: number;
  progress: MeshProgress;
  /** Keep the directory (logs) after stop. */
  keep?: boolean;
}

export interface ClientFiles {
  id: string;
  node: string;
  certFile: string;
  keyFile: string;
  caFile: string;
}

export class World {
  readonly dir: string;
  readonly mesh: LocalMesh;
  readonly caFile: string;
  readonly #keep: boolean;

  private constructor(dir: string, mesh: LocalMesh, caFile: string, keep: boolean) {
    this.dir = dir;
    this.mesh = mesh;
    this.caFile = caFile;
    this.#keep = keep;
  }

  static async start(options: WorldOptions): Promise<World> {
    const dir = await mkdtemp(join(tmpdir(), `dmr-faults-${options.label}-`));
    try {
      const mesh = await startMesh({
        dir,
        dmr: DMR,
        mode: 'foreground',
        progress: options.progress,
        shape: meshShape(options.nodes, 'line'),
        intervalMs: 60_000,
        ...(options.routers === undefined ? {} : { routers: options.routers }),
      });
      // The demo's clients would compete with the scenario's for bot-a's and bot-b's queues.
      await mesh.demo?.stop();
      const caFile = join(dir, 'trust-bundle.pem');
      await writeFile(caFile, (mesh.harness as BrokerHarness).trustBundlePem, { mode: 0o600 });
      return new World(dir, mesh, caFile, options.keep ?? false);
    } catch (error) {
      if (!(options.keep ?? false)) await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  get harness(): BrokerHarness {
    const harness = this.mesh.harness;
    if (harness === undefined) throw new DmrError('BROKER_NOT_RUNNING', 'the mesh has no brokers');
    return harness;
  }

  get nodeIds(): string[] {
    return this.mesh.state.nodes.map((node) => node.id);
  }

  /** The index of a node's broker in the harness (the mesh starts them in node order). */
  brokerIndex(nodeId: string): number {
    const index = this.nodeIds.indexOf(nodeId);
    if (index < 0) throw new DmrError('INVALID_ARGUMENT', `the mesh has no node ${nodeId}`);
    return index;
  }

  amqpsUrl(nodeId: string): string {
    return this.harness.node(this.brokerIndex(nodeId)).amqpsUrl;
  }

  client(id: string): ClientFiles {
    const found = this.mesh.state.clients.find((client) => client.id === id);
    if (found === undefined) throw new DmrError('INVALID_ARGUMENT', `the mesh has no client ${id}`);
    return { id, node: found.node, certFile: found.certificate, keyFile: found.key, caFile: this.caFile };
  }

  agent(nodeId: string): ProcessRef {
    const child = this.mesh.nodes.get(nodeId);
    if (child === undefined) throw new DmrError('INVALID_ARGUMENT', `the mesh runs no agent for ${nodeId}`);
    return child.ref;
  }

  /** The agent's router processes (its children), by PID and start time. */
  routers(nodeId: string): ProcessRef[] {
    const agent = this.agent(nodeId).pid;
    const found: ProcessRef[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = readProcStat(Number(entry));
      if (stat?.ppid !== agent || stat.state === 'Z') continue;
      const ref = processRef(Number(entry));
      if (ref !== undefined) found.push(ref);
    }
    return found;
  }

  /**
   * Waits until the agent runs `count` routers again (it restarts one that died, with back-off), none of
   * them `gone` (a killed process is listed until the kernel has finished it).
   */
  async awaitRouters(nodeId: string, count: number, gone?: ProcessRef, timeoutMs = 60_000): Promise<ProcessRef[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const routers = this.routers(nodeId).filter(
        (ref) => gone === undefined || ref.pid !== gone.pid || ref.startTicks !== gone.startTicks,
      );
      if (routers.length >= count) return routers;
      if (Date.now() > deadline) {
        throw new DmrError(
          'FAULT_SCENARIO_FAILED',
          `${nodeId} runs ${routers.length} of ${count} routers after ${timeoutMs} ms`,
        );
      }
      await sleep(100);
    }
  }

  /** Stops CentOps (SIGKILL: a crash, nothing flushed) and resolves once it is gone. */
  async killCentOps(): Promise<void> {
    const centops = this.mesh.centops;
    if (centops === undefined) return;
    centops.child.kill('SIGKILL'); // our own child, by PID
    await centops.exited;
  }

  /** Starts CentOps again on the same directory and waits until it answers. */
  async startCentOps(timeoutMs = 60_000): Promise<void> {
    const { paths } = this.mesh;
    const child = spawnLogged(DMR.command, [...DMR.args, 'centops', 'serve', '--dir', paths.centopsDir], {
      logFile: paths.centopsLog,
    });
    this.mesh.centops = child;
    const url = this.mesh.state.centops?.apiUrl;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.child.exitCode !== null) {
        throw new DmrError('MESH_START_FAILED', `CentOps exited (${child.child.exitCode}) on restart`, {
          hint: `see ${paths.centopsLog}`,
        });
      }
      // Any TLS answer means it listens; the admin API itself is exercised by the scenario.
      if (url !== undefined && (await listening(url))) return;
      if (Date.now() > deadline)
        throw new DmrError('FAULT_SCENARIO_FAILED', `CentOps not listening ${timeoutMs} ms after restart`);
      await sleep(200);
    }
  }

  /**
   * Stops a node's agent (SIGTERM: it stops its routers) and starts it again on the same run-config and
   * data directory with `env` added; resolves once it runs `routers` routers, throws if it exits first.
   */
  async restartAgent(nodeId: string, env: NodeJS.ProcessEnv, routers = 1, timeoutMs = 120_000): Promise<void> {
    await stopProcess(this.agent(nodeId), 20_000);
    const files = this.mesh.paths.node(nodeId);
    const child = spawnLogged(DMR.command, [...DMR.args, 'node', 'run', '--config', files.configFile], {
      logFile: files.log,
      env: { ...process.env, ...env },
    });
    this.mesh.nodes.set(nodeId, child);
    const deadline = Date.now() + timeoutMs;
    while (this.routers(nodeId).length < routers) {
      if (child.child.exitCode !== null) {
        throw new DmrError(
          'FAULT_SCENARIO_FAILED',
          `the agent of ${nodeId} exited (code ${child.child.exitCode}) on restart: ${tailOf(files.log, 2)}`,
          {
            hint: `see ${files.log}`,
          },
        );
      }
      if (Date.now() > deadline) {
        throw new DmrError(
          'FAULT_SCENARIO_FAILED',
          `the agent of ${nodeId} runs no router ${timeoutMs} ms after restart`,
          {
            hint: `see ${files.log}`,
          },
        );
      }
      await sleep(200);
    }
  }

  /** `dmr ctl <args> -o json` as the mesh's CentOps administrator: the operator's own path. */
  /**
   * A client certificate for `clientId` that lives `ttlMs`, from CentOps' own CA directory with the operator's
   * command (`dmr pki issue --generate-key`): CentOps' profiles live an hour at least, so a certificate that
   * expires inside a run has to come from the CA itself (as the SDK's renewal test does). CentOps renews it like
   * any of its own: same CA, and renewal is authenticated by the certificate, not by a record of it.
   */
  async issueShortLived(
    clientId: string,
    ttlMs: number,
  ): Promise<{ certFile: string; keyFile: string; notAfter: Date }> {
    const certFile = join(this.dir, `${clientId}-short.crt`);
    const keyFile = join(this.dir, `${clientId}-short.key`);
    const { stdout } = await execFileAsync(
      DMR.command,
      [
        ...DMR.args,
        'pki',
        'issue',
        '--dir',
        join(this.dir, 'centops', 'ca'),
        '--kind',
        'client',
        '--id',
        clientId,
        '--generate-key',
        '--key-out',
        keyFile,
        '--out',
        certFile,
        '--ttl',
        `${Math.ceil(ttlMs / 1000)}s`,
        '--force',
        '-o',
        'json',
      ],
      { timeout: 60_000 },
    );
    const issued = JSON.parse(stdout) as { notAfter?: unknown };
    const notAfter = new Date(String(issued.notAfter));
    if (Number.isNaN(notAfter.getTime())) {
      throw new DmrError('FAULT_SCENARIO_FAILED', `dmr pki issue did not say when the certificate expires: ${stdout}`);
    }
    return { certFile, keyFile, notAfter };
  }

  /** CentOps' API URL (where clients renew). */
  get centopsUrl(): string {
    const url = this.mesh.state.centops?.apiUrl;
    if (url === undefined) throw new DmrError('FAULT_SCENARIO_FAILED', 'the mesh has no CentOps');
    return url;
  }

  async ctl(args: readonly string[]): Promise<unknown> {
    const admin = this.mesh.state.centops?.adminConfig;
    if (admin === undefined) throw new DmrError('FAULT_SCENARIO_FAILED', 'the mesh has no CentOps administrator');
    const { stdout } = await execFileAsync(
      DMR.command,
      [...DMR.args, 'ctl', '--config', admin, ...args, '-o', 'json'],
      {
        timeout: 60_000,
      },
    );
    return JSON.parse(stdout) as unknown;
  }

  /**
   * What a lost message would be waiting in, for a row that lost some: each
   * node's non-empty queues (ready, unacknowledged, consumers) and the last
   * warnings of its log. CI keeps no world directory, so this is all a
   * failed run leaves to explain itself with. Never payloads.
   */
  async diagnose(say: (text: string) => void): Promise<void> {
    for (const [index, node] of this.mesh.state.nodes.entries()) {
      const nodeId = node.id;
      try {
        const queues = await this.harness.management(index).listQueues(node.vhost);
        const busy = queues.filter((queue) => (queue.messages ?? 0) > 0 || queue.consumers === 0);
        say(`diagnosis ${nodeId}: ${busy.length} of ${queues.length} queues hold messages or have no consumer`);
        for (const queue of busy) {
          say(
            `  ${queue.name} (${queue.type ?? '?'}): ready ${queue.messagesReady ?? '?'}, unacked ${queue.messagesUnacknowledged ?? '?'}, consumers ${queue.consumers ?? '?'}`,
          );
        }
      } catch (error) {
        say(`diagnosis ${nodeId}: queues unreadable: ${error instanceof Error ? error.message : String(error)}`);
      }
      const log = join(this.mesh.paths.logsDir, `${nodeId}.log`);
      const warnings = readLines(log).filter(
        (line) => !line.startsWith('{"level":30') && !line.startsWith('{"level":20'),
      );
      say(`diagnosis ${nodeId}: the last ${Math.min(40, warnings.length)} of ${warnings.length} warnings in ${log}`);
      for (const line of warnings.slice(-40)) say(`  ${line.slice(0, 600)}`);
    }
  }

  async stop(): Promise<void> {
    await this.mesh.stop({ step: () => ({ update: () => {}, done: () => 0, fail: () => {} }), line: () => {} });
    // A CentOps restarted by a scenario is the mesh's again (startCentOps set it), so the mesh stopped it.
    await stopProcess(this.mesh.centops?.ref, 5_000);
    if (!this.#keep) await rm(this.dir, { recursive: true, force: true });
  }
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n');
  } catch {
    return [];
  }
}

/** The last lines of a log, for an error that says why without opening the file. */
function tailOf(file: string, lines: number): string {
  const all = readLines(file);
  return all.length === 0 ? '(no log)' : all.slice(-lines).join(' | ');
}

async function listening(url: string): Promise<boolean> {
  const { connect } = await import('node:net');
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
