/**
 * The running local mesh as its supervisor holds it: the components it
 * started (CentOps, the brokers, the nodes, the demo clients), the state file
 * `dmr status` reads, the demo's counters, and the stop of everything in
 * reverse order. up.ts starts it; components.ts starts each component.
 */
import { writeFile } from 'node:fs/promises';
import { harnessPaths, type BrokerHarness, type NodeExitEvent } from '@dmr/broker-harness';
import { DmrError } from '@dmr/core';
import type { DemoEvent, DemoExchange } from './demo.js';
import { meshPaths, type MeshPaths } from './paths.js';
import { signalGroup, stopProcess, tailOf, type LoggedChild } from './processes.js';
import type { MeshProgress } from './progress.js';
import { writeMeshState, zeroRoundTrips, type DemoStats, type MeshState, type PathStats } from './state.js';
import type { MeshShape } from './topology.js';

/** How to run the `dmr` command line (the CLI passes its own node binary and script). */
export interface DmrCommand {
  command: string;
  args: string[];
}

export interface StartMeshOptions {
  dir: string;
  dmr: DmrCommand;
  mode: 'foreground' | 'detached';
  progress: MeshProgress;
  /** How many nodes, linked how (topology.ts). */
  shape: MeshShape;
  /** Between two questions of bot-a (default 1000 ms). */
  intervalMs?: number;
  /** Router processes per node agent (default 1; the fault suite kills one of two). */
  routers?: number;
  /** Aborting (Ctrl-C during the start) stops what was started and rejects. */
  signal?: AbortSignal;
  /** Also start Prometheus scraping the mesh (prometheus.ts), and Jaeger when installed (jaeger.ts). */
  observability?: boolean;
}

const CHILD_STOP_GRACE_MS = 20_000;

export function startFailure(what: string, message: string, log: string, cause?: unknown): DmrError {
  const tail = tailOf(log);
  return new DmrError(
    'MESH_START_FAILED',
    `${what}: ${message}${tail === '' ? '' : `\n--- last lines of ${log} ---\n${tail}`}`,
    {
      details: { component: what, log },
      hint: `see ${log}`,
      cause,
    },
  );
}

export class LocalMesh {
  readonly paths: MeshPaths;
  /** Where the start's steps, the message lines and the stop's steps go. */
  progress: MeshProgress;
  #state: MeshState;
  centops: LoggedChild | undefined;
  harness: BrokerHarness | undefined;
  /** Each node's agent, by node id, in start order. */
  readonly nodes = new Map<string, LoggedChild>();
  demo: DemoExchange | undefined;
  prometheus: LoggedChild | undefined;
  /** `--observability` with Jaeger installed: Jaeger, and the environment (OTEL_*) every process is started with. */
  jaeger: LoggedChild | undefined;
  childEnv: NodeJS.ProcessEnv | undefined;
  #stopping: Promise<void> | undefined;
  #failure: ((error: DmrError) => void) | undefined;
  /** Resolves when a component dies on its own while the mesh runs. */
  readonly failed: Promise<DmrError>;
  readonly stats: DemoStats = { ...zeroRoundTrips(), paths: [], updatedAt: new Date().toISOString() };
  readonly #latencies: number[] = [];
  #pathLabel = 'bot-a → bot-b → bot-a';
  #statsTimer: NodeJS.Timeout | undefined;
  #writes: Promise<void> = Promise.resolve();

  constructor(options: StartMeshOptions, state: MeshState) {
    this.progress = options.progress;
    this.paths = meshPaths(options.dir);
    this.#state = state;
    this.failed = new Promise((resolve) => (this.#failure = resolve));
  }

  get state(): MeshState {
    return this.#state;
  }

  /**
   * Changes the state and writes it. Writes are chained, each writing the
   * state as it is by then: two overlapping atomic writes could otherwise
   * land in the wrong order and leave an older state on disk.
   */
  update(change: Partial<MeshState>): Promise<void> {
    this.#state = { ...this.#state, ...change };
    const write = this.#writes.then(() => writeMeshState(this.#state));
    this.#writes = write.catch(() => undefined);
    return write;
  }

  #died(error: DmrError): void {
    if (this.#stopping === undefined) this.#failure?.(error);
  }

  watch(child: LoggedChild, what: string, log: string): void {
    void child.exited.then((exit) =>
      this.#died(startFailure(what, `exited unexpectedly (${exit.signal ?? `code ${exit.code}`})`, log)),
    );
  }

  brokerExited(event: NodeExitEvent): void {
    if (event.expected) return;
    this.#died(
      new DmrError(
        'BROKER_NOT_RUNNING',
        `${event.node} exited unexpectedly (${event.signal ?? `code ${event.code}`})`,
        {
          hint: `see the broker log under ${harnessPaths(this.paths.brokerDir).nodesDir}/${event.node}/log`,
        },
      ),
    );
  }

  /** The demo's one path (bot-a on its node to bot-b on its node); its counters are the totals. */
  setDemoPath(path: Pick<PathStats, 'from' | 'to'>, label: string): void {
    this.#pathLabel = label;
    this.stats.paths = [{ ...path, ...zeroRoundTrips() }];
  }

  demoEvent(event: DemoEvent): void {
    const { progress } = this;
    const stats = this.stats;
    const path = stats.paths[0];
    switch (event.kind) {
      case 'round-trip': {
        stats.roundTrips++;
        stats.lastLatencyMs = Math.round(event.latencyMs * 10) / 10;
        this.#latencies.push(event.latencyMs);
        if (this.#latencies.length > 100) this.#latencies.shift();
        const sorted = [...this.#latencies].sort((a, b) => a - b);
        stats.medianLatencyMs = Math.round((sorted[Math.floor(sorted.length / 2)] ?? 0) * 10) / 10;
        progress.line(
          `  ${this.#pathLabel}  #${event.seq}  ${event.latencyMs.toFixed(1)} ms  (median ${stats.medianLatencyMs} ms, ${stats.roundTrips} round trips)`,
        );
        break;
      }
      case 'refused':
        stats.refused++;
        stats.lastRefusal = `${event.reason}${event.detail === '' ? '' : `: ${event.detail}`}`;
        progress.line(`  ✗ #${event.seq ?? '?'} refused: ${stats.lastRefusal}`);
        break;
      case 'timeout':
        progress.line(`  … #${event.seq} got no answer within 10 s`);
        break;
      case 'connection':
        progress.line(`  ! ${event.client}: ${event.message}`);
        break;
    }
    stats.sent = this.demo?.sent ?? stats.sent;
    if (path !== undefined) {
      Object.assign(path, {
        sent: stats.sent,
        roundTrips: stats.roundTrips,
        refused: stats.refused,
        lastLatencyMs: stats.lastLatencyMs,
        medianLatencyMs: stats.medianLatencyMs,
        lastRefusal: stats.lastRefusal,
      });
    }
    this.#scheduleStats();
  }

  /** At most one write a second: `dmr status` reads the counters from the file. */
  #scheduleStats(): void {
    if (this.#statsTimer !== undefined) return;
    this.#statsTimer = setTimeout(() => {
      this.#statsTimer = undefined;
      void this.writeStats();
    }, 1000);
    this.#statsTimer.unref();
  }

  async writeStats(): Promise<void> {
    this.stats.sent = this.demo?.sent ?? this.stats.sent;
    for (const path of this.stats.paths) path.sent = this.stats.sent;
    this.stats.updatedAt = new Date().toISOString();
    await writeFile(this.paths.statsFile, `${JSON.stringify(this.stats, null, 2)}\n`, { mode: 0o600 }).catch(
      () => undefined,
    );
  }

  /** Stops everything that was started, newest first, with a progress step each. Idempotent. */
  stop(progress: MeshProgress = this.progress): Promise<void> {
    this.#stopping ??= this.#stopAll(progress);
    return this.#stopping;
  }

  async #stopAll(progress: MeshProgress): Promise<void> {
    await this.update({ status: 'stopping' }).catch(() => undefined);
    if (this.#statsTimer) clearTimeout(this.#statsTimer);
    const stages: Array<[string, () => Promise<string | undefined>]> = [];
    const prometheus = this.prometheus;
    // First: it watches the others, and would only record them going down.
    if (prometheus) stages.push(['stop Prometheus', async () => stopProcess(prometheus.ref, CHILD_STOP_GRACE_MS)]);
    const demo = this.demo;
    if (demo) {
      stages.push([
        'stop the demo clients',
        async () => {
          await demo.stop();
          await this.writeStats();
          return `${this.stats.roundTrips} round trips, ${this.stats.refused} refused`;
        },
      ]);
    }
    const nodes = [...this.nodes].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
    if (nodes.length > 0) {
      stages.push([
        `stop ${nodes.map(([id]) => id).join(', ')}`,
        async () => {
          // In parallel: each agent's stop waits for its routers, and none depends on another.
          const results = await Promise.all(nodes.map(([, child]) => stopProcess(child.ref, CHILD_STOP_GRACE_MS)));
          const killed = nodes.filter((_, index) => results[index] === 'killed').map(([id]) => id);
          return killed.length === 0 ? undefined : `killed after ${CHILD_STOP_GRACE_MS / 1000} s: ${killed.join(', ')}`;
        },
      ]);
    }
    const harness = this.harness;
    if (harness) {
      stages.push([
        harness.nodes.length === 1 ? 'stop the broker' : `stop the ${harness.nodes.length} brokers`,
        async () => {
          await harness.stop();
          return undefined;
        },
      ]);
    }
    const centops = this.centops;
    if (centops) stages.push(['stop CentOps', async () => stopProcess(centops.ref, CHILD_STOP_GRACE_MS)]);
    const jaeger = this.jaeger;
    // Last: it takes the spans the others export as they stop.
    if (jaeger) stages.push(['stop Jaeger', async () => stopProcess(jaeger.ref, CHILD_STOP_GRACE_MS)]);
    let firstError: unknown;
    for (const [name, run] of stages) {
      const step = progress.step(name);
      try {
        const detail = await run();
        step.done(detail === 'stopped' || detail === '' ? undefined : detail);
      } catch (error) {
        step.fail(error);
        firstError ??= error;
      }
    }
    await this.update({ status: 'stopped' }).catch(() => undefined);
    if (firstError !== undefined) throw firstError;
  }

  /** A second Ctrl-C: no grace, no waiting. */
  killNowSync(): void {
    for (const child of this.nodes.values()) signalGroup(child.ref, 'SIGKILL');
    signalGroup(this.centops?.ref, 'SIGKILL');
    signalGroup(this.prometheus?.ref, 'SIGKILL');
    signalGroup(this.jaeger?.ref, 'SIGKILL');
    this.harness?.killNowSync('second interrupt');
  }
}
