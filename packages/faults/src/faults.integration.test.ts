/**
 * The CI subset of `npm run faults`: one real single-node world (CentOps,
 * a TLS RabbitMQ, a `dmr node run` agent with two router processes, two
 * `dmr bridge run` processes) shared by two scenarios, shortened: a router
 * SIGKILLed mid-stream, and the bridge's endpoint down for 5 s instead of
 * the on-demand 60 s. Each must end with
 * every accepted message delivered: 0 lost, 0 duplicates at the
 * application. Never timings (those are the on-demand table's).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TerminalProgress } from '@dmr/mesh';
import { runScenarios } from './run.js';
import { FULL_SETTINGS, type Settings } from './scenario.js';
import { SCENARIOS } from './scenarios/index.js';

const CI_SETTINGS: Settings = {
  ...FULL_SETTINGS,
  leadMs: 1_000,
  tailMs: 2_000,
  endpointDownMs: 5_000,
  drainQuietMs: 60_000,
};

describe('npm run faults, CI subset', () => {
  it('a router SIGKILL and an endpoint down lose nothing and duplicate nothing', async () => {
    const wanted = ['router-kill', 'endpoint-down'];
    const rows = await runScenarios(
      SCENARIOS.filter((scenario) => wanted.includes(scenario.name)),
      {
        settings: CI_SETTINGS,
        say: (text) => process.stderr.write(`${text}\n`),
        progress: new TerminalProgress({ stream: process.stderr, tty: false }),
      },
    );
    assert.deepEqual(
      rows.map((row) => row.scenario),
      wanted,
    );
    for (const row of rows) {
      assert.equal(row.error, undefined, `${row.scenario} ran to its end`);
      assert.ok(row.confirmed > 0 && row.delivered > 0, `${row.scenario} carried traffic: ${JSON.stringify(row)}`);
      assert.equal(row.lost, 0, `${row.scenario}: nothing accepted is lost: ${JSON.stringify(row)}`);
      assert.equal(row.duplicates, 0, `${row.scenario}: no duplicate at the application: ${JSON.stringify(row)}`);
    }
  });
});
