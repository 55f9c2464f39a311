/**
 * One node's clock off by ±10 minutes (clock-shift.ts preloaded into its
 * agent and routers), the clients' and the other node's clocks right.
 * Traffic goes from bot-a on the shifted node-1 to bot-b on node-2. There
 * is no heal: the row shows what DMR does with a node whose clock is wrong
 * — deliver, or refuse with a report (the note lists the reasons). Lost
 * must still be 0: a refusal is reported, never silent.
 */
import { hold, type Scenario, type SdkContext, type ScenarioResult } from '../scenario.js';

const TEN_MINUTES = 600_000;

async function run({ say, settings, traffic }: SdkContext, sign: string): Promise<ScenarioResult> {
  say(`traffic for ${settings.clockMs / 1000} s through node-1 with its clock ${sign}10 min`);
  const startedAt = Date.now();
  await hold(settings.clockMs);
  const { delivered } = traffic.ledger.counts();
  return {
    healedAt: startedAt,
    note: `node-1's clock ${sign}10 min (Date only; TLS and the broker use the real clock); ${delivered} delivered while shifted`,
  };
}

export const clockAhead: Scenario = {
  name: 'clock-ahead',
  title: 'node clock +10 min',
  world: { nodes: 2, clock: { node: 'node-1', offsetMs: TEN_MINUTES } },
  traffic: 'sdk',
  run: (context) => run(context, '+'),
};

export const clockBehind: Scenario = {
  name: 'clock-behind',
  title: 'node clock −10 min',
  world: { nodes: 2, clock: { node: 'node-1', offsetMs: -TEN_MINUTES } },
  traffic: 'sdk',
  run: (context) => run(context, '−'),
};
