/** What every row's setup gets from the run, and what it hands back. */
import type { BrokerHarness } from '@dmr/broker-harness';
import type { CertificateAuthority } from '@dmr/pki';
import type { BenchOptions, RowId } from './options.js';
import type { Probe } from './probe.js';

export interface BenchContext {
  /** The run's temporary directory. */
  dir: string;
  ca: CertificateAuthority;
  harness: BrokerHarness;
  /** The first broker of rows s, e and f (options.ts brokerPlan). */
  meshBroker: number;
  options: BenchOptions;
  body: Buffer;
  /** A progress line on stderr. */
  log: (message: string) => void;
}

export interface RowDriver {
  row: RowId;
  probe: Probe;
  /** Called before each of the row's points (e.g. rows c and d take turns on one router slot). */
  activate?: () => Promise<void>;
  /** PID of the row's relay or router process, for CPU sampling. */
  workerPid?: () => number | undefined;
  /**
   * The brokers the row's path crosses (default: the first one), summed in
   * the CPU column's "broker" share: a mesh row keeps two or three busy.
   */
  brokerPids?: () => ReadonlyArray<number | null | undefined>;
  /** The row's router processes beyond the one workerPid names, summed into "worker". */
  workerPids?: () => ReadonlyArray<number | undefined>;
}

/** The rows one setup provides, or why it could not. */
export type RowSetup =
  { ok: true; drivers: RowDriver[]; close: () => Promise<void> } | { ok: false; unavailable: string };

/**
 * Unacknowledged deliveries the raw relay (b) and the final consumers may
 * hold: deep enough never to be what limits them, since b is meant as the
 * physical limit of a two-hop relay. The Router keeps its own default
 * (RouterOptions.prefetch) unless --router-prefetch says otherwise: the bench
 * measures the product as it ships.
 */
export const PREFETCH = 500;

/** Which decider the router of rows c/d consults: the signed default pack (c) or allow-all (d). */
export type RouterPolicyMode = 'bundle' | 'bench-only-allow-all';

/** What the router process of rows c/d is started with (router-main.ts). */
export interface RouterChildConfig {
  port: number;
  caPem: string;
  certificatePem: string;
  privateKeyPem: string;
  vhost: string;
  /** The NodeConfig (JSON-compatible). */
  nodeConfig: unknown;
  /** The signed policy bundle and how to verify it. */
  bundle: { archiveBase64: string; trustBundlePem: string; expectedSigner: string };
  /** Where the router's JSON log lines go. */
  logFile: string;
  /** Undefined: the Router's default. */
  prefetch: number | undefined;
  /** False only for the --no-audit experiment. */
  audit: boolean;
  /** The shard's replay journal directory, as a node's state dir holds it; undefined only for --no-replay-journal. */
  replayDir: string | undefined;
  /**
   * The node's key, certificate chain and trust bundle, for the mesh rows:
   * with it the router signs what it forwards and relays what arrives on its
   * mesh ingress (RouterOptions.identity); rows c/d run without.
   */
  identity?: { certificateChainPem: string; privateKeyPem: string; trustBundlePem: string };
}

/** The router process's one command: switch the decider (answers with the router's counters so far). */
export interface RouterCommand {
  policy: RouterPolicyMode;
}
