/**
 * The node agent (`dmr node run`): keeps one DMR node configured from
 * CentOps. In order, at start: identity (enrol or load) → broker TLS (server
 * certificate, CA file, CRL) → the last good document from disk (offline
 * start) → the configuration feed. For each document: verify → fetch and
 * verify the policy bundle if it changed → reconcile the broker → persist as
 * last good → report. Any failure is reported as a refusal and the last
 * good configuration keeps running (docs/contract.md "Configuration flow").
 *
 * Links: with `broker.tls` the reconcile also keeps one shovel per link
 * (reconciler/links.ts), logging in to the peer with the node's own
 * certificate, whose content-addressed copies the agent writes beside the
 * broker's TLS files (`<dir of certFile>/links/`). A renewal or a new trust
 * bundle writes new copies and reconciles again: the changed definitions
 * restart the shovels, then the old copies are removed. Every
 * `linkCheckMs` the agent reads the links' state for status.json and the
 * `dmr_link_*` gauges, finishes the drains of removed links, and restarts a
 * shovel that says `running` while nothing moves (docs/mesh-links.md trap 2).
 *
 * The router processes are not driven from here: they read the state dir
 * (state-dir.ts), so they keep serving across an agent restart.
 */
import { readFile } from 'node:fs/promises';
import { pino, type Logger } from 'pino';
import type { ManagementClient } from '@dmr/broker';
import { crlRefreshDelayMs } from '@dmr/broker';
import type { LinkStatus, NodeConfig } from '@dmr/contract';
import { DmrError, inSpan, isErrorCode, type MetricsServer } from '@dmr/core';
import type { Tracer } from '@opentelemetry/api';
import { PolicyEngine, policySignerSpiffeId } from '@dmr/policy';
import { desiredLayout, reconcile, type ApplyResult } from '../reconciler/index.js';
import { Backoff, renewalDelayMs } from './backoff.js';
import { LinkKeeper } from './link-keeper.js';
import { installBrokerCrl, installNodeBrokerTls } from './broker-tls.js';
import { CentOpsClient } from './centops-client.js';
import { FeedFollower, type FeedDocument } from './feed.js';
import { AgentEvents } from './events.js';
import { enrol, loadIdentity, renew, type NodeIdentity } from './identity.js';
import { AgentMetrics, serveMetrics } from './metrics.js';
import { isTransient, refusalReason } from './refusal.js';
import { revocationsGrew } from './revocations.js';
import { openManagement, type RunConfig } from './run-config.js';
import {
  checkBundleDigest,
  readCrl,
  readLastGood,
  verifySigned,
  writeCrl,
  writeLastGood,
  writeLocalStatus,
  type LocalStatus,
} from './state-dir.js';

export interface AgentOptions {
  logger?: Logger;
  metrics?: AgentMetrics;
  /** A span per configuration document handled (tracing on); none: off. */
  tracer?: Tracer;
  /** Called after each document is applied, found unchanged or refused (tests, tools). */
  onOutcome?: (outcome: DocumentOutcome) => void;
  /** The clock renewals are scheduled by (tests: a time late in the certificate's life). */
  now?: () => Date;
  /** How often the links' state is read, drains finished and stuck links restarted (default 5000 ms). */
  linkCheckMs?: number;
  /** How long a removed link's queue must look empty before it goes (DrainTracker; default 12 s). */
  drainGraceMs?: number;
  /** How long a running link may hold unacknowledged messages that do not move before a restart (default 30 s). */
  stuckLinkMs?: number;
  /** How often the certificate's expiry is checked against the certificate.expiring thresholds (default 1 h). */
  expiryCheckMs?: number;
}

export type DocumentOutcome =
  | {
      result: 'applied';
      revision: number;
      policyRevision: string | null;
      reconcile: ApplyResult;
      ms: number;
    }
  | { result: 'unchanged'; revision: number }
  | { result: 'refused'; revision: number; code: string; reason: string };

interface Applied {
  revision: number;
  jws: string;
  config: NodeConfig;
  bundle: Buffer | undefined;
}

const DEFAULT_LINK_CHECK_MS = 5000;
const DEFAULT_EXPIRY_CHECK_MS = 3_600_000;

/** Without a broker CRL directory the CRL is fetched for the signer checks only: this often. */
const CRL_REFRESH_WITHOUT_BROKER_MS = 15 * 60_000;

export class NodeAgent {
  readonly config: RunConfig;
  readonly logger: Logger;
  readonly metrics: AgentMetrics;
  /** Applied, refused, certificate installed or expiring: log line, counter, CentOps audit record (docs/events.md). */
  readonly events: AgentEvents;
  readonly #options: AgentOptions;
  #client: CentOpsClient | undefined;
  #identity: NodeIdentity | undefined;
  #management: ManagementClient | undefined;
  #engine: PolicyEngine | undefined;
  #engineTrust: string | undefined;
  #feed: FeedFollower | undefined;
  #applied: Applied | undefined;
  #refused: LocalStatus['refused'] = null;
  #connected = false;
  readonly #timers = new Map<'renewal' | 'crl' | 'links' | 'expiry', NodeJS.Timeout>();
  #metricsServer: MetricsServer | undefined;
  #stopped = false;
  #renewBackoff: Backoff;
  #crlBackoff: Backoff;
  #retryBackoff: Backoff;
  #retry: NodeJS.Timeout | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  /** The last CRL fetched from CentOps (verified where it is used): signer chains are checked against it. */
  #crlPem: string | undefined;
  readonly #linkKeeper: LinkKeeper;
  /** The links as last read from the broker; undefined before the first read. */
  #links: LinkStatus[] | undefined;

  constructor(config: RunConfig, options: AgentOptions = {}) {
    this.config = config;
    this.#options = options;
    this.logger = options.logger ?? pino({ level: config.logLevel, base: { node: config.node, component: 'agent' } });
    this.metrics = options.metrics ?? new AgentMetrics();
    const backoff = { initialMs: config.feed.backoffInitialMs, maxMs: config.feed.backoffMaxMs };
    this.#renewBackoff = new Backoff(backoff);
    this.#crlBackoff = new Backoff(backoff);
    this.#retryBackoff = new Backoff(backoff);
    this.events = new AgentEvents({
      node: config.node,
      logger: this.logger,
      metrics: this.metrics,
      backoff,
      // Only with an identity: CentOps takes a node's events over its mutual-TLS certificate.
      post: () => {
        const client = this.#client;
        if (client === undefined || this.#identity === undefined) return undefined;
        return (event) => client.postEvent(config.node, event);
      },
      ...(options.now === undefined ? {} : { now: options.now }),
    });
    this.#linkKeeper = new LinkKeeper({
      brokerCertFile: config.broker.tls?.certFile,
      logger: this.logger,
      ...(options.drainGraceMs === undefined ? {} : { drainGraceMs: options.drainGraceMs }),
      ...(options.stuckLinkMs === undefined ? {} : { stuckLinkMs: options.stuckLinkMs }),
    });
  }

  /** The links as last read from the broker (status.json has the same). */
  get links(): LinkStatus[] | undefined {
    return this.#links;
  }

  get identity(): NodeIdentity | undefined {
    return this.#identity;
  }

  get appliedRevision(): number | undefined {
    return this.#applied?.revision;
  }

  get appliedConfig(): NodeConfig | undefined {
    return this.#applied?.config;
  }

  get metricsUrl(): string | undefined {
    return this.#metricsServer?.url;
  }

  /** Resolves once the node runs (its last good document applied if it had one) and the feed is started. */
  async start(): Promise<void> {
    const { config } = this;
    const caPem = await readFile(config.centops.caFile, 'utf8');
    const client = new CentOpsClient({
      apiUrl: config.centops.url,
      enrolUrl: config.centops.enrolUrl,
      caPem,
      trustDomain: config.centops.trustDomain,
    });
    this.#client = client;

    let identity = await loadIdentity(config.dataDir);
    let renewedAtStart = false;
    if (identity === undefined) {
      this.logger.info({ enrolUrl: config.centops.enrolUrl }, 'no certificate yet: enrolling');
      identity = await enrol(client, {
        dataDir: config.dataDir,
        nodeId: config.node,
        trustDomain: config.centops.trustDomain,
        tokenFile: config.centops.tokenFile,
        keyAlgorithm: config.centops.keyAlgorithm,
      });
      this.logger.info({ serial: identity.serial, notAfter: identity.notAfter.toISOString() }, 'enrolled');
    } else {
      this.logger.info({ serial: identity.serial, notAfter: identity.notAfter.toISOString() }, 'identity loaded');
      if (identity.notAfter.getTime() <= (this.#options.now?.() ?? new Date()).getTime()) {
        // Down past its expiry: CentOps renews within its grace period on a proof of the old key (decision 0030).
        this.logger.warn({ serial: identity.serial }, 'certificate expired while the node was down: grace renewal');
        client.setIdentity(identity);
        identity = await renew(client, {
          dataDir: config.dataDir,
          nodeId: config.node,
          trustDomain: config.centops.trustDomain,
          keyAlgorithm: config.centops.keyAlgorithm,
          expired: true,
        });
        renewedAtStart = true;
      }
    }
    this.#useIdentity(identity);
    if (renewedAtStart) await this.events.installed(identity.serial, identity.notAfter, { grace: true });
    await this.#installBrokerIdentity(identity);
    this.#scheduleRenewal();
    // After the renewal is scheduled: tests hand the agent a clock whose first reads are the expiry and the schedule.
    this.#checkExpiry();
    // Before the last good document: its signers are checked against the CRL (the one on disk if CentOps is down).
    this.#crlPem = await readCrl(config.dataDir);
    await this.#refreshCrl();

    this.#management = await openManagement(config);
    await this.#startFromLastGood();

    if (config.metrics !== undefined) {
      this.#metricsServer = await serveMetrics(config.metrics.listen, this.metrics.registry, {
        unhealthyReason: () => (this.#applied === undefined ? 'no configuration applied yet' : undefined),
      });
    }

    this.#feed = new FeedFollower({
      client,
      nodeId: config.node,
      logger: this.logger,
      stream: config.feed.stream,
      waitSeconds: config.feed.waitSeconds,
      backoffInitialMs: config.feed.backoffInitialMs,
      backoffMaxMs: config.feed.backoffMaxMs,
      onDocument: async (document) => {
        await this.applyDocument(document);
      },
      onConnected: (connected) => {
        if (connected !== this.#connected) {
          this.#connected = connected;
          this.metrics.centopsConnected.set(connected ? 1 : 0);
          void this.#writeStatus();
        }
      },
    });
    this.#feed.start(this.#applied?.revision);
    this.#scheduleLinkCheck(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.events.stop();
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    if (this.#retry) clearTimeout(this.#retry);
    await this.#feed?.stop();
    this.#client?.close();
    await this.#engine?.close();
    await this.#metricsServer?.close();
  }

  /** Waits until documents received so far are handled (tests). */
  async idle(): Promise<void> {
    await this.#feed?.idle();
  }

  /** One timer per job: scheduling a job again (a manual renewal, an early CRL refresh) replaces its timer. */
  #timer(job: 'renewal' | 'crl' | 'links' | 'expiry', ms: number, run: () => Promise<void>): void {
    const existing = this.#timers.get(job);
    if (existing !== undefined) clearTimeout(existing);
    this.#timers.delete(job);
    if (this.#stopped) return;
    const timer = setTimeout(
      () => {
        this.#timers.delete(job);
        void run();
      },
      Math.min(ms, 2 ** 31 - 1),
    );
    timer.unref();
    this.#timers.set(job, timer);
  }

  #useIdentity(identity: NodeIdentity): void {
    this.#identity = identity;
    this.#client?.setIdentity(identity);
    this.metrics.certificateExpiry.set(Math.floor(identity.notAfter.getTime() / 1000));
    // Events queued before there was an identity (or before a renewal) can go now.
    this.events.flush();
  }

  /**
   * certificate.expiring, on a timer: AgentEvents announces each threshold
   * once per certificate, so a tick that finds nothing new says nothing.
   */
  #checkExpiry(): void {
    const identity = this.#identity;
    if (identity !== undefined) {
      this.events
        .checkExpiry(identity, this.#options.now?.() ?? new Date())
        .catch((error: unknown) => this.logger.error({ err: refusalReason(error) }, 'expiry check failed'));
    }
    this.#timer('expiry', this.#options.expiryCheckMs ?? DEFAULT_EXPIRY_CHECK_MS, async () => this.#checkExpiry());
  }

  async #installBrokerIdentity(identity: NodeIdentity): Promise<void> {
    const tls = this.config.broker.tls;
    if (tls === undefined) return;
    const installed = await installNodeBrokerTls(tls, {
      chainPem: identity.chainPem,
      privateKeyPem: identity.privateKeyPem,
      trustBundlePem: identity.trustBundlePem,
    });
    this.logger.info(
      {
        serial: installed.certificate?.serial,
        certFile: tls.certFile,
        trustBundleChanged: installed.trustBundleChanged,
      },
      'broker TLS installed',
    );
  }

  #scheduleRenewal(): void {
    const identity = this.#identity;
    if (identity === undefined) return;
    const delay = renewalDelayMs(identity.notBefore, identity.notAfter, this.#options.now?.() ?? new Date());
    this.logger.debug({ inMs: delay }, 'certificate renewal scheduled');
    this.#timer('renewal', delay, () => this.renewNow().then(() => undefined));
  }

  /** Renews the certificate now (a NEW key), installs it for CentOps calls and the broker; reschedules. */
  async renewNow(): Promise<NodeIdentity | undefined> {
    const client = this.#client;
    if (client === undefined || this.#stopped) return undefined;
    try {
      const current = this.#identity;
      const renewed = await renew(client, {
        dataDir: this.config.dataDir,
        nodeId: this.config.node,
        trustDomain: this.config.centops.trustDomain,
        keyAlgorithm: this.config.centops.keyAlgorithm,
        // CentOps was out of reach until after expiry: TLS refuses the certificate now, its key still proves.
        expired: current !== undefined && current.notAfter.getTime() <= (this.#options.now?.() ?? new Date()).getTime(),
      });
      const previous = this.#identity?.serial;
      // Broker first: once `identity` shows the new serial, the broker presents it too.
      await this.#installBrokerIdentity(renewed);
      this.#useIdentity(renewed);
      this.#renewBackoff.reset();
      await this.events.installed(renewed.serial, renewed.notAfter, { previous });
      this.#scheduleRenewal();
      void this.#writeStatus();
      // The links present the node certificate too: new copies, new definitions, restarted shovels.
      await this.#serially(() => this.#reconcileApplied('certificate renewed'));
      return renewed;
    } catch (error) {
      const identity = this.#identity;
      // Retry well before expiry: at most a tenth of the time that is left.
      const left = identity === undefined ? 60_000 : identity.notAfter.getTime() - Date.now();
      const delay = Math.max(1000, Math.min(this.#renewBackoff.next(), left / 10));
      this.logger.warn({ err: refusalReason(error), retryInMs: delay }, 'certificate renewal failed');
      this.#timer('renewal', delay, () => this.renewNow().then(() => undefined));
      return undefined;
    }
  }

  /**
   * Fetches CentOps' CRL: kept for the signer checks (memory and disk) and,
   * with a broker CRL directory, installed for the broker's handshakes.
   */
  async #refreshCrl(): Promise<void> {
    const crlDir = this.config.broker.tls?.crlDir;
    const client = this.#client;
    if (client === undefined || this.#stopped) return;
    try {
      const pem = await client.crl();
      this.#crlPem = pem;
      await writeCrl(this.config.dataDir, pem);
      if (crlDir === undefined) {
        this.#crlBackoff.reset();
        this.#timer('crl', CRL_REFRESH_WITHOUT_BROKER_MS, () => this.#refreshCrl());
        return;
      }
      const installed = await installBrokerCrl(crlDir, pem);
      this.#crlBackoff.reset();
      const delay = crlRefreshDelayMs(installed);
      this.logger.info(
        { file: installed.path, nextUpdate: installed.nextUpdate?.toISOString(), refreshInMs: delay },
        'CRL installed',
      );
      this.#timer('crl', delay, () => this.#refreshCrl());
    } catch (error) {
      const delay = this.#crlBackoff.next();
      this.logger.warn({ err: refusalReason(error), retryInMs: delay }, 'CRL refresh failed');
      this.#timer('crl', delay, () => this.#refreshCrl());
    }
  }

  #verifyContext(minRevision?: number) {
    const identity = this.#identity;
    if (identity === undefined) throw new DmrError('INTERNAL', 'the agent has no identity');
    return {
      nodeId: this.config.node,
      trustDomain: this.config.centops.trustDomain,
      trustBundlePem: identity.trustBundlePem,
      ...(minRevision === undefined ? {} : { minRevision }),
      ...(this.#crlPem === undefined ? {} : { crlPems: [this.#crlPem] }),
    };
  }

  /**
   * A revoked signer must be refused from its next document on, not from
   * the next scheduled refresh: before judging a new document the agent
   * fetches the CRL again (one small, cached GET per revision; coalesced
   * documents need one). If CentOps cannot be reached the CRL it has is used.
   */
  async #freshCrl(): Promise<void> {
    await this.#refreshCrl();
  }

  /** Offline start: the last good document from disk, applied again (the broker may have lost its layout). */
  async #startFromLastGood(): Promise<void> {
    let lastGood;
    try {
      lastGood = await readLastGood(this.config.dataDir, this.#verifyContext());
    } catch (error) {
      this.logger.error({ err: refusalReason(error) }, 'the last good document on disk does not verify; ignoring it');
      return;
    }
    if (lastGood === undefined) {
      this.logger.info('no last good document on disk: waiting for CentOps');
      return;
    }
    const { config, bundle, jws } = lastGood;
    if (bundle !== undefined) await (await this.#verifier()).swap(bundle);
    this.#applied = { revision: config.revision, jws, config, bundle };
    this.metrics.configRevision.set(config.revision);
    this.logger.info(
      { revision: config.revision, policyRevision: config.policy?.revision },
      'last good document loaded',
    );
    try {
      await this.#reconcile(config);
    } catch (error) {
      // The broker may be down too; the routers serve from disk and the next document reconciles.
      this.logger.warn({ err: refusalReason(error) }, 'reconciling the last good document failed');
    }
    await this.#writeStatus();
  }

  async #reconcile(config: NodeConfig): Promise<ApplyResult> {
    const management = this.#management;
    if (management === undefined) throw new DmrError('INTERNAL', 'the agent has no management client');
    const links = await this.#linkKeeper.options(config, this.#identity);
    // routers: 0 means the operator runs the routers: at least one shard still exists.
    const layout = desiredLayout(config, {
      routerShards: Math.max(1, this.config.routers),
      ...(links === undefined ? {} : { links }),
    });
    const result = await reconcile(management, layout, { drains: this.#linkKeeper.drains });
    if (links !== undefined) await this.#linkKeeper.removeUnusedFiles(management, layout.vhost, links);
    for (const link of result.draining) {
      this.logger.info({ peer: link.peer, messages: link.messages, shovel: link.shovel }, 'link draining');
    }
    return result;
  }

  /** Runs `task` after every document and reconcile before it: one change to the broker at a time. */
  #serially<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(task);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  /** The applied document reconciled again (renewal, drains); a failure waits for the next check. */
  async #reconcileApplied(why: string): Promise<void> {
    const applied = this.#applied;
    if (applied === undefined || this.#stopped) return;
    try {
      const result = await this.#reconcile(applied.config);
      if (result.changes.length > 0) {
        this.logger.info({ why, changes: result.changes.map((c) => `${c.action} ${c.kind} ${c.name}`) }, 'reconciled');
      }
    } catch (error) {
      this.logger.warn({ why, err: refusalReason(error) }, 'reconciling the applied document failed');
    }
  }

  #scheduleLinkCheck(ms = this.#options.linkCheckMs ?? DEFAULT_LINK_CHECK_MS): void {
    this.#timer('links', ms, async () => {
      await this.checkLinks();
      this.#scheduleLinkCheck();
    });
  }

  /**
   * Reads the links' state (status.json, gauges), finishes drains and
   * restarts stuck links. Runs on its timer; tests may call it.
   */
  checkLinks(): Promise<LinkStatus[] | undefined> {
    // In line with the documents: a link read between a reconcile and its document's adoption would look removed.
    return this.#serially(() => this.#checkLinks());
  }

  async #checkLinks(): Promise<LinkStatus[] | undefined> {
    const management = this.#management;
    const applied = this.#applied;
    if (management === undefined || applied === undefined || this.#stopped) return this.#links;
    if (this.#linkKeeper.drains.draining.length > 0) await this.#reconcileApplied('links draining');
    const read = await this.#linkKeeper.inspect(management, applied.config);
    if (read === undefined) return this.#links;
    const { links } = read;
    this.metrics.setLinks(links);
    this.metrics.setQueueDepths(read.queues);
    const changed = JSON.stringify(links) !== JSON.stringify(this.#links);
    this.#links = links;
    if (changed) await this.#writeStatus();
    return links;
  }

  /**
   * Verifies and applies one signed document, or refuses it (reported to
   * CentOps, last good kept). The feed calls this; tools and tests may too:
   * calls are serialised, so a document is never applied over another.
   */
  applyDocument(document: FeedDocument): Promise<DocumentOutcome> {
    const attributes = { 'dmr.node': this.config.node, 'dmr.config.revision': document.revision };
    return this.#serially(() =>
      inSpan(this.#options.tracer, 'dmr apply configuration', attributes, async (span) => {
        const outcome = await this.#handle(document);
        span?.setAttribute('dmr.config.result', outcome.result);
        return outcome;
      }),
    );
  }

  async #handle(document: FeedDocument): Promise<DocumentOutcome> {
    const started = performance.now();
    const applied = this.#applied;
    if (applied !== undefined && document.jws === applied.jws) {
      // A re-send (stream reconnect): nothing to do but say so, in case our last report was lost.
      const refused = this.#refused;
      await this.#report({
        appliedRevision: applied.revision,
        refused: refused === null ? null : { revision: refused.revision, reason: refused.reason },
      });
      const unchanged: DocumentOutcome = { result: 'unchanged', revision: applied.revision };
      this.#options.onOutcome?.(unchanged);
      return unchanged;
    }
    let outcome: DocumentOutcome;
    try {
      await this.#freshCrl();
      const config = await verifySigned(document.jws, this.#verifyContext(applied?.revision));
      const bundle = await this.#bundleFor(config, applied);
      const result = await this.#reconcile(config);
      if (result.conflicts.length > 0) {
        this.logger.warn({ revision: config.revision, conflicts: result.conflicts }, 'reconcile left conflicts');
      }
      await writeLastGood(this.config.dataDir, document.jws, bundle);
      // A revocation shows in the document: fetch the new CRL now, not at the next scheduled refresh.
      if (revocationsGrew(applied?.config, config, new Date())) void this.#refreshCrl();
      this.#applied = { revision: config.revision, jws: document.jws, config, bundle };
      this.#refused = null;
      this.#retryBackoff.reset();
      this.metrics.configRevision.set(config.revision);
      this.metrics.configRefused.set(0);
      const ms = Math.round(performance.now() - started);
      await this.events.applied(config.revision, {
        policyRevision: config.policy?.revision,
        changes: result.changes.length,
        via: document.via,
        ms,
      });
      outcome = {
        result: 'applied',
        revision: config.revision,
        policyRevision: config.policy?.revision ?? null,
        reconcile: result,
        ms,
      };
      await this.#writeStatus();
      await this.#report({ appliedRevision: config.revision, refused: null });
      // The links may have changed: show them soon rather than at the next periodic check.
      this.#scheduleLinkCheck(0);
    } catch (error) {
      const { code, reason } = refusalReason(error);
      this.metrics.refusals.inc({ reason: code });
      this.metrics.configRefused.set(1);
      this.#refused = { revision: document.revision, reason, at: new Date().toISOString() };
      await this.events.refused(document.revision, isErrorCode(code) ? code : 'INTERNAL', { reason });
      outcome = { result: 'refused', revision: document.revision, code, reason };
      await this.#writeStatus();
      await this.#report({
        appliedRevision: this.#applied?.revision ?? null,
        refused: { revision: document.revision, reason },
      });
      if (isTransient(error)) this.#retryLater(document);
    }
    this.#options.onOutcome?.(outcome);
    return outcome;
  }

  /** A document that failed for a reason outside it (broker or CentOps down) is tried again. */
  #retryLater(document: FeedDocument): void {
    if (this.#retry) clearTimeout(this.#retry);
    const delay = this.#retryBackoff.next();
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      // Only if nothing newer arrived meanwhile.
      if (!this.#stopped && (this.#feed?.lastSeen ?? document.revision) <= document.revision) {
        void this.applyDocument(document);
      }
    }, delay);
    this.#retry.unref();
  }

  /**
   * The engine that verifies bundles, for the current trust bundle: after a
   * CA rollover (a renewal brings the new roots) a new one is made, with
   * the applied bundle active first so the revision order still holds.
   */
  async #verifier(): Promise<PolicyEngine> {
    const trustBundlePem = this.#identity?.trustBundlePem;
    if (trustBundlePem === undefined) throw new DmrError('INTERNAL', 'the agent has no identity');
    if (this.#engine === undefined || this.#engineTrust !== trustBundlePem) {
      const previous = this.#engine;
      this.#engine = new PolicyEngine({
        verification: {
          trustBundlePem,
          expectedSigner: policySignerSpiffeId(this.config.centops.trustDomain),
          crlPems: () => (this.#crlPem === undefined ? [] : [this.#crlPem]),
        },
      });
      this.#engineTrust = trustBundlePem;
      await previous?.close();
      const active = this.#applied?.bundle;
      if (active !== undefined) {
        await this.#engine.swap(active).catch((error: unknown) => {
          this.logger.warn(
            { err: refusalReason(error) },
            'the applied bundle does not verify under the new trust bundle',
          );
        });
      }
    }
    return this.#engine;
  }

  /** The verified bundle `config` names: the current one when unchanged, else downloaded, digest-checked and swapped in. */
  async #bundleFor(config: NodeConfig, applied: Applied | undefined): Promise<Buffer | undefined> {
    const policy = config.policy;
    if (policy === undefined) return undefined;
    if (applied?.config.policy?.digest === policy.digest && applied.bundle !== undefined) return applied.bundle;
    const client = this.#client;
    if (client === undefined) throw new DmrError('INTERNAL', 'the agent is not started');
    const bundle = checkBundleDigest(config, await client.bundle(policy.bundle));
    if (bundle === undefined) return undefined;
    // Swapping verifies the signature, the revision order and that the Wasm compiles; a refusal keeps the old one.
    const swapped = await (await this.#verifier()).swap(bundle);
    if (swapped.revision !== policy.revision) {
      throw new DmrError(
        'POLICY_BUNDLE_INVALID',
        `the bundle is revision ${swapped.revision}, the document names ${policy.revision}`,
        {
          details: { check: 'revision', expected: policy.revision, actual: swapped.revision },
        },
      );
    }
    return bundle;
  }

  async #report(partial: {
    appliedRevision: number | null;
    refused?: { revision: number; reason: string } | null;
  }): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    try {
      await client.putStatus(this.config.node, {
        appliedRevision: partial.appliedRevision,
        ...(partial.refused === undefined ? {} : { refused: partial.refused }),
        policyRevision: this.#applied?.config.policy?.revision ?? null,
      });
    } catch (error) {
      // CentOps down: the status file has it, and the next document's report carries it again.
      this.logger.warn({ err: refusalReason(error) }, 'status report failed');
    }
  }

  async #writeStatus(): Promise<void> {
    const identity = this.#identity;
    try {
      await writeLocalStatus(this.config.dataDir, {
        node: this.config.node,
        appliedRevision: this.#applied?.revision ?? null,
        policyRevision: this.#applied?.config.policy?.revision ?? null,
        refused: this.#refused,
        centopsConnected: this.#connected,
        certificate:
          identity === undefined ? null : { serial: identity.serial, notAfter: identity.notAfter.toISOString() },
        ...(this.#links === undefined ? {} : { links: this.#links }),
        updatedAt: new Date().toISOString(),
      });
    } catch (error) {
      this.logger.warn({ err: refusalReason(error) }, 'writing status.json failed');
    }
  }
}
