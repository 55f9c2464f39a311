/**
 * One router process (`dmr node router --config FILE --shard N`, or spawned
 * by `dmr node run`): a Router for one ingress shard, configured from the
 * agent's state dir rather than from the agent itself, so it keeps serving
 * across an agent restart and while CentOps is down.
 *
 * At start it waits for a last good document, verifies it again (signature,
 * node id, bundle digest; the bundle's signature when it is swapped in),
 * applies it and starts consuming. Then it watches the state dir (fs.watch,
 * plus a periodic stat because fs.watch can miss renames on some file
 * systems) and applies each newer revision: the policy bundle first, then
 * the configuration, so a message is never judged by a configuration whose
 * policy is not active yet. A document that does not verify is logged and
 * ignored: the previous one stays.
 *
 * The broker connection uses the node certificate read from disk at each
 * (re)connect, so a renewal by the agent is picked up without a restart,
 * and requires the broker to present this node's own SPIFFE id. The same
 * files (key, certificate chain, trust bundle, and the last CRL) are the
 * router's node identity for the mesh: what it signs forwarded messages
 * with and verifies relayed ones against. They are read again whenever
 * the configuration or one of them changes, and handed to the router.
 *
 * The router's replay memory is kept in the state dir (`state/replay/shard-<n>`,
 * message/replay-journal.ts): a restarted router — after a crash or a
 * SIGKILL — refuses the ids its shard saw within the window, as the one
 * before it would have.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { connectWithCertificate } from '@dmr/broker';
import type { NodeConfig } from '@dmr/contract';
import { DmrError, backoffDelay, startTracing } from '@dmr/core';
import type { ChannelModel } from 'amqplib';
import { brokerServerCheck } from '@dmr/pki';
import {
  PolicyEngine,
  RestPolicyEngine,
  policySignerSpiffeId,
  type PolicyDecider,
  type PolicyDecision,
} from '@dmr/policy';
import { vhostName } from '@dmr/contract';
import { CentOpsClient } from '@dmr/centops-client';
import { routerWriterId } from '@dmr/contract';
import { StreamAuditSink, type AuditSink } from '../router/audit.js';
import { readBackAfterLostConfirm, readWriterTail } from '../audit/tail.js';
import { AuditCheckpointer } from '../router/audit-checkpointer.js';
import { RouterMetrics } from '../router/metrics.js';
import type { NodeIdentity } from '../router/mesh-context.js';
import { Router } from '../router/router.js';
import { refusalReason } from './refusal.js';
import { loadIdentity } from './identity.js';
import { serveMetrics } from './metrics.js';
import type { RunConfig } from './run-config.js';
import { dataPaths, readCrl, readLastGood, replayDir, type DataPaths } from './state-dir.js';
import { ReplayJournal } from '../message/replay-journal.js';

/**
 * The router's in-process policy: a PolicyEngine for the current trust
 * bundle. The Router holds this object for its lifetime; after a CA rollover
 * a new engine (verifying with the new roots) replaces the inner one.
 */
export class TrustFollowingPolicy implements PolicyDecider {
  readonly mode = 'wasm' as const;
  readonly #signer: string;
  #engine: PolicyEngine;
  #trust: string;

  constructor(trustBundlePem: string, expectedSigner: string) {
    this.#signer = expectedSigner;
    this.#trust = trustBundlePem;
    this.#engine = new PolicyEngine({ verification: { trustBundlePem, expectedSigner } });
  }

  get trust(): string {
    return this.#trust;
  }

  get activeRevision(): string | undefined {
    return this.#engine.activeRevision;
  }

  decide(input: unknown): Promise<PolicyDecision> {
    return this.#engine.decide(input);
  }

  /** Verifies and activates `bundle` (under `trustBundlePem`, replacing the engine if the roots changed). */
  async swap(bundle: Buffer, trustBundlePem: string): Promise<void> {
    if (trustBundlePem === this.#trust) {
      await this.#engine.swap(bundle);
      return;
    }
    const next = new PolicyEngine({ verification: { trustBundlePem, expectedSigner: this.#signer } });
    await next.swap(bundle);
    const previous = this.#engine;
    this.#engine = next;
    this.#trust = trustBundlePem;
    await previous.close();
  }

  close(): Promise<void> {
    return this.#engine.close();
  }
}

export interface RouterProcessOptions {
  config: RunConfig;
  shard: number;
  logger?: Logger;
  registry?: Registry;
  /** Fallback stat interval (default 1000 ms). */
  pollMs?: number;
}

export interface RunningRouter {
  router: Router;
  /** The revision in force. */
  readonly revision: number;
  stop(): Promise<void>;
}

/**
 * Where router `shard` serves /metrics and /healthz: the agent's
 * `metrics.listen` port + 1 + shard (none when the agent's port is 0, i.e.
 * chosen by the system, as in tests).
 */
export function routerMetricsListen(config: RunConfig, shard: number): string | undefined {
  const listen = config.metrics?.listen;
  if (listen === undefined) return undefined;
  const colon = listen.lastIndexOf(':');
  const port = Number(listen.slice(colon + 1));
  return port === 0 ? undefined : `${listen.slice(0, colon)}:${port + 1 + shard}`;
}

export function brokerAddress(amqpsUrl: string): { host: string; port: number } {
  const url = new URL(amqpsUrl);
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port === '' ? 5671 : Number(url.port) };
}

/** The node identity the router signs and verifies mesh messages with, as the agent last wrote it. */
export async function readRouterIdentity(
  dataDir: string,
  paths: DataPaths = dataPaths(dataDir),
): Promise<NodeIdentity> {
  const [certificateChainPem, privateKeyPem, trustBundlePem, crlPem] = await Promise.all([
    readFile(paths.certificateFile, 'utf8'),
    readFile(paths.keyFile, 'utf8'),
    readFile(paths.trustBundleFile, 'utf8'),
    readCrl(dataDir),
  ]);
  return { certificateChainPem, privateKeyPem, trustBundlePem, ...(crlPem === undefined ? {} : { crlPems: [crlPem] }) };
}

function sameIdentity(a: NodeIdentity | undefined, b: NodeIdentity): boolean {
  return (
    a !== undefined &&
    a.certificateChainPem === b.certificateChainPem &&
    a.privateKeyPem === b.privateKeyPem &&
    a.trustBundlePem === b.trustBundlePem &&
    JSON.stringify(a.crlPems ?? []) === JSON.stringify(b.crlPems ?? [])
  );
}

export async function startRouterProcess(options: RouterProcessOptions): Promise<RunningRouter> {
  const { config, shard } = options;
  const logger =
    options.logger ?? pino({ level: config.logLevel, base: { node: config.node, component: 'router', shard } });
  const paths = dataPaths(config.dataDir);
  const identity = await loadIdentity(config.dataDir);
  if (identity === undefined) {
    throw new DmrError('NOT_FOUND', `node ${config.node} has no certificate in ${paths.identityDir}`, {
      hint: 'start the agent first (`dmr node run`): it enrols and writes the identity',
    });
  }
  const context = {
    nodeId: config.node,
    trustDomain: config.centops.trustDomain,
    trustBundlePem: identity.trustBundlePem,
  };
  const signer = policySignerSpiffeId(config.centops.trustDomain);
  const mode = config.policy;
  // In wasm mode the router verifies and swaps bundles itself; an OPA sidecar pulls its own.
  let engine: TrustFollowingPolicy | undefined;
  let policy: PolicyDecider;
  if (mode.mode === 'wasm') {
    engine = new TrustFollowingPolicy(identity.trustBundlePem, signer);
    policy = engine;
  } else {
    policy = new RestPolicyEngine({ url: mode.url });
  }

  const registry = options.registry ?? new Registry();
  const { host, port } = brokerAddress(config.broker.amqpsUrl);
  const journal = ReplayJournal.open({
    dir: replayDir(config.dataDir, shard),
    onError: (error) =>
      logger.error({ err: error.message }, 'replay memory not written to disk: a restart would forget'),
  });
  const found = journal.load;
  logger.info(
    { ...found, linesPerSecond: found.millis > 0 ? Math.round((found.lines / found.millis) * 1000) : undefined },
    'replay memory loaded',
  );
  let nodeIdentity = await readRouterIdentity(config.dataDir, paths);
  const audit = await startAuditLog(config, shard, () => nodeIdentity, logger);
  const tracing = await startTracing({
    serviceName: 'dmr-router',
    endpoint: config.tracing?.endpoint,
    attributes: { 'dmr.node': config.node, 'dmr.shard': shard },
  });
  const metrics = new RouterMetrics(registry);
  metrics.watchAuditLog(() => audit.checkpointer);
  const connectBroker = async () => {
    // Read at every (re)connect: the agent may have renewed the certificate meanwhile.
    const [certificatePem, privateKeyPem, caPem] = await Promise.all(
      [paths.certificateFile, paths.keyFile, paths.trustBundleFile].map((file) => readFile(file, 'utf8')),
    );
    return connectWithCertificate({
      host,
      port,
      servername: config.broker.serverName ?? host,
      caPem: caPem as string,
      certificatePem: certificatePem as string,
      privateKeyPem: privateKeyPem as string,
      vhost: vhostName(config.node),
      // Its own broker presents this node's certificate (the agent installed it): nothing else may answer.
      tls: { checkServerIdentity: brokerServerCheck(config.centops.trustDomain, config.node) },
    });
  };
  const auditSink: AuditSink = {
    append: (event) => audit.sink.append(event),
    attach: (channel, connection) => audit.sink.attach(channel, connection),
    detach: () => audit.sink.detach(),
    // A graceful stop: every record is confirmed, then one last checkpoint covers them all (witnessed by
    // CentOps and published while the router's channel is still open, before the router closes it).
    close: async () => {
      await audit.sink.close();
      await audit.checkpointer.close();
    },
  };
  const router = new Router({
    identity: nodeIdentity,
    nodeId: config.node,
    shard,
    connect: connectBroker,
    policy,
    logger,
    metrics,
    audit: auditSink,
    backoff: { initialMs: config.feed.backoffInitialMs, maxMs: Math.max(config.feed.backoffInitialMs, 10_000) },
    replayMemory: journal,
    ...(tracing.tracer === undefined ? {} : { tracer: tracing.tracer }),
  });

  let revision = -1;
  let policyDigest: string | undefined;
  let trustBundlePem = identity.trustBundlePem;
  let checking: Promise<void> = Promise.resolve();

  /** Applies the state dir's document if it is newer; false when there is none yet. */
  async function load(): Promise<boolean> {
    let lastGood;
    try {
      // Read every time: a renewal after a CA rollover brings new roots.
      trustBundlePem = await readFile(paths.trustBundleFile, 'utf8');
      lastGood = await readLastGood(config.dataDir, {
        ...context,
        trustBundlePem,
        ...(revision >= 0 ? { minRevision: revision } : {}),
      });
    } catch (error) {
      logger.warn(
        { err: refusalReason(error) },
        'the state dir holds a document this router refuses; keeping the current one',
      );
      return revision >= 0;
    }
    if (lastGood === undefined) return false;
    try {
      const identityNow = await readRouterIdentity(config.dataDir, paths);
      if (!sameIdentity(nodeIdentity, identityNow)) {
        router.applyIdentity(identityNow);
        nodeIdentity = identityNow;
        logger.info('node identity for the mesh reloaded (certificate, trust bundle or CRL changed)');
      }
    } catch (error) {
      logger.warn({ err: refusalReason(error) }, 'the node identity could not be read again; keeping the current one');
    }
    const next: NodeConfig = lastGood.config;
    if (next.revision === revision) return true;
    if (
      lastGood.bundle !== undefined &&
      engine !== undefined &&
      (next.policy?.digest !== policyDigest || engine.trust !== trustBundlePem)
    ) {
      try {
        await engine.swap(lastGood.bundle, trustBundlePem);
      } catch (error) {
        logger.warn(
          { err: refusalReason(error), revision: next.revision },
          'policy bundle refused; keeping the current one',
        );
        return revision >= 0;
      }
    }
    policyDigest = next.policy?.digest;
    router.applyConfig(next);
    logger.info(
      { revision: next.revision, previous: revision, policyRevision: next.policy?.revision },
      'configuration applied',
    );
    revision = next.revision;
    return true;
  }

  const check = (): Promise<void> => {
    checking = checking
      .then(() => load().then(() => undefined))
      .catch((error: unknown) => {
        logger.error({ err: refusalReason(error) }, 'reading the state dir failed');
      });
    return checking;
  };

  // Wait for the agent's first document.
  const pollMs = options.pollMs ?? 1000;
  while (!(await load())) {
    logger.info({ stateDir: paths.stateDir }, 'no configuration yet: waiting for the agent');
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  if (audit.continues !== undefined) await adoptOwnTail(audit, audit.continues, connectBroker, config, logger);
  await router.start();
  audit.checkpointer.start();
  logger.info({ revision, shard, auditWriter: audit.sink.writer }, 'router consuming');

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(paths.stateDir, (_event, file) => {
      if (file === null || String(file) === 'config.jws' || String(file) === 'crl.pem') void check();
    });
    watcher.on('error', () => undefined);
  } catch {
    // Without fs.watch the periodic stat below still notices changes, only later.
  }
  let lastStat = '';
  const poller = setInterval(() => {
    // The configuration, and what the mesh identity is made of (a renewal or a new CRL changes no config).
    Promise.all(
      [paths.configFile, paths.certificateFile, paths.trustBundleFile, paths.crlFile].map((file) =>
        stat(file).then(
          (info) => `${info.mtimeMs}:${info.size}:${info.ino}`,
          () => '-',
        ),
      ),
    )
      .then((stats) => {
        const signature = stats.join('|');
        if (signature !== lastStat) {
          lastStat = signature;
          void check();
        }
      })
      .catch(() => undefined);
  }, pollMs);
  poller.unref();

  const metricsAddress = routerMetricsListen(config, shard);
  const metricsServer =
    metricsAddress === undefined
      ? undefined
      : await serveMetrics(metricsAddress, registry, {
          unhealthyReason: () => (router.state === 'running' ? undefined : `router is ${router.state}`),
        }).catch((error: unknown) => {
          // Metrics are worth a log line, not a router that refuses to route.
          logger.warn({ err: refusalReason(error), listen: metricsAddress }, 'router metrics not served');
          return undefined;
        });

  return {
    router,
    get revision() {
      return revision;
    },
    async stop() {
      clearInterval(poller);
      watcher?.close();
      await metricsServer?.close();
      await checking;
      await router.stop();
      await audit.checkpointer.close();
      audit.client.close();
      journal.close();
      await policy.close();
      await tracing.shutdown();
    },
  };
}

/**
 * The router's audit log (docs/audit.md): writer `<node>/router-<shard>`,
 * continued from the last checkpoint CentOps witnessed. When CentOps cannot
 * say where the log stands (unreachable at start), the router does not wait:
 * it writes a new log `<node>/router-<shard>-<run>` from zero, which CentOps
 * registers with its first checkpoint.
 */
interface AuditLog {
  sink: StreamAuditSink;
  checkpointer: AuditCheckpointer;
  client: CentOpsClient;
  /** Where the writer's log continues (CentOps' last checkpoint); undefined for a new log under a fresh name. */
  continues?: { size: number; at?: Date };
}

async function startAuditLog(
  config: RunConfig,
  shard: number,
  identity: () => NodeIdentity,
  logger: Logger,
): Promise<AuditLog> {
  const current = identity();
  const client = new CentOpsClient({
    apiUrl: config.centops.url,
    caPem: await readFile(config.centops.caFile, 'utf8'),
    trustDomain: config.centops.trustDomain,
    identity: { certPem: current.certificateChainPem, keyPem: current.privateKeyPem },
    keepAlive: true,
    timeoutMs: 10_000,
  });
  let lastKey = current.privateKeyPem;
  const witness = {
    // The node's certificate for CentOps follows renewals, like the broker connection.
    submitAuditCheckpoint: (body: Parameters<CentOpsClient['submitAuditCheckpoint']>[0]) => {
      const now = identity();
      if (now.privateKeyPem !== lastKey) {
        client.setIdentity({ certPem: now.certificateChainPem, keyPem: now.privateKeyPem });
        lastKey = now.privateKeyPem;
      }
      return client.submitAuditCheckpoint(body);
    },
    auditWriterCheckpoint: (writer: string) => client.auditWriterCheckpoint(writer),
  };
  const make = (writer: string) => {
    const sink = new StreamAuditSink({ writer, readBack: readBackAfterLostConfirm });
    const checkpointer = new AuditCheckpointer({
      writer,
      nodeId: config.node,
      trustDomain: config.centops.trustDomain,
      identity,
      witness,
      publish: (body) => sink.publishCheckpoint(body),
      logger,
    });
    sink.onStored = (leaf) => checkpointer.stored(leaf);
    return { sink, checkpointer, client };
  };
  const log = make(routerWriterId(config.node, shard));
  try {
    const continues = await log.checkpointer.resume();
    logger.info(
      { writer: log.sink.writer, size: continues.size },
      'audit log continues from its last witnessed checkpoint',
    );
    return { ...log, continues };
  } catch (error) {
    const fresh = make(`${routerWriterId(config.node, shard)}-${log.sink.run.slice(0, 8)}`);
    logger.warn(
      { err: refusalReason(error), writer: fresh.sink.writer },
      'CentOps could not say where the audit log stands: starting a new log',
    );
    return fresh;
  }
}

/**
 * Before the first record of this run: the records the previous run stored
 * after the last witnessed checkpoint (it crashed, or CentOps was away) are
 * read back from the stream and adopted, so the log goes on after them
 * (audit/tail.ts). The router cannot route without its broker, so this
 * waits for it, retrying like the router's own connect.
 */
async function adoptOwnTail(
  log: AuditLog,
  continues: { size: number; at?: Date },
  connect: () => Promise<ChannelModel>,
  config: RunConfig,
  logger: Logger,
): Promise<void> {
  for (let failures = 0; ; failures += 1) {
    try {
      const connection = await connect();
      connection.on('error', () => undefined);
      let tail;
      try {
        tail = await readWriterTail(connection, {
          writer: log.sink.writer,
          run: log.sink.run,
          after: continues.size,
          ...(continues.at === undefined ? {} : { witnessedAt: continues.at }),
        });
      } finally {
        await connection.close().catch(() => undefined);
      }
      log.checkpointer.adopt(tail.leaves);
      log.sink.resume(continues.size + tail.leaves.length, tail.head);
      logger.info(
        {
          writer: log.sink.writer,
          witnessed: continues.size,
          adopted: tail.leaves.length,
          read: tail.read,
          skipped: tail.skipped,
        },
        'audit log: records stored after the last checkpoint adopted',
      );
      return;
    } catch (error) {
      if (failures === 0 || failures % 10 === 0) {
        logger.warn(
          { err: refusalReason(error), writer: log.sink.writer, failures: failures + 1 },
          'audit log: reading back its own tail failed; retrying (nothing is routed meanwhile)',
        );
      }
      await new Promise((resolve) =>
        setTimeout(
          resolve,
          backoffDelay(failures, {
            initialMs: config.feed.backoffInitialMs,
            maxMs: Math.max(config.feed.backoffInitialMs, 10_000),
          }),
        ),
      );
    }
  }
}
