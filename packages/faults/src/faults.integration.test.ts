/**
 * The CI subset of `npm run faults`: one real single-node world (CentOps,
 * a TLS RabbitMQ, a `dmr node run` agent with two router processes) shared
 * by two scenarios: a router SIGKILLed mid-stream, and the broker SIGKILLed
 * and booted again on its data. Each must end with every accepted message
 * delivered: 0 lost, 0 duplicates at the application. Never timings (those
 * are the on-demand table's).
 *
 * Within a time budget (about 60 s on a quiet machine, most of it the
 * world's start and the broker's second boot): the SDK traffic needs no
 * bridge processes (the bridge's endpoint outage is `bridge.integration`'s),
 * and no fixed pauses — a scenario waits for counts of delivered messages
 * before its fault and after it (run.ts `flowing`), not for time.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TerminalProgress } from '@dmr/mesh';
import { runScenarios } from './run.js';
import { FULL_SETTINGS, type Settings } from './scenario.js';
import { SCENARIOS } from './scenarios/index.js';

const CI_SETTINGS: Settings = {
  ...FULL_SETTINGS,
  // Counts rather than seconds before and after each fault. 100 a second (half the two shards' sender rate
  // limit): enough that a broker SIGKILL nearly always lands while a router's audit batch awaits its confirm,
  // the case that stopped a shard for good until 9d1a29f (at 10 a second CI met it about once in three runs).
  rate: 100,
  leadMs: 0,
  tailMs: 0,
  drainQuietMs: 60_000,
};

describe('npm run faults, CI subset', () => {
  it('a router SIGKILL and a broker SIGKILL + restart lose nothing and duplicate nothing', async () => {
    const wanted = ['router-kill', 'broker-kill'];
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
