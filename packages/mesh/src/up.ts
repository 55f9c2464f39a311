/**
 * `dmr up`: CentOps, N DMR nodes (each a TLS-only RabbitMQ and an agent),
 * linked in a line, ring or star, and two demo clients on the first and the
 * last node, all enrolled through CentOps. One process (the
 * supervisor: `dmr up --foreground`, or its detached copy) owns every
 * component, so a Ctrl-C or `dmr down` stops them in reverse order from
 * one place, and the broker's orphan watchdog stops the broker even when
 * the supervisor is killed outright.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { locateRabbitmq } from '@dmr/broker-harness';
import { DmrError, isDmrError } from '@dmr/core';
import { ensureOpa } from '@dmr/policy';
import {
  applyRegistry,
  startCentOps,
  startDemo,
  startJaeger,
  startMeshBrokers,
  startNodes,
  startPrometheus,
} from './components.js';
import { LocalMesh, type StartMeshOptions } from './local-mesh.js';
import { meshPaths, type MeshPaths } from './paths.js';
import { isAlive, processRef } from './processes.js';
import { locatePrometheus } from './prometheus.js';
import type { MeshProgress, StepHandle } from './progress.js';
import { MESH_STATE_VERSION, recordedSupervisor } from './state.js';
import { linkIdOf } from './topology.js';

export { LocalMesh, type DmrCommand, type StartMeshOptions } from './local-mesh.js';

/**
 * The programs every component needs, checked before anything is created,
 * with the command that fixes each. RabbitMQ first: a missing broker should
 * not wait for a minutes-long opa build. A missing opa is built here (first
 * run only), its progress shown as lines of their own.
 */
export async function preflight(progress?: MeshProgress, options: { observability?: boolean } = {}): Promise<void> {
  locateRabbitmq();
  if (options.observability === true) locatePrometheus();
  let step: StepHandle | undefined;
  try {
    await ensureOpa({
      onBuild: () => {
        step = progress?.step('opa: installing the pinned version (a first build with Go takes about 3 minutes)');
      },
      onOutput: (line) => (progress === undefined ? process.stderr.write(`${line}\n`) : progress.line(`  ${line}`)),
    });
  } catch (error) {
    step?.fail(error);
    throw error;
  }
  step?.done();
}

function aborted(signalToCheck: AbortSignal | undefined): void {
  if (signalToCheck?.aborted) {
    throw new DmrError('MESH_START_FAILED', 'the start was interrupted', { hint: 'run dmr up again to start over' });
  }
}

async function assertNotRunning(paths: MeshPaths): Promise<void> {
  const previous = await recordedSupervisor(paths.dir);
  if (previous !== undefined && previous.pid !== process.pid && isAlive(previous)) {
    throw new DmrError('CONFLICT', `a mesh is already running in ${paths.dir} (pid ${previous.pid})`, {
      hint: `watch it with: dmr status --dir ${paths.dir}; stop it with: dmr down --dir ${paths.dir}`,
    });
  }
}

/** Starts every component in order; on any failure (or abort) stops what was started and rejects. */
export async function startMesh(options: StartMeshOptions): Promise<LocalMesh> {
  const paths = meshPaths(options.dir);
  await mkdir(paths.logsDir, { recursive: true, mode: 0o700 });
  await assertNotRunning(paths);
  await preflight(options.progress, { observability: options.observability });
  const supervisor = processRef(process.pid) ?? { pid: process.pid, startTicks: -1 };
  const mesh = new LocalMesh(options, {
    version: MESH_STATE_VERSION,
    dir: paths.dir,
    status: 'starting',
    mode: options.mode,
    startedAt: new Date().toISOString(),
    supervisor,
    error: null,
    steps: [],
    topology: options.shape.topology,
    centops: null,
    broker: null,
    nodes: [],
    links: options.shape.links.map((nodes) => ({ id: linkIdOf(nodes), nodes })),
    clients: [],
    statsFile: paths.statsFile,
  });
  await mesh.update({});
  // A detached start's parent prints the finished steps it reads back from mesh.json.
  const shown = options.progress;
  options = {
    ...options,
    progress: {
      line: (text) => shown.line(text),
      step: (name) => {
        const handle = shown.step(name);
        return {
          update: (detail) => handle.update(detail),
          fail: (error) => handle.fail(error),
          done: (detail) => {
            const ms = handle.done(detail);
            if (mesh.state.status === 'starting') {
              void mesh
                .update({ steps: [...mesh.state.steps, { name, ms: Math.round(ms), detail: detail ?? null }] })
                .catch(() => undefined);
            }
            return ms;
          },
        };
      },
    },
  };
  mesh.progress = options.progress;
  try {
    if (options.observability === true) {
      await startJaeger(mesh);
      aborted(options.signal);
    }
    const { config, admin } = await startCentOps(mesh, options);
    aborted(options.signal);
    const harness = await startMeshBrokers(mesh, options, join(paths.centopsDir, 'ca'));
    aborted(options.signal);
    await applyRegistry(options, admin.api, harness);
    aborted(options.signal);
    await startNodes(mesh, options, admin, config, harness);
    aborted(options.signal);
    if (options.observability === true) {
      await startPrometheus(mesh, options);
      aborted(options.signal);
    }
    await startDemo(mesh, options, admin, config, harness);
    aborted(options.signal);
    await mesh.update({ status: 'running' });
    await mesh.writeStats();
    return mesh;
  } catch (error) {
    const failure = options.signal?.aborted
      ? new DmrError('MESH_START_FAILED', 'the start was interrupted; everything started was stopped', {
          hint: 'run dmr up again to start over',
        })
      : isDmrError(error)
        ? error
        : new DmrError('MESH_START_FAILED', error instanceof Error ? error.message : String(error), { cause: error });
    await mesh.stop().catch(() => undefined);
    await mesh
      .update({
        status: 'failed',
        error: {
          code: failure.code,
          message: failure.message,
          ...(failure.hint === undefined ? {} : { hint: failure.hint }),
        },
      })
      .catch(() => undefined);
    throw failure;
  }
}
