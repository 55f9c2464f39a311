/**
 * What a fault scenario is: the world it needs (how many nodes, routers, a
 * shifted clock), the traffic it watches (SDK clients or HTTP bridges), and
 * `run`, which injects the fault while the traffic flows and says when the
 * fault ended. The runner (run.ts) does everything else the same way for
 * every scenario: start the world, send, drain, count.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DmrError } from '@dmr/core';
import type { BridgeTraffic } from './bridge-traffic.js';
import type { SdkTraffic } from './traffic.js';
import type { World } from './world.js';

export interface WorldSpec {
  nodes: number;
  routers?: number;
}

/** Durations the scenarios use; the CI subset shortens them and says so in the table's notes. */
export interface Settings {
  /** Messages a second while a scenario runs. */
  rate: number;
  /** Sending before the fault, and after it ends. */
  leadMs: number;
  tailMs: number;
  /** How long CentOps stays down (the on-demand default is 5 minutes). */
  centopsDownMs: number;
  /** How long the bridge's endpoint stays down. */
  endpointDownMs: number;
  /** How long a RabbitMQ alarm is held. */
  alarmMs: number;
  /** How long a mesh link stays cut. */
  partitionMs: number;
  /** How long a shifted-clock node carries traffic. */
  clockMs: number;
  /** The drain gives up after nothing changed this long (what is left is lost). */
  drainQuietMs: number;
  /** How long the short-lived client certificate of `cert-expiry` lives. */
  certTtlMs: number;
}

export const FULL_SETTINGS: Settings = {
  rate: 20,
  leadMs: 5_000,
  tailMs: 5_000,
  centopsDownMs: 300_000,
  endpointDownMs: 60_000,
  alarmMs: 20_000,
  partitionMs: 30_000,
  clockMs: 20_000,
  drainQuietMs: 90_000,
  certTtlMs: 90_000,
};

interface BaseContext {
  world: World;
  settings: Settings;
  /** A progress line on stderr. */
  say(text: string): void;
  /** Resolves once `count` more messages reached the receiving application: the stream flows. */
  flowing(count?: number, timeoutMs?: number): Promise<void>;
}

export interface SdkContext extends BaseContext {
  traffic: SdkTraffic;
  /** The identity `sender` made, if the scenario has one. */
  sender: SenderIdentity | undefined;
}

export interface BridgeContext extends BaseContext {
  traffic: BridgeTraffic;
}

export interface ScenarioResult {
  /** When the fault ended (the kill of a process that heals itself; the restart or clear of an outage). */
  healedAt: number;
  /** What the table's note says (what was done, what was seen). */
  note?: string;
}

/** The sending client's certificate, when a scenario needs other than the one it enrolled with. */
export interface SenderIdentity {
  certFile: string;
  keyFile: string;
  notAfter: Date;
  /** The sender renews through CentOps here. */
  renewApiUrl: string;
}

interface BaseScenario {
  name: string;
  title: string;
  world: WorldSpec;
  /** SDK traffic only: the sender connects with this identity (made before the traffic starts). */
  sender?: (world: World, settings: Settings) => Promise<SenderIdentity>;
  /** Only as root (network namespaces). */
  needsRoot?: boolean;
}

export type Scenario =
  | (BaseScenario & { traffic: 'sdk'; run(context: SdkContext): Promise<ScenarioResult> })
  | (BaseScenario & { traffic: 'bridge'; run(context: BridgeContext): Promise<ScenarioResult> });

/** Polls `check` every 100 ms until it holds; throws FAULT_SCENARIO_FAILED naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new DmrError('FAULT_SCENARIO_FAILED', `${what}: not within ${Math.round(timeoutMs / 1000)} s`, {
        hint: 'run it again with --keep and read the logs in the directory it names',
      });
    }
    await sleep(100);
  }
}

/** The fault's own duration (an outage held on purpose): the one place a scenario waits on the clock. */
export function hold(ms: number): Promise<void> {
  return sleep(ms);
}
