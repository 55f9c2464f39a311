/**
 * Stopping everything a harness started, from the state file alone, so the
 * same code serves `BrokerHarness.stop()`, `dmr broker stop` in another
 * process, exit hooks and the orphan watchdog.
 */
import { stopEpmd } from './epmd.js';
import { killNodeSync, stopNode, type NodeStopReport } from './node.js';
import { isRunning, signalProcess } from './processes.js';
import { writeState, writeStateSync, type HarnessState } from './state.js';

export interface StopReport {
  dir: string;
  nodes: NodeStopReport[];
  /** From the stop request until every process was gone. */
  ms: number;
}

export function harnessProcesses(state: HarnessState): Array<{ role: string; pid: number; running: boolean }> {
  const list = [
    ...state.nodes.flatMap((node) => [
      { role: `${node.name} server script`, ref: node.shell },
      { role: `${node.name} beam.smp`, ref: node.beam },
    ]),
    { role: 'epmd', ref: state.epmd.process },
    { role: 'watchdog', ref: state.watchdog },
  ];
  return list.flatMap(({ role, ref }) => (ref ? [{ role, pid: ref.pid, running: isRunning(ref) }] : []));
}

/** Whether any process this harness started is still alive. */
export function anyRunning(state: HarnessState): boolean {
  return harnessProcesses(state).some((entry) => entry.running);
}

export async function stopFromState(state: HarnessState): Promise<StopReport> {
  const started = Date.now();
  if (state.status !== 'stopped') await writeState({ ...state, status: 'stopping' });
  const nodes = await Promise.all(state.nodes.map((node) => stopNode(node)));
  // After the nodes: epmd goes last of the broker's processes.
  await stopEpmd(state.epmd.process);
  // Last, so that if this process dies halfway the watchdog still finishes the job.
  signalProcess(state.watchdog, 'SIGTERM');
  await writeState({ ...state, status: 'stopped' });
  return { dir: state.dir, nodes, ms: Date.now() - started };
}

/**
 * SIGKILL for everything, synchronously: for a process that is exiting
 * without having stopped its nodes, and for the watchdog whose owner died.
 * The data of a harness node is disposable, so an unclean stop costs nothing.
 */
export function killFromStateSync(state: HarnessState, reason: string, options: { includeWatchdog: boolean }): void {
  for (const node of state.nodes) killNodeSync(node);
  signalProcess(state.epmd.process, 'SIGKILL');
  if (options.includeWatchdog) signalProcess(state.watchdog, 'SIGKILL');
  try {
    writeStateSync({ ...state, status: 'stopped', error: reason });
  } catch {
    // The directory may be gone already (a test removed its temp dir); the processes are what matters.
  }
}
