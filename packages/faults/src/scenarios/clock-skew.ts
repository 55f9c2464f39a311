/**
 * One node's clock off by ±10 minutes, the clients' and the other node's
 * right. Once the mesh runs, node-1's agent is restarted with
 * clock-shift.ts preloaded (its routers inherit it), traffic goes from
 * bot-a on node-1 to bot-b on node-2 for `--clock`, then the agent is
 * restarted with the right clock again. The row shows what DMR does with a
 * node whose clock is wrong — deliver, or refuse with a report (the note
 * lists the reasons). Lost must still be 0: a refusal is reported, never
 * silent. Healed = the agent running with the right clock again.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { hold, type Scenario, type SdkContext, type ScenarioResult } from '../scenario.js';

const TEN_MINUTES = 600_000;
const CLOCK_SHIFT = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '..', 'clock-shift.js')).href;

async function run({ world, say, settings, traffic, flowing }: SdkContext, offsetMs: number): Promise<ScenarioResult> {
  const sign = offsetMs > 0 ? '+' : '−';
  await flowing(Math.ceil(settings.rate / 2));
  say(`restart node-1's agent with its clock ${sign}10 min`);
  const right = { NODE_OPTIONS: process.env.NODE_OPTIONS ?? '', DMR_FAULTS_CLOCK_OFFSET_MS: '0' };
  let refused: string | undefined;
  try {
    await world.restartAgent('node-1', {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${CLOCK_SHIFT}`.trim(),
      DMR_FAULTS_CLOCK_OFFSET_MS: String(offsetMs),
    });
  } catch (error) {
    // A node that will not run with a wrong clock is a result, not a broken scenario: bring it back and say so.
    refused = error instanceof Error ? error.message : String(error);
    say(`node-1 did not start with its clock ${sign}10 min: ${refused}`);
  }
  const before = traffic.ledger.counts();
  if (refused === undefined) {
    say(`traffic for ${settings.clockMs / 1000} s through node-1 with its clock ${sign}10 min`);
    await hold(settings.clockMs);
  }
  const during = traffic.ledger.counts();
  say("restart node-1's agent with the right clock");
  await world.restartAgent('node-1', right);
  const healedAt = Date.now();
  await flowing();
  const shifted = `node-1's clock ${sign}10 min (Date only: TLS and the broker use the real clock)`;
  if (refused !== undefined) {
    return { healedAt, note: `${shifted}: the agent refused to start (${refused}); restarted with the right clock` };
  }
  return {
    healedAt,
    note: `${shifted} for ${settings.clockMs / 1000} s: ${during.delivered - before.delivered} delivered, ${during.reported - before.reported} reported meanwhile`,
  };
}

export const clockAhead: Scenario = {
  name: 'clock-ahead',
  title: 'node clock +10 min',
  world: { nodes: 2 },
  traffic: 'sdk',
  run: (context) => run(context, TEN_MINUTES),
};

export const clockBehind: Scenario = {
  name: 'clock-behind',
  title: 'node clock −10 min',
  world: { nodes: 2 },
  traffic: 'sdk',
  run: (context) => run(context, -TEN_MINUTES),
};
