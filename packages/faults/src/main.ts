#!/usr/bin/env node
// `npm run faults [-- flags]`: the fault scenarios on real processes, one table (README.md of this package).
import { parseArgs } from 'node:util';
import { DmrError, formatDuration, isDmrError, parseDuration } from '@dmr/core';
import { TerminalProgress } from '@dmr/mesh';
import { isBad, renderTable } from './report.js';
import { runScenarios } from './run.js';
import { FULL_SETTINGS, type Settings } from './scenario.js';
import { SCENARIOS } from './scenarios/index.js';

const HELP = `Usage: npm run faults -- [options]

Runs fault scenarios against real processes (CentOps, TLS RabbitMQ nodes,
\`dmr node run\` agents and their routers, \`dmr bridge run\` bridges), each
under a steady stream of messages, and prints one table on stdout:
scenario | sent | confirmed | delivered | reported | lost | duplicates at the
application | recovery | note. Progress goes to stderr. Exit status 1 when a
row shows a loss, a duplicate or a failed scenario.

Options:
  --only <names>           comma-separated scenario names (repeatable); default all
  --list                   list the scenarios and exit
  --json                   print the rows as JSON instead of the table
  --keep                   keep each world's directory (logs of every process)
  --rate <n>               messages a second (default ${FULL_SETTINGS.rate})
  --centops-down <dur>     how long CentOps stays down (default ${formatDuration(FULL_SETTINGS.centopsDownMs)})
  --endpoint-down <dur>    how long the bridge's endpoint stays down (default ${formatDuration(FULL_SETTINGS.endpointDownMs)})
  --alarm <dur>            how long a RabbitMQ alarm is held (default ${formatDuration(FULL_SETTINGS.alarmMs)})
  --clock <dur>            traffic through the shifted-clock node (default ${formatDuration(FULL_SETTINGS.clockMs)})
  --cert-ttl <dur>         lifetime of cert-expiry's short-lived client certificate (default ${formatDuration(FULL_SETTINGS.certTtlMs)})
  --drain-quiet <dur>      give up waiting for the rest after nothing moved this long (default ${formatDuration(FULL_SETTINGS.drainQuietMs)})
  -h, --help               this help

Durations: 30s, 5m, 1h. Needs RabbitMQ 3.10 (rabbitmq-server) and opa, as npm test does.`;

function fail(message: string, hint?: string): never {
  throw new DmrError('INVALID_ARGUMENT', message, hint === undefined ? {} : { hint });
}

function duration(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  try {
    return parseDuration(text);
  } catch {
    return fail(`--${name} must be a duration such as 30s or 5m, not "${text}"`);
  }
}

async function main(): Promise<number> {
  const parsed = (() => {
    try {
      return parseArgs({
        options: {
          only: { type: 'string', multiple: true },
          list: { type: 'boolean' },
          json: { type: 'boolean' },
          keep: { type: 'boolean' },
          rate: { type: 'string' },
          'centops-down': { type: 'string' },
          'endpoint-down': { type: 'string' },
          alarm: { type: 'string' },
          clock: { type: 'string' },
          'cert-ttl': { type: 'string' },
          'drain-quiet': { type: 'string' },
          help: { type: 'boolean', short: 'h' },
        },
        strict: true,
      });
    } catch (error) {
      return fail(error instanceof Error ? error.message : String(error), 'npm run faults -- --help lists the options');
    }
  })();
  const { values } = parsed;
  if (values.help === true) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (values.list === true) {
    for (const scenario of SCENARIOS) {
      process.stdout.write(`${scenario.name.padEnd(18)} ${scenario.title}\n`);
    }
    return 0;
  }
  const known = new Map(SCENARIOS.map((scenario) => [scenario.name, scenario]));
  const wanted = (values.only ?? []).flatMap((list) => list.split(',')).map((name) => name.trim());
  for (const name of wanted) {
    if (!known.has(name))
      fail(`no scenario named "${name}"`, `npm run faults -- --list names them: ${[...known.keys()].join(', ')}`);
  }
  const scenarios = wanted.length === 0 ? SCENARIOS : SCENARIOS.filter((scenario) => wanted.includes(scenario.name));
  const rate = values.rate === undefined ? FULL_SETTINGS.rate : Number(values.rate);
  if (!Number.isFinite(rate) || rate <= 0 || rate > 1000)
    fail(`--rate must be a number from 1 to 1000, not "${values.rate}"`);
  const settings: Settings = {
    ...FULL_SETTINGS,
    rate,
    centopsDownMs: duration('centops-down', values['centops-down'], FULL_SETTINGS.centopsDownMs),
    endpointDownMs: duration('endpoint-down', values['endpoint-down'], FULL_SETTINGS.endpointDownMs),
    alarmMs: duration('alarm', values.alarm, FULL_SETTINGS.alarmMs),
    clockMs: duration('clock', values.clock, FULL_SETTINGS.clockMs),
    certTtlMs: duration('cert-ttl', values['cert-ttl'], FULL_SETTINGS.certTtlMs),
    drainQuietMs: duration('drain-quiet', values['drain-quiet'], FULL_SETTINGS.drainQuietMs),
  };
  const say = (text: string): void => void process.stderr.write(`${text}\n`);
  const rows = await runScenarios(scenarios, {
    settings,
    say,
    progress: new TerminalProgress({ stream: process.stderr }),
    ...(values.keep === true ? { keep: true } : {}),
  });
  process.stdout.write(values.json === true ? `${JSON.stringify(rows, null, 2)}\n` : `${renderTable(rows)}\n`);
  return rows.some(isBad) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (isDmrError(error)) {
      process.stderr.write(
        `error[${error.code}]: ${error.message}\n${error.hint === undefined ? '' : `hint: ${error.hint}\n`}`,
      );
      process.exit(2);
    }
    process.stderr.write(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
