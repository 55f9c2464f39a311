/**
 * `dmr up | down | status`: the local mesh (CentOps, a DMR node with its own
 * TLS-only RabbitMQ, two demo clients) on this machine. The work is in
 * @dmr/mesh; this file is options, rendering and signals.
 */
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { DmrError } from '@dmr/core';
import {
  DEFAULT_MESH_DIR,
  TerminalProgress,
  meshDown,
  meshStatus,
  preflight,
  startDetached,
  startMesh,
  type DmrCommand,
  type DownReport,
  type LocalMesh,
  type MeshState,
  type MeshStatusReport,
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
  const broker = state.broker;
  const lines = [
    renderFields([
      [
        'CentOps',
        state.centops === null ? undefined : `${state.centops.apiUrl}  (admin: ${state.centops.adminConfig})`,
      ],
      ['broker', broker === null ? undefined : `${broker.amqpsUrl}  (vhost dmr-node-1, TLS + EXTERNAL only)`],
      ['node', state.node === null ? undefined : `${state.node.id}  (run-config ${state.node.config})`],
      ...state.clients.map(
        (client) => [client.id, `${client.organisation}, certificate ${client.certificate}`] as const,
      ),
    ]),
  ];
  return lines.join('\n');
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
}

async function upForeground(format: OutputFormat, options: UpOptions): Promise<number> {
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
      intervalMs: parseInterval(options.interval),
      signal: abort.signal,
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
      : 'bot-a asks bot-b through node-1 every second; Ctrl-C stops everything',
  );
  return superviseForeground(mesh, format);
}

export function upCommand(): Command {
  return new Command('up')
    .description(
      'start the local mesh: CentOps, a DMR node with its own RabbitMQ, two demo clients exchanging messages',
    )
    .option('--dir <dir>', 'where the mesh keeps everything (CentOps, broker, node, logs, mesh.json)', DEFAULT_MESH_DIR)
    .option('--foreground', 'stay attached with live progress; Ctrl-C stops everything')
    .option('--interval <ms>', 'milliseconds between two demo questions (default 1000)')
    .addOption(new Option('--detached-supervisor', 'internal: the detached copy that `dmr up` starts').hideHelp())
    .action(
      action<[UpOptions]>(async ({ format }, options) => {
        if (options.foreground === true) {
          process.exitCode = await upForeground(format, options);
          return;
        }
        // Missing programs are reported here, with the command that installs them, not from the log.
        await preflight();
        progress(`starting the mesh in ${options.dir} (log: ${options.dir}/logs/mesh.log)`);
        const state = await startDetached({
          dir: options.dir,
          dmr: selfCommand(),
          intervalMs: parseInterval(options.interval),
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

function renderStatus(report: MeshStatusReport): string {
  const header = renderFields([
    ['dir', report.dir],
    ['state', report.running ? report.recordedStatus : `not running (last recorded: ${report.recordedStatus})`],
    ['mode', report.mode],
    ['started', report.startedAt],
    ['error', report.error === null ? undefined : `${report.error.code}: ${report.error.message}`],
  ]);
  const rows = report.components.map((component) => {
    const facts: string[] = [];
    if (component.endpoint !== null) facts.push(component.endpoint);
    const info = component.info;
    if (info.appliedRevision !== undefined) {
      facts.push(
        `revision ${String(info.appliedRevision)}/${String(info.currentRevision)}${info.inSync === true ? ' (in sync)' : ''}, policy ${String(info.policyRevision)}`,
      );
    }
    if (typeof info.error === 'string') facts.push(`(${info.error})`);
    if (typeof info.organisation === 'string') facts.push(info.organisation);
    const pid = component.pid === null ? '' : `pid ${component.pid}`;
    return `  ${component.name.padEnd(11)} ${(component.running ? 'running' : 'stopped').padEnd(8)} ${pid.padEnd(10)} ${facts.join('  ')}`.trimEnd();
  });
  const messages = report.messages;
  const counters =
    messages === null
      ? 'messages: none yet'
      : `messages: ${messages.sent} sent, ${messages.roundTrips} round trips, ${messages.refused} refused, median ${messages.medianLatencyMs ?? '-'} ms (at ${messages.updatedAt})`;
  return `${header}\ncomponents:\n${rows.join('\n')}\n${counters}`;
}

export function statusCommand(): Command {
  return new Command('status')
    .description('show each component of the local mesh: running?, endpoints, applied revision, message counts')
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
