/**
 * `dmr up | down | status`: the local mesh (CentOps, N DMR nodes each with
 * its own TLS-only RabbitMQ, linked in a line, ring or star, two demo
 * clients on the first and last node) on this machine. The work is in
 * @dmr/mesh; this file is options, rendering and signals.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { DmrError } from '@dmr/core';
import {
  DEFAULT_MESH_DIR,
  DEFAULT_NODES,
  DEFAULT_TOPOLOGY,
  MAX_NODES,
  TOPOLOGIES,
  TerminalProgress,
  meshShape,
  parseNodeCount,
  parseTopology,
  meshDown,
  meshStatus,
  preflight,
  startDetached,
  startMesh,
  type DmrCommand,
  type DownReport,
  type LocalMesh,
  type MeshShape,
  type MeshState,
  type MeshStatusReport,
  type NodeReport,
} from '@dmr/mesh';
import { action } from '../action.js';
import { printResult, progress, renderFields, reportError, type OutputFormat } from '../output.js';

const DMR_SCRIPT = fileURLToPath(new URL('../../bin/dmr.js', import.meta.url));

/** Children run the same `dmr` as this process, whatever the PATH says. */
function selfCommand(): DmrCommand {
  return { command: process.execPath, args: [DMR_SCRIPT] };
}

function parseInterval(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 50 || ms > 60_000) {
    throw new DmrError('INVALID_ARGUMENT', `--interval must be whole milliseconds from 50 to 60000, not "${text}"`);
  }
  return ms;
}

function renderRunning(state: MeshState): string {
  const rows: Array<readonly [string, string | undefined]> = [
    ['CentOps', state.centops === null ? undefined : `${state.centops.apiUrl}  (admin: ${state.centops.adminConfig})`],
    [
      'topology',
      `${state.topology}: ${state.links.length === 0 ? 'no links' : state.links.map((link) => link.nodes.join('–')).join(', ')}`,
    ],
    ...state.nodes.map(
      (node) =>
        [
          node.id,
          `${node.amqpsUrl}  vhost ${node.vhost}  management ${node.managementUrl}  (run-config ${node.config})`,
        ] as const,
    ),
    ...state.clients.map(
      (client) => [client.id, `${client.organisation} on ${client.node}, certificate ${client.certificate}`] as const,
    ),
    ['Prometheus', state.prometheus == null ? undefined : `${state.prometheus.url}  (data: ${state.prometheus.dir})`],
    [
      'Jaeger',
      state.jaeger == null
        ? undefined
        : `${state.jaeger.url}  (OTLP/HTTP ${state.jaeger.otlpUrl}; dmr trace <id> links here)`,
    ],
  ];
  return `${renderFields(rows)}\nEvery node: TLS + EXTERNAL only; ${join(state.dir, 'mesh.json')} lists them all.`;
}

function demoLine(state: MeshState, intervalMs = 1000): string {
  const [asker, answerer] = state.clients;
  if (asker === undefined || answerer === undefined) return '';
  return asker.node === answerer.node
    ? `${asker.id} asks ${answerer.id} through ${asker.node} every ${intervalMs} ms`
    : `${asker.id} on ${asker.node} asks ${answerer.id} on ${answerer.node} across the mesh every ${intervalMs} ms`;
}

/** Runs until a signal or a dead component; resolves with the exit code. */
function superviseForeground(mesh: LocalMesh, format: OutputFormat): Promise<number> {
  return new Promise((resolve) => {
    const keepAlive = setInterval(() => undefined, 1 << 30);
    let stopping = false;
    const finish = async (reason: string, exitCode: number): Promise<void> => {
      if (stopping) return;
      stopping = true;
      mesh.progress.line(`${reason}: stopping (Ctrl-C again to kill everything at once)`);
      try {
        await mesh.stop();
      } catch (error) {
        exitCode = reportError(error, format);
      }
      clearInterval(keepAlive);
      for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(name, onSignal);
      resolve(exitCode);
    };
    const onSignal = (name: NodeJS.Signals): void => {
      // Only a second Ctrl-C means "now": a closing terminal sends SIGHUP (and its own SIGINT) on top of
      // the first signal, and must not cut the ordered stop short.
      if (stopping) {
        if (name !== 'SIGINT') return;
        mesh.killNowSync();
        process.exit(130);
      }
      void finish(name, 0);
    };
    for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(name, onSignal);
    void mesh.failed.then((error) => {
      reportError(error, format);
      void finish('a component stopped', error.exitCode);
    });
  });
}

interface UpOptions {
  dir: string;
  foreground?: boolean;
  detachedSupervisor?: boolean;
  interval?: string;
  nodes?: string;
  topology?: string;
  observability?: boolean;
}

/** Every option is checked before anything starts: a bad one costs nothing. */
function shapeOf(options: UpOptions): MeshShape {
  return meshShape(parseNodeCount(options.nodes), parseTopology(options.topology));
}

async function upForeground(format: OutputFormat, options: UpOptions): Promise<number> {
  const shape = shapeOf(options);
  const intervalMs = parseInterval(options.interval);
  // A closed terminal (SIGHUP) makes every later write fail: the stop must still run to the end.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const output = new TerminalProgress({ stream: process.stdout });
  // Ctrl-C during the start: finish the current step, then stop what was started.
  const abort = new AbortController();
  const onSignal = (): void => {
    if (abort.signal.aborted) process.exit(130);
    output.line('interrupted: stopping what was started (Ctrl-C again to quit at once)');
    abort.abort();
  };
  for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(name, onSignal);
  let mesh: LocalMesh;
  try {
    mesh = await startMesh({
      dir: options.dir,
      dmr: selfCommand(),
      mode: options.detachedSupervisor === true ? 'detached' : 'foreground',
      progress: output,
      shape,
      intervalMs,
      signal: abort.signal,
      observability: options.observability === true,
    });
  } catch (error) {
    // An interrupted start is what the user asked for, not a failure to report (whatever the step died of).
    if (abort.signal.aborted) {
      output.line('interrupted: everything that was started is stopped');
      return 130;
    }
    throw error;
  } finally {
    for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(name, onSignal);
  }
  output.line(`\n${renderRunning(mesh.state)}\n`);
  output.line(
    options.detachedSupervisor === true
      ? `running detached; stop with: dmr down --dir ${options.dir}`
      : `${demoLine(mesh.state, intervalMs)}; Ctrl-C stops everything`,
  );
  return superviseForeground(mesh, format);
}

export function upCommand(): Command {
  return new Command('up')
    .description(
      'start the local mesh: CentOps, N DMR nodes each with its own RabbitMQ, linked per --topology, and two demo clients on the first and last node exchanging messages across the mesh',
    )
    .option(
      '--dir <dir>',
      'where the mesh keeps everything (CentOps, brokers, nodes, logs, mesh.json)',
      DEFAULT_MESH_DIR,
    )
    .option(
      '--nodes <n>',
      `DMR nodes to start, 1 to ${MAX_NODES}: each is a RabbitMQ, an agent and a router on this machine (default ${DEFAULT_NODES})`,
    )
    .option(
      '--topology <name>',
      `how the nodes are linked: ${TOPOLOGIES.join(' | ')} (default ${DEFAULT_TOPOLOGY}); line 1–2–…–N, ring adds N–1, star links node-1 to every other`,
    )
    .option('--foreground', 'stay attached with live progress; Ctrl-C stops everything')
    .option('--interval <ms>', 'milliseconds between two demo questions (default 1000)')
    .option(
      '--observability',
      "also start Prometheus (Debian's prometheus) on its own loopback port, scraping CentOps, every node, router and broker with the alert rules of deploy/prometheus; its data in DIR/prometheus; and Jaeger, when installed (npm run setup:jaeger), with every process exporting traces to it",
    )
    .addOption(new Option('--detached-supervisor', 'internal: the detached copy that `dmr up` starts').hideHelp())
    .action(
      action<[UpOptions]>(async ({ format }, options) => {
        if (options.foreground === true) {
          process.exitCode = await upForeground(format, options);
          return;
        }
        const shape = shapeOf(options);
        const intervalMs = parseInterval(options.interval);
        // Missing programs are reported here, with the command that installs them, not from the log.
        await preflight(undefined, { observability: options.observability === true });
        progress(`starting the mesh in ${options.dir} (log: ${options.dir}/logs/mesh.log)`);
        const state = await startDetached({
          dir: options.dir,
          dmr: selfCommand(),
          shape,
          intervalMs,
          observability: options.observability === true,
          onStep: (step) =>
            process.stderr.write(
              `✓ ${step.name}${step.detail === null ? '' : `  ${step.detail}`}  (${(step.ms / 1000).toFixed(1)} s)\n`,
            ),
        });
        printResult(
          format,
          state,
          (value) =>
            `${renderRunning(value)}\n\nThe mesh runs in the background (supervisor pid ${value.supervisor.pid}).\n` +
            `  watch:  dmr status --dir ${options.dir}     (log: ${options.dir}/logs/mesh.log)\n` +
            `  stop:   dmr down --dir ${options.dir}`,
        );
      }),
    );
}

function nodeLine(node: NodeReport): string {
  const facts: string[] = [node.broker.amqpsUrl];
  if (node.appliedRevision !== null) {
    facts.push(
      `revision ${node.appliedRevision}/${node.currentRevision ?? '?'}${node.inSync === true ? ' (in sync)' : ''}, policy ${node.policyRevision ?? '-'}`,
    );
  }
  if (node.refused !== null) facts.push(`refused revision ${node.refused.revision}: ${node.refused.reason}`);
  if (node.error !== null) facts.push(`(${node.error})`);
  const agent = `${node.running ? 'running' : 'stopped'}${node.pid === null ? '' : ` pid ${node.pid}`}`;
  const broker = `broker ${node.broker.running ? 'running' : 'stopped'}${node.broker.pid === null ? '' : ` pid ${node.broker.pid}`}`;
  return `  ${node.id.padEnd(8)} ${agent.padEnd(18)} ${broker.padEnd(26)} ${facts.join('  ')}`.trimEnd();
}

function routesLine(node: NodeReport): string | undefined {
  const routes = Object.entries(node.applied?.routes ?? {});
  if (routes.length === 0) return undefined;
  return `  ${''.padEnd(8)} routes: ${routes.map(([to, via]) => (via === null ? `${to} unreachable` : via === to ? `${to} direct` : `${to} via ${via}`)).join(', ')}`;
}

function renderStatus(report: MeshStatusReport): string {
  const header = renderFields([
    ['dir', report.dir],
    ['state', report.running ? report.recordedStatus : `not running (last recorded: ${report.recordedStatus})`],
    ['mode', report.mode],
    ['started', report.startedAt],
    ['topology', report.topology],
    ['error', report.error === null ? undefined : `${report.error.code}: ${report.error.message}`],
  ]);
  const components = report.components.map((component) => {
    const facts: string[] = [];
    if (component.endpoint !== null) facts.push(component.endpoint);
    const info = component.info;
    if (typeof info.organisation === 'string')
      facts.push(`${info.organisation}${typeof info.node === 'string' ? ` on ${info.node}` : ''}`);
    const pid = component.pid === null ? '' : `pid ${component.pid}`;
    return `  ${component.name.padEnd(11)} ${(component.running ? 'running' : 'stopped').padEnd(8)} ${pid.padEnd(10)} ${facts.join('  ')}`.trimEnd();
  });
  const nodes = report.nodes.flatMap((node) => [nodeLine(node), routesLine(node)].filter((line) => line !== undefined));
  const links =
    report.links.length === 0
      ? ['  none']
      : report.links.map(
          (link) =>
            `  ${`${link.from} → ${link.to}`.padEnd(18)} ${(link.up ? 'up' : 'down').padEnd(5)} ${link.state.padEnd(11)} ${link.messages === null ? '? waiting' : `${link.messages} waiting`}`,
        );
  const paths =
    report.paths.length === 0
      ? ['  none yet']
      : report.paths.map((path) => {
          const route =
            path.route === null
              ? 'no route'
              : `${path.route.join(' → ')} (${path.hops} ${path.hops === 1 ? 'hop' : 'hops'})`;
          const refusal = path.lastRefusal === null ? '' : `; last refusal ${path.lastRefusal}`;
          return `  ${path.from.client} → ${path.to.client}  ${route}: ${path.sent} sent, ${path.roundTrips} round trips, ${path.refused} refused, median ${path.medianLatencyMs ?? '-'} ms${refusal}`;
        });
  const updated = report.messages === null ? '' : ` (counters at ${report.messages.updatedAt})`;
  return [
    header,
    'components:',
    ...components,
    'nodes:',
    ...nodes,
    'links (each direction: shovel state, messages waiting in dmr.outbound.<peer>):',
    ...links,
    `round trips per path${updated}:`,
    ...paths,
  ].join('\n');
}

export function statusCommand(): Command {
  return new Command('status')
    .description(
      'show the local mesh: each node (agent, broker, applied revision, routes), each link (up or down, messages waiting), the round trips per path',
    )
    .option('--dir <dir>', 'the mesh directory', DEFAULT_MESH_DIR)
    .action(
      action<[{ dir: string }]>(async ({ format }, options) => {
        printResult(format, await meshStatus(options.dir), renderStatus);
      }),
    );
}

function renderDown(report: DownReport): string {
  if (!report.found) return `no mesh in ${report.dir}: nothing to stop`;
  if (report.stopped.every((entry) => entry.result === 'not-running')) return `nothing was running in ${report.dir}`;
  const lines = report.stopped.map((entry) => `  ${entry.name.padEnd(11)} ${entry.result}`);
  return `stopped the mesh in ${report.dir} (${(report.ms / 1000).toFixed(1)} s)\n${lines.join('\n')}`;
}

export function downCommand(): Command {
  return new Command('down')
    .description('stop the local mesh that `dmr up` started (every process it recorded)')
    .option('--dir <dir>', 'the mesh directory', DEFAULT_MESH_DIR)
    .action(
      action<[{ dir: string }]>(async ({ format }, options) => {
        printResult(format, await meshDown(options.dir, progress), renderDown);
      }),
    );
}
