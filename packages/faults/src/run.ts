/**
 * Runs scenarios one after the other, the same way for each: a world (shared
 * by consecutive scenarios that need the same one; a fresh one after a
 * scenario failed), the traffic, a lead time, the fault, a tail, then stop
 * sending and drain until everything accepted was delivered or reported, or
 * nothing moved for `drainQuietMs`. The row is read from the ledger.
 */
import { isDmrError } from '@dmr/core';
import type { MeshProgress } from '@dmr/mesh';
import { BridgeTraffic } from './bridge-traffic.js';
import { zeroCounts } from './ledger.js';
import type { Row } from './report.js';
import { hold, until, type Scenario, type Settings } from './scenario.js';
import { drain, SdkTraffic, type Traffic } from './traffic.js';
import { World } from './world.js';

export interface RunOptions {
  settings: Settings;
  /** Progress lines (stderr). */
  say: (text: string) => void;
  /** The mesh's start steps (stderr). */
  progress: MeshProgress;
  /** Keep each world's directory (logs) after it stopped. */
  keep?: boolean;
  /** Called with each row as soon as it is known. */
  onRow?: (row: Row) => void;
}

async function startWorld(scenario: Scenario, options: RunOptions): Promise<World> {
  options.say(
    `world for ${scenario.name}: ${scenario.world.nodes} node(s) in a line, ${scenario.world.routers ?? 1} router(s) each`,
  );
  return World.start({
    label: scenario.name,
    nodes: scenario.world.nodes,
    ...(scenario.world.routers === undefined ? {} : { routers: scenario.world.routers }),
    progress: options.progress,
    ...(options.keep === undefined ? {} : { keep: options.keep }),
  });
}

function describeError(error: unknown): string {
  if (isDmrError(error)) return `${error.code}: ${error.message}${error.hint === undefined ? '' : ` (${error.hint})`}`;
  return error instanceof Error ? error.message : String(error);
}

function summary(traffic: Traffic): string {
  const parts: string[] = [];
  const reasons = traffic.ledger.reportReasons();
  if (reasons.length > 0) parts.push(`reports: ${reasons.map(([reason, count]) => `${reason} ×${count}`).join(', ')}`);
  const refused = traffic.ledger.notAcceptedReasons();
  if (refused.length > 0) {
    parts.push(`not accepted: ${refused.map(([reason, count]) => `${reason} ×${count}`).join(', ')}`);
  }
  if (traffic instanceof BridgeTraffic) {
    const answers = Object.entries(traffic.answers).sort((a, b) => b[1] - a[1]);
    parts.push(`the sending bridge answered ${answers.map(([status, count]) => `${status} ×${count}`).join(', ')}`);
  }
  return parts.join('; ');
}

export async function runScenario(world: World, scenario: Scenario, options: RunOptions): Promise<Row> {
  const { settings, say } = options;
  const from = world.client('bot-a');
  const to = world.client('bot-b');
  const sender = scenario.traffic === 'sdk' ? await scenario.sender?.(world, settings) : undefined;
  const traffic =
    scenario.traffic === 'sdk'
      ? await SdkTraffic.open({
          from: sender === undefined ? from : { ...from, certFile: sender.certFile, keyFile: sender.keyFile },
          to,
          fromUrl: world.amqpsUrl(from.node),
          toUrl: world.amqpsUrl(to.node),
          ...(sender === undefined ? {} : { renewApiUrl: sender.renewApiUrl }),
        })
      : await BridgeTraffic.open({ world, from, to });
  let result: { healedAt: number; note?: string } | undefined;
  let failure: unknown;
  try {
    const flowing = async (count = settings.rate, timeoutMs = 180_000): Promise<void> => {
      const target = traffic.ledger.counts().delivered + count;
      await until(`${count} more messages delivered`, () => traffic.ledger.counts().delivered >= target, timeoutMs);
    };
    traffic.start(settings.rate);
    await flowing(1);
    await hold(settings.leadMs);
    const base = { world, settings, say, flowing };
    result =
      scenario.traffic === 'sdk'
        ? await scenario.run({ ...base, traffic: traffic as SdkTraffic, sender })
        : await scenario.run({ ...base, traffic: traffic as BridgeTraffic });
    await hold(settings.tailMs);
  } catch (error) {
    failure = error;
  }
  try {
    await traffic.stop(60_000);
    say(`${scenario.name}: stopped sending; waiting for ${traffic.ledger.outstanding().length} accepted messages`);
    await drain(traffic, {
      quietMs: settings.drainQuietMs,
      maxMs: 600_000,
      onProgress: (outstanding) => say(`  ${outstanding} still on their way`),
    });
  } finally {
    await traffic.close();
  }
  const counts = traffic.ledger.counts();
  const recovery = result === undefined ? undefined : traffic.ledger.recoveryMs(result.healedAt);
  const notes = [result?.note ?? '', summary(traffic)].filter((part) => part !== '');
  return {
    scenario: scenario.name,
    title: scenario.title,
    via: scenario.traffic,
    ...counts,
    recoveryMs: recovery ?? null,
    note: notes.join('; '),
    ...(failure === undefined ? {} : { error: describeError(failure) }),
  };
}

function failedRow(scenario: Scenario, error: unknown): Row {
  return {
    scenario: scenario.name,
    title: scenario.title,
    via: scenario.traffic,
    ...zeroCounts(),
    recoveryMs: null,
    note: '',
    error: describeError(error),
  };
}

export async function runScenarios(scenarios: readonly Scenario[], options: RunOptions): Promise<Row[]> {
  const rows: Row[] = [];
  let world: World | undefined;
  let worldKey: string | undefined;
  const stopWorld = async (): Promise<void> => {
    const stopping = world;
    world = undefined;
    if (stopping === undefined) return;
    options.say(`stopping the world${options.keep === true ? ` (kept: ${stopping.dir})` : ''}`);
    await stopping.stop().catch((error: unknown) => options.say(`stop failed: ${describeError(error)}`));
  };
  try {
    for (const scenario of scenarios) {
      const key = JSON.stringify(scenario.world);
      if (world !== undefined && key !== worldKey) await stopWorld();
      let row: Row;
      try {
        world ??= await startWorld(scenario, options);
        worldKey = key;
        options.say(`── ${scenario.name}: ${scenario.title}`);
        row = await runScenario(world, scenario, options);
      } catch (error) {
        row = failedRow(scenario, error);
      }
      if (world !== undefined && (row.lost > 0 || row.error !== undefined)) await world.diagnose(options.say);
      // A world a scenario failed in may be half broken: the next one starts afresh.
      if (row.error !== undefined) await stopWorld();
      options.say(
        `${scenario.name}: sent ${row.sent}, confirmed ${row.confirmed}, delivered ${row.delivered}, lost ${row.lost}, duplicates ${row.duplicates}${row.via === 'bridge' ? ` (${row.redeliveries} repeated POSTs)` : ''}${row.error === undefined ? '' : `, FAILED: ${row.error}`}`,
      );
      options.onRow?.(row);
      rows.push(row);
    }
  } finally {
    await stopWorld();
  }
  return rows;
}
