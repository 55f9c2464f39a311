/**
 * BrokerHarness: the running brokers startBrokers (start-brokers.ts) made —
 * connections, CRL and certificate installation, restarts, stop and cleanup.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DmrError } from '@dmr/core';
import type { CertificateAuthority } from '@dmr/pki';
import type { ChannelModel } from 'amqplib';
import { registerCleanup, unregisterCleanup, type Cleanable } from './cleanup.js';
import type { CrlKeeper } from '@dmr/broker';
import {
  connectWithCertificate,
  installBrokerTls,
  ManagementClient,
  trustBundleFor,
  type CertificateConnectOptions,
  type InstalledCrl,
  type ServerCertificateInfo,
} from '@dmr/broker';
import { clearPemCacheInDir } from './control.js';
import { epmdNames } from './epmd.js';
import { awaitNodeReady, envForNode, killNode, launchNode, stopNode, type NodeExit } from './node.js';
import { ADMIN_USERNAME } from './node-config.js';
import { nodeView, type BrokerNode } from './node-view.js';
import { isRunning } from './processes.js';
import { readState, readStateSync, writeState, type HarnessState, type Lifetime, type NodeState } from './state.js';
import { killFromStateSync, stopFromState, type StopReport } from './teardown.js';

/** What the harness needs from `@dmr/pki`'s CertificateAuthority. */
export type HarnessCa = Pick<
  CertificateAuthority,
  'trustDomain' | 'trustBundlePem' | 'intermediateCertificatePem' | 'issueWithKey' | 'createCrl'
>;

export type HarnessPhase =
  | 'prepare'
  | 'certificates'
  | 'crl'
  | 'epmd'
  | 'boot'
  | 'ready'
  | 'stop'
  | 'restart'
  | 'tls-install'
  | 'crl-refresh'
  | 'crl-refresh-failed';

export interface HarnessProgress {
  phase: HarnessPhase;
  node?: string;
  message: string;
  ms?: number;
}

export interface NodeExitEvent extends NodeExit {
  node: string;
  /** True when a stop (here or from another process) was under way. */
  expected: boolean;
}

export interface StartBrokersOptions {
  /** Harness directory; created (0700) if missing. Everything the nodes write stays inside. */
  dir: string;
  /** Independent nodes to start (default 1). */
  nodes?: number;
  ca: HarnessCa;
  /** Node names are `<prefix>-broker-<n>`, also the ids of their server certificates (default `dmr`). */
  namePrefix?: string;
  /** How long each CRL the harness issues is valid (default 1 h; 7 days when detached). */
  crlValidityMs?: number;
  /** Fixed CRL re-issue interval; default: half the installed CRL's remaining validity. */
  crlRefreshMs?: number;
  /** Lifetime of the server certificates (default 7 days). */
  serverCertificateTtlMs?: number;
  /**
   * 'process' (default): the nodes die with this process (exit/signal hooks,
   * orphan watchdog, CRL refresh timer). 'detached': they outlive it and
   * nothing refreshes the CRL (`dmr broker start` without --foreground).
   */
  lifetime?: Lifetime;
  /** With 'process' lifetime: stop gracefully on SIGINT/SIGTERM/SIGHUP (default true). */
  handleSignals?: boolean;
  /** With 'process' lifetime: start the orphan watchdog (default true). */
  watchdog?: boolean;
  /** Per-node limit from spawning to ready (default 90 s). */
  bootTimeoutMs?: number;
  onProgress?: (event: HarnessProgress) => void;
  /** Called when a node's server process ends, expectedly or not. */
  onNodeExit?: (event: NodeExitEvent) => void;
  /** Where rabbitmq_server-<version> directories live (default /usr/lib/rabbitmq/lib). */
  rabbitmqLibDir?: string;
  /**
   * RabbitMQ's `max_message_size`: the node's `limits.maxMessageBytes`
   * (default DEFAULT_MAX_MESSAGE_BYTES, 1 MiB, the CentOps default).
   */
  maxMessageBytes?: number;
}

export interface RestartReport {
  /** From the stop request until the node passed the readiness check again. */
  downMs: number;
  /** False when the node was killed (asked for, or because it did not shut down by itself). */
  graceful: boolean;
  bootMs: number;
}

export interface RestartOptions {
  /**
   * SIGKILL the node's processes instead of `rabbitmqctl stop`: a crash or
   * power loss as peers see it (no connection.close, their TCP connections
   * just break; unsynced writes may be lost). Default false.
   */
  kill?: boolean;
}

export function crlRecord(dir: string, installed: InstalledCrl): HarnessState['crl'] {
  return { dir, file: installed.path, nextUpdate: installed.nextUpdate?.toISOString() ?? null };
}

export function progressOf(options: StartBrokersOptions): (event: HarnessProgress) => void {
  return (event) => {
    try {
      options.onProgress?.(event);
    } catch {
      // A progress printer must not break a boot.
    }
  };
}

/** Clears what a previous run left; refuses directories that were never a harness. */
export interface BrokerConnectOptions extends Omit<CertificateConnectOptions, 'port' | 'caPem'> {
  /** Index of the node (default 0). */
  node?: number;
}

/** A running set of harness nodes. In 'process' lifetime, stop() it (tests: in `after`). */
export class BrokerHarness implements Cleanable {
  readonly dir: string;
  readonly adminUsername = ADMIN_USERNAME;
  readonly lifetime: Lifetime;
  #state: HarnessState;
  #nodes: readonly BrokerNode[];
  #trustBundlePem: string;
  readonly #crl: CrlKeeper;
  readonly #adminPassword: string;
  readonly #options: StartBrokersOptions;
  #stopping: Promise<StopReport> | undefined;
  #released = false;
  /** Nodes whose server process is being replaced: their old process's exit is expected. */
  readonly #restarting = new Set<string>();
  /** Serialises this object's read-modify-write cycles of harness.json. */
  #stateWrites: Promise<void> = Promise.resolve();

  /** Use startBrokers(). */
  constructor(state: HarnessState, crl: CrlKeeper, ca: HarnessCa, adminPassword: string, options: StartBrokersOptions) {
    this.#state = state;
    this.#crl = crl;
    crl.record = (installed) => this.#recordCrl(installed);
    this.#adminPassword = adminPassword;
    this.#options = options;
    this.dir = state.dir;
    this.lifetime = state.lifetime;
    this.#nodes = state.nodes.map((node) => nodeView(node, state.dir));
    this.#trustBundlePem = trustBundleFor(ca);
    if (state.lifetime === 'process') registerCleanup(this, { signals: options.handleSignals ?? true });
  }

  get state(): Readonly<HarnessState> {
    return this.#state;
  }

  /** A fresh view after every restart or certificate installation (new PID, serial). */
  get nodes(): readonly BrokerNode[] {
    return this.#nodes;
  }

  /** What the nodes trust for client certificates, and what connect() trusts for the server's. */
  get trustBundlePem(): string {
    return this.#trustBundlePem;
  }

  node(index = 0): BrokerNode {
    const node = this.nodes[index];
    if (!node)
      throw new DmrError('INVALID_ARGUMENT', `there is no node ${index} (the harness has ${this.nodes.length})`);
    return node;
  }

  management(index = 0): ManagementClient {
    return new ManagementClient({
      baseUrl: this.node(index).managementUrl,
      username: ADMIN_USERNAME,
      password: this.#adminPassword,
    });
  }

  /** An amqplib connection to a node with a client certificate (EXTERNAL). */
  connect(options: BrokerConnectOptions): Promise<ChannelModel> {
    const { node = 0, ...rest } = options;
    return connectWithCertificate({ ...rest, port: this.node(node).amqpsPort, caPem: this.trustBundlePem });
  }

  /**
   * Installs a CRL now, e.g. right after a revocation: new handshakes see it
   * within milliseconds. The refresh timer re-plans around its nextUpdate.
   */
  installCrl(pem: string): Promise<InstalledCrl> {
    return this.#crl.install(pem);
  }

  /** Re-issues the CA's CRL and installs it. */
  refreshCrl(): Promise<InstalledCrl> {
    return this.#crl.refresh();
  }

  /**
   * Replaces node `index`'s server certificate while it runs: the next TLS
   * handshake presents the new one (the node reads its PEM files on every
   * handshake), live connections keep theirs. Validated before anything is
   * written. Same as installBrokerTls() on `node(index).tls`, plus the record
   * in harness.json.
   *
   * The readiness check of a later restartNode() uses this certificate as a
   * client certificate too: give one issued by @dmr/pki for kind 'node'.
   */
  async installServerCertificate(
    index: number,
    material: { chainPem: string; privateKeyPem: string },
  ): Promise<ServerCertificateInfo> {
    this.#assertUsable('install a server certificate');
    const node = this.#nodeState(index);
    const { certificate } = await installBrokerTls({
      tls: this.node(index).tls,
      chainPem: material.chainPem,
      privateKeyPem: material.privateKeyPem,
    });
    if (!certificate) throw new DmrError('INTERNAL', 'installBrokerTls returned no certificate');
    const record = {
      serial: certificate.serial,
      notAfter: certificate.notAfter,
      fingerprintSha256: certificate.fingerprintSha256,
    };
    await this.#updateNode(node.name, { certificate: record });
    this.#progress({
      phase: 'tls-install',
      node: node.name,
      message: `installed server certificate ${certificate.serial} (until ${certificate.notAfter})`,
    });
    return certificate;
  }

  /**
   * Replaces the trust bundle every node verifies client certificates
   * against (one file for the whole harness) while they run, then makes
   * each node re-read it (`ssl:clear_pem_cache()`, ≈0.4 s per CLI call). For a CA
   * rollover, pass old and new roots together; a client of the new CA also
   * needs that CA's CRL in `node().tls.crlDir` (installCrlFile), since every
   * client certificate is checked against its issuer's CRL.
   */
  async installTrustBundle(pem: string): Promise<{ certificates: number }> {
    this.#assertUsable('install a trust bundle');
    const { trustBundle } = await installBrokerTls({
      tls: this.node(0).tls,
      trustBundlePem: pem,
      reload: () => clearPemCacheInDir(this.dir),
    });
    if (!trustBundle) throw new DmrError('INTERNAL', 'installBrokerTls returned no trust bundle');
    this.#trustBundlePem = `${pem.trim()}\n`;
    this.#progress({
      phase: 'tls-install',
      message: `installed a trust bundle of ${trustBundle.certificates} certificate(s)`,
    });
    return trustBundle;
  }

  /**
   * Restarts node `index` the way a broker host restart looks to clients: a
   * real stop of the node's server process (`rabbitmqctl stop`, so every
   * client connection is closed with 320 CONNECTION_FORCED), then a new
   * server process on the same data directory, ports, configuration and TLS
   * files. Durable queues, their messages, users and permissions survive.
   * Resolves once the node passed the same readiness check as at start (a
   * mutual-TLS handshake answered by AMQP connection.start). The new PIDs are
   * in harness.json before the node is ready, so the watchdog and exit hooks
   * cover the new process at every moment. With `{ kill: true }` the old
   * process is SIGKILLed instead (a crash: connections break unannounced).
   */
  async restartNode(index = 0, options: RestartOptions = {}): Promise<RestartReport> {
    this.#assertUsable('restart a node');
    const node = this.#nodeState(index);
    if (this.#restarting.has(node.name)) {
      throw new DmrError('CONFLICT', `${node.name} is already being restarted`);
    }
    if (!isRunning(node.beam)) {
      throw new DmrError('BROKER_NOT_RUNNING', `${node.name} is not running, so it cannot be restarted`, {
        hint: 'a harness node that died is not brought back; start a new harness',
        details: { node: node.nodename },
      });
    }
    this.#restarting.add(node.name);
    const started = Date.now();
    try {
      const sbin = this.#state.rabbitmq.sbinDir;
      this.#progress({
        phase: 'restart',
        node: node.name,
        message: `${options.kill ? 'killing' : 'stopping'} ${node.name}`,
      });
      const stopped = options.kill ? await killNode(node) : await stopNode(node);
      await this.#awaitEpmdForgets(node.nodename);

      // A stop() that began while this one was stopping the node must not find a node started after it looked.
      this.#assertUsable('restart a node');
      const env = envForNode(this.#state, node);
      const bootStarted = Date.now();
      const child = launchNode(join(sbin, 'rabbitmq-server'), env, node);
      await this.#updateNode(node.name, { shell: child.shell, beam: null });
      void child.exited.then((exit) => this.nodeExited(node.name, exit));
      this.#progress({ phase: 'restart', node: node.name, message: `booting ${node.name} again` });

      const tls = this.node(index).tls;
      // The files, not what the harness started with: a certificate or bundle installed since is what serves now.
      const [certificatePem, privateKeyPem, caPem] = await Promise.all([
        readFile(tls.certFile, 'utf8'),
        readFile(tls.keyFile, 'utf8'),
        readFile(tls.caFile, 'utf8'),
      ]);
      const ready = await awaitNodeReady({
        epmdPort: this.#state.epmd.port,
        node: this.#nodeState(index),
        launched: child,
        startedAt: bootStarted,
        timeoutMs: this.#options.bootTimeoutMs ?? 90_000,
        probe: { port: node.ports.amqps, caPem, certificatePem, privateKeyPem },
        onPhase: (message) =>
          this.#progress({ phase: 'restart', node: node.name, message, ms: Date.now() - bootStarted }),
      });
      await this.#updateNode(node.name, { beam: ready.beam, bootMs: ready.bootMs });
      const downMs = Date.now() - started;
      this.#progress({
        phase: 'ready',
        node: node.name,
        message: `ready again after ${downMs} ms down (boot ${ready.bootMs} ms)`,
        ms: downMs,
      });
      return { downMs, graceful: stopped.graceful, bootMs: ready.bootMs };
    } finally {
      this.#restarting.delete(node.name);
    }
  }

  #assertUsable(what: string): void {
    if (this.#stopping || this.#released || this.#state.status === 'stopped') {
      throw new DmrError('BROKER_NOT_RUNNING', `cannot ${what}: the harness in ${this.dir} was stopped or released`);
    }
  }

  #nodeState(index: number): NodeState {
    const node = this.#state.nodes[index];
    if (!node) {
      throw new DmrError('INVALID_ARGUMENT', `there is no node ${index} (the harness has ${this.#state.nodes.length})`);
    }
    return node;
  }

  /**
   * After a stop the old node's epmd registration goes away with its
   * connection; a new node registering under the same name before that would
   * be refused, and the readiness check would mistake the old entry for the new node.
   */
  async #awaitEpmdForgets(nodename: string): Promise<void> {
    const shortName = nodename.split('@')[0];
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const names = await epmdNames(this.#state.epmd.port).catch(() => []);
      if (!names.some((entry) => entry.name === shortName)) return;
      await sleep(100);
    }
  }

  /** Updates one node in memory (for exit hooks) and in harness.json (for other processes and the watchdog). */
  #updateNode(name: string, patch: Partial<NodeState>): Promise<void> {
    const nodes = this.#state.nodes.map((node) => (node.name === name ? { ...node, ...patch } : node));
    this.#state = { ...this.#state, nodes };
    this.#nodes = nodes.map((node) => nodeView(node, this.dir));
    return this.#patchStateFile((onDisk) => ({
      ...onDisk,
      nodes: onDisk.nodes.map((node) => (node.name === name ? { ...node, ...patch } : node)),
    }));
  }

  /**
   * Re-reads before writing: another process (dmr broker stop/crl) may have
   * changed the file; only the fields this harness owns are replaced.
   */
  #patchStateFile(patch: (onDisk: HarnessState) => HarnessState): Promise<void> {
    const write = this.#stateWrites.then(async () => {
      const onDisk = await readState(this.dir).catch(() => undefined);
      if (onDisk) await writeState(patch(onDisk));
    });
    this.#stateWrites = write.catch(() => undefined);
    return write;
  }

  async #recordCrl(installed: InstalledCrl): Promise<void> {
    const crl = crlRecord(this.#state.crl.dir, installed);
    this.#state = { ...this.#state, crl };
    await this.#patchStateFile((onDisk) => ({ ...onDisk, crl }));
  }

  #progress(event: HarnessProgress): void {
    progressOf(this.#options)(event);
  }

  /** Stops every node with `rabbitmqctl stop`, then epmd and the watchdog. Idempotent. */
  stop(): Promise<StopReport> {
    if (!this.#stopping) {
      this.#crl.stop();
      this.#progress({ phase: 'stop', message: `stopping ${this.nodes.map((node) => node.name).join(', ')}` });
      this.#stopping = (async () => {
        await this.#stateWrites;
        const onDisk = await readState(this.dir).catch(() => this.#state);
        const report = await stopFromState(onDisk);
        this.#state = { ...this.#state, status: 'stopped' };
        unregisterCleanup(this);
        this.#progress({ phase: 'stop', message: `stopped in ${report.ms} ms`, ms: report.ms });
        return report;
      })();
    }
    return this.#stopping;
  }

  /**
   * Leaves the nodes running and forgets them: no hooks, no timer. The CLI's
   * detached mode uses this after a 'detached' start.
   */
  release(): void {
    this.#released = true;
    this.#crl.stop();
    unregisterCleanup(this);
  }

  /** @internal */
  async stopForSignal(): Promise<void> {
    await this.stop();
  }

  /** @internal */
  killNowSync(reason: string): void {
    if (this.#state.status === 'stopped') return;
    this.#crl.stop();
    killFromStateSync(this.#state, reason, { includeWatchdog: true });
    this.#state = { ...this.#state, status: 'stopped' };
    unregisterCleanup(this);
  }

  /** @internal */
  nodeExited(name: string, exit: NodeExit): void {
    let expected = this.#stopping !== undefined || this.#released || this.#restarting.has(name);
    if (!expected) {
      // A stop from another process (dmr broker stop) is expected too.
      try {
        const { status } = readStateSync(this.dir);
        expected = status === 'stopping' || status === 'stopped';
      } catch {
        expected = false;
      }
    }
    this.#options.onNodeExit?.({ node: name, ...exit, expected });
  }
}
