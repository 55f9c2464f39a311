/**
 * startBrokers: N independent TLS-only RabbitMQ nodes (not a cluster) from
 * the machine's RabbitMQ, each with its own name, data, config and ports,
 * sharing one private epmd, one CRL directory and one harness directory.
 * What runs afterwards (restart, renewal, stop) is BrokerHarness's.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile, readdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { assertValidId, DmrError } from '@dmr/core';
import { CrlKeeper, LOOPBACK, NODE_HOST, trustBundleFor } from '@dmr/broker';
import { registerCleanup, unregisterCleanup, type Cleanable } from './cleanup.js';
import { startEpmd } from './epmd.js';
import { BrokerHarness, crlRecord, progressOf, type StartBrokersOptions } from './harness.js';
import { harnessPaths, nodePaths, nodeTlsFiles, STATE_FILE_NAME, type HarnessPaths } from './layout.js';
import { awaitNodeReady, envForNode, launchNode, type LaunchedNode } from './node.js';
import { ADMIN_USERNAME, renderAdvancedConfig, renderEnabledPlugins, renderRabbitmqConf } from './node-config.js';
import { reservePorts, type NodePorts } from './ports.js';
import { isRunning, processRef } from './processes.js';
import { locateRabbitmq } from './rabbitmq-install.js';
import { readState, writeState, type HarnessState } from './state.js';
import { anyRunning, harnessProcesses, killFromStateSync } from './teardown.js';
import { spawnWatchdog } from './watchdog.js';

const DEFAULT_PROCESS_CRL_VALIDITY_MS = 60 * 60 * 1000;
const DEFAULT_DETACHED_CRL_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000;
const DEFAULT_SERVER_CERT_TTL_MS = 7 * 24 * 60 * 60 * 1000;
const MAX_NODES = 16;

export function nodeNames(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-broker-${i + 1}`);
}

async function prepareDirectory(paths: HarnessPaths): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(paths.dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (entries.length > 0 && !entries.includes(STATE_FILE_NAME)) {
    throw new DmrError('ALREADY_EXISTS', `${paths.dir} is not empty and holds no ${STATE_FILE_NAME}`, {
      hint: 'give an empty or new directory; the harness wipes its directory on start and will not risk yours',
      details: { dir: paths.dir },
    });
  }
  if (entries.includes(STATE_FILE_NAME)) {
    const previous = await readState(paths.dir);
    // A start still under way in another process has not recorded every PID yet.
    const starting = previous.status === 'starting' && isRunning(previous.owner);
    if (starting || anyRunning(previous)) {
      const running = harnessProcesses(previous).filter((entry) => entry.running);
      throw new DmrError('BROKER_ALREADY_RUNNING', `brokers started from ${paths.dir} are still running`, {
        hint: `stop them first: dmr broker stop --dir ${paths.dir}`,
        details: { dir: paths.dir, running },
      });
    }
  }
  // Every start is a fresh broker: no queues, users or messages survive from the last run.
  for (const path of [paths.home, paths.nodesDir, paths.crlDir, paths.clientsDir]) {
    await rm(path, { recursive: true, force: true });
  }
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  await mkdir(paths.home, { mode: 0o700 });
  await mkdir(paths.nodesDir, { mode: 0o700 });
}

export async function startBrokers(options: StartBrokersOptions): Promise<BrokerHarness> {
  const count = options.nodes ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > MAX_NODES) {
    throw new DmrError('INVALID_ARGUMENT', `nodes must be a whole number from 1 to ${MAX_NODES}, not ${count}`);
  }
  const prefix = options.namePrefix ?? 'dmr';
  const names = nodeNames(prefix, count);
  for (const name of names) assertValidId(name, 'node name');
  const lifetime = options.lifetime ?? 'process';
  const progress = progressOf(options);
  const install = locateRabbitmq(options.rabbitmqLibDir);
  const dir = resolve(options.dir);
  const paths = harnessPaths(dir);
  const ca = options.ca;
  const owner = processRef(process.pid);
  if (!owner) throw new DmrError('INTERNAL', 'cannot read /proc/self/stat (the harness needs Linux /proc)');

  progress({ phase: 'prepare', message: `preparing ${dir} (RabbitMQ ${install.version})` });
  await prepareDirectory(paths);
  await writeFile(paths.cookieFile, randomBytes(24).toString('hex'), { mode: 0o400 });
  await writeFile(paths.envFile, '');
  const adminPassword = randomBytes(24).toString('hex');
  await writeFile(paths.adminPasswordFile, `${adminPassword}\n`, { mode: 0o600 });
  await writeFile(paths.trustBundleFile, trustBundleFor(ca));

  const reservation = await reservePorts(count);
  const now = new Date().toISOString();
  const state: HarnessState = {
    version: 1,
    dir,
    status: 'starting',
    lifetime,
    owner,
    startedAt: now,
    updatedAt: now,
    rabbitmq: { version: install.version, sbinDir: install.sbinDir },
    trustDomain: ca.trustDomain,
    epmd: { port: reservation.ports.epmd, process: null },
    watchdog: null,
    admin: { username: ADMIN_USERNAME, passwordFile: paths.adminPasswordFile },
    trustBundleFile: paths.trustBundleFile,
    crl: { dir: paths.crlDir, file: null, nextUpdate: null },
    nodes: names.map((name, index) => {
      const nodename = `${name}@${NODE_HOST}`;
      return {
        name,
        nodename,
        ports: reservation.ports.nodes[index] as NodePorts,
        paths: nodePaths(dir, name, nodename),
        shell: null,
        beam: null,
        bootMs: null,
        certificate: { serial: '', notAfter: '', fingerprintSha256: '' },
        tls: nodeTlsFiles(dir, nodePaths(dir, name, nodename)),
      };
    }),
    error: null,
  };

  // Until the harness object exists, a crash or Ctrl-C must kill whatever was spawned, in every
  // lifetime: half-started nodes are of no use, and without a listener a signal kills this
  // process without any 'exit' hook.
  let guardFired = false;
  const killBoot = (reason: string): void => {
    if (guardFired) return;
    guardFired = true;
    killFromStateSync(state, reason, { includeWatchdog: true });
    reservation.releaseSync();
  };
  const bootGuard: Cleanable = {
    stopForSignal: async () => killBoot('interrupted during boot'),
    killNowSync: killBoot,
  };
  registerCleanup(bootGuard, { signals: true });

  const keeper = new CrlKeeper({
    crlDir: paths.crlDir,
    ca,
    validityMs:
      options.crlValidityMs ??
      (lifetime === 'process' ? DEFAULT_PROCESS_CRL_VALIDITY_MS : DEFAULT_DETACHED_CRL_VALIDITY_MS),
    refreshMs: options.crlRefreshMs,
    onRefreshed: (installed) =>
      progress({
        phase: 'crl-refresh',
        message: `re-issued CRL (next update ${installed.nextUpdate?.toISOString() ?? 'none'})`,
      }),
    onRefreshFailed: (error) =>
      progress({ phase: 'crl-refresh-failed', message: `CRL refresh failed, will retry: ${String(error)}` }),
  });
  const launched = new Map<string, LaunchedNode>();
  const probeMaterial = new Map<string, { certificatePem: string; privateKeyPem: string }>();
  try {
    await writeState(state);
    progress({ phase: 'certificates', message: `issuing ${count} server certificate(s) from the CA` });
    const issued = await Promise.all(
      state.nodes.map((node) =>
        ca.issueWithKey({
          kind: 'node',
          id: node.name,
          dns: [NODE_HOST],
          ips: [LOOPBACK],
          ttlMs: options.serverCertificateTtlMs ?? DEFAULT_SERVER_CERT_TTL_MS,
        }),
      ),
    );
    state.nodes.forEach((node, index) => {
      const certificate = issued[index];
      if (!certificate) return;
      node.certificate = {
        serial: certificate.serial,
        notAfter: certificate.notAfter.toISOString(),
        fingerprintSha256: certificate.fingerprintSha256,
      };
      probeMaterial.set(node.name, { certificatePem: certificate.chainPem, privateKeyPem: certificate.privateKeyPem });
    });
    for (const node of state.nodes) {
      const material = probeMaterial.get(node.name);
      if (!material) continue;
      await mkdir(node.paths.root, { recursive: true, mode: 0o700 });
      await mkdir(dirname(node.paths.certificateFile), { mode: 0o700 });
      await writeFile(node.paths.certificateFile, material.certificatePem);
      await writeFile(node.paths.keyFile, material.privateKeyPem, { mode: 0o600 });
      const input = {
        ports: node.ports,
        paths: node.paths,
        trustBundleFile: paths.trustBundleFile,
        crlDir: paths.crlDir,
        adminPassword,
        ...(options.maxMessageBytes === undefined ? {} : { maxMessageBytes: options.maxMessageBytes }),
      };
      await writeFile(node.paths.configFile, renderRabbitmqConf(input), { mode: 0o600 });
      await writeFile(node.paths.advancedConfigFile, renderAdvancedConfig(input));
      await writeFile(node.paths.enabledPluginsFile, renderEnabledPlugins());
    }

    // Before boot: with {crl_check, peer} a missing CRL refuses every client, the readiness probe included.
    keeper.record = async (installed) => {
      state.crl = crlRecord(paths.crlDir, installed);
      await writeState(state);
    };
    const crl = await keeper.refresh();
    if (lifetime === 'process') keeper.start();
    progress({
      phase: 'crl',
      message: `installed CRL ${crl.fileName} (next update ${state.crl.nextUpdate ?? 'none'})`,
    });

    state.epmd.process = await startEpmd(install.epmd, state.epmd.port, paths.epmdLog);
    progress({
      phase: 'epmd',
      message: `private epmd on 127.0.0.1:${state.epmd.port} (pid ${state.epmd.process.pid})`,
    });
    if (lifetime === 'process' && (options.watchdog ?? true)) {
      state.watchdog = spawnWatchdog(dir, owner, paths.watchdogLog);
    }
    await writeState(state);

    const abort = new AbortController();
    const startedAt = Date.now();
    for (const node of state.nodes) {
      const child = launchNode(install.server, envForNode(state, node), node);
      launched.set(node.name, child);
      node.shell = child.shell;
    }
    await writeState(state);
    progress({ phase: 'boot', message: `booting ${state.nodes.map((node) => node.name).join(', ')}` });

    await Promise.all(
      state.nodes.map(async (node) => {
        const material = probeMaterial.get(node.name);
        const child = launched.get(node.name);
        if (!material || !child) throw new DmrError('INTERNAL', `${node.name} was not launched`);
        try {
          const result = await awaitNodeReady({
            epmdPort: state.epmd.port,
            node,
            launched: child,
            startedAt,
            timeoutMs: options.bootTimeoutMs ?? 90_000,
            signal: abort.signal,
            probe: { port: node.ports.amqps, caPem: trustBundleFor(ca), ...material },
            onPhase: (message) => progress({ phase: 'boot', node: node.name, message, ms: Date.now() - startedAt }),
          });
          node.beam = result.beam;
          node.bootMs = result.bootMs;
          await writeState(state);
          progress({
            phase: 'ready',
            node: node.name,
            message: `ready on amqps://localhost:${node.ports.amqps} (${result.probe.protocol ?? 'TLS'}) after ${result.bootMs} ms`,
            ms: result.bootMs,
          });
          return result;
        } catch (error) {
          abort.abort();
          throw error;
        }
      }),
    );
    state.status = 'running';
    await writeState(state);
  } catch (error) {
    keeper.stop();
    state.error = error instanceof Error ? (error.message.split('\n')[0] ?? null) : String(error);
    killFromStateSync(state, state.error ?? 'start failed', { includeWatchdog: true });
    state.status = 'failed';
    await writeState(state).catch(() => undefined);
    throw error;
  } finally {
    await reservation.release();
    unregisterCleanup(bootGuard);
  }

  const harness = new BrokerHarness(state, keeper, ca, adminPassword, options);
  for (const [name, child] of launched) {
    void child.exited.then((exit) => harness.nodeExited(name, exit));
  }
  return harness;
}
