/**
 * Entry of a router child process: `node router-main.js --config FILE --shard N`.
 * The supervisor (supervisor.ts) spawns it; `dmr node router` does the same
 * in the foreground. Exits 0 after SIGTERM/SIGINT — or, under the supervisor,
 * when the agent is gone (stop-request.ts) — once in-flight messages are
 * settled; non-zero on a start failure (the supervisor restarts it).
 */
import { parseArgs } from 'node:util';
import { isDmrError } from '@dmr/core';
import { startRouterProcess } from './router-process.js';
import { loadRunConfig } from './run-config.js';
import { stopRequested } from './stop-request.js';

/** Runs one router until a signal; resolves with the exit code. */
export async function routerMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, shard: { type: 'string', default: '0' } },
  });
  if (values.config === undefined) {
    process.stderr.write('usage: router-main --config FILE [--shard N]\n');
    return 2;
  }
  const shard = Number(values.shard);
  const config = await loadRunConfig(values.config);
  const running = await startRouterProcess({ config, shard: Number.isInteger(shard) && shard >= 0 ? shard : 0 });
  await stopRequested();
  await running.stop();
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  routerMain(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      const payload = isDmrError(error) ? error.toJSON() : { error: { message: String(error) } };
      process.stderr.write(`${JSON.stringify(payload)}\n`);
      process.exit(isDmrError(error) ? error.exitCode : 1);
    },
  );
}
