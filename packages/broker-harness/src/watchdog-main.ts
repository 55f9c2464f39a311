/** Entry point of the watchdog process: `node watchdog-main.js <dir> <ownerPid> <ownerStartTicks>`. */
import { runWatchdog } from './watchdog.js';

const [dir, pid, startTicks] = process.argv.slice(2);
if (dir === undefined || !Number.isInteger(Number(pid)) || !Number.isInteger(Number(startTicks))) {
  process.stderr.write('usage: watchdog-main.js <dir> <ownerPid> <ownerStartTicks>\n');
  process.exit(2);
}
// A watchdog must not be stopped by the signals aimed at the tests it guards; only SIGTERM/SIGKILL from the harness end it.
process.on('SIGINT', () => undefined);
process.on('SIGHUP', () => undefined);
const reason = await runWatchdog(dir, { pid: Number(pid), startTicks: Number(startTicks) });
process.stdout.write(`${new Date().toISOString()} watchdog for ${dir}: ${reason}\n`);
