/**
 * A whole single-node DMR data plane for integration tests: one harness
 * broker (TLS only, EXTERNAL), a NodeConfig with clients in several
 * organisations, the reconciled layout, client certificates, a signed policy
 * bundle built by OPA from packages/policy/rego with the fixture's grants, a
 * PolicyEngine, and routers (in process, or in a child process to be killed).
 *
 * Reused by the router's, the SDK's and the node agent's tests:
 *
 * ```ts
 * const node = await NodeFixture.start({ label: 'my-test' });   // ≈10 s: share one per test file
 * const ria = await node.client('ria-bot');
 * const rik = await node.client('rik-bot');
 * const id = await ria.send({ to: 'rik-bot', body: 'hello' });  // resolves on the broker's confirm
 * const delivered = await rik.next();                          // from dmr.client.rik-bot, acked
 * await node.stop();                                           // in after()
 * ```
 *
 * Default cast (organisation: clients): `ria`: ria-bot, ria-desk; `rik`:
 * rik-bot; `ppa`: ppa-bot; plus `far-bot` (organisation `ria`) homed on
 * another node, in the directory only. Default grants: ria → rik, every type
 * (so rik → ria is denied with NO_GRANT). Not exported from the package index.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LinkTlsFiles, ManagementClient } from '@dmr/broker';
import { startBrokers, type BrokerHarness } from '@dmr/broker-harness';
import type { NodeConfig } from '@dmr/contract';
import { spiffeId } from '@dmr/core';
import { CertificateAuthority } from '@dmr/pki';
import type { Tracer } from '@opentelemetry/api';
import { BundleSigner, PolicyEngine, buildBundle, policySignerSpiffeId, type BundleVerification } from '@dmr/policy';
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Options } from 'amqplib';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { reconcile } from '../reconciler/apply.js';
import { desiredLayout } from '../reconciler/layout.js';
import { installLinkTlsFiles, linkShovelName, type DrainTracker } from '../reconciler/links.js';
import { REJECTED_QUEUE, vhostName } from '@dmr/contract';
import { AUDIT_RECORDS_TYPE, StreamAuditSink, auditRecordsIn } from '../router/audit.js';
import type { DeliveryReport } from '../router/envelope.js';
import type { NodeIdentity } from '../router/mesh-context.js';
import { RouterMetrics } from '../router/metrics.js';
import { Router, type RouterOptions } from '../router/router.js';
import { waitFor } from '@dmr/core/testing';

/** The newest `x-death` entry of a dead letter (the broker puts the death that brought it here first). */
export function latestDeath(message: PeekedMessage | undefined): Record<string, unknown> | undefined {
  const deaths = message?.properties.headers?.['x-death'];
  return Array.isArray(deaths) ? (deaths[0] as Record<string, unknown> | undefined) : undefined;
}

const here = dirname(fileURLToPath(import.meta.url));
/** packages/policy/rego, from packages/node/dist/testing. */
const REGO_DIR = join(here, '..', '..', '..', 'policy', 'rego');
export const TRUST_DOMAIN = 'dmr.test';

type Limits = NodeConfig['limits'];
type Status = NodeConfig['clients'][number]['status'];

export interface FixtureClientSpec {
  id: string;
  organisation: string;
  roles?: string[];
  labels?: Record<string, string>;
  status?: Status;
  /** Default: this node. A client homed elsewhere is in the directory only (no queue, no user). */
  homeNode?: string;
}

export interface Grant {
  from: string;
  to: string;
  types?: string[];
}

export interface NodeFixtureOptions {
  /** Names the temp directory and the broker node (default 'fixture'). */
  label?: string;
  nodeId?: string;
  clients?: FixtureClientSpec[];
  grants?: Grant[];
  limits?: Partial<Limits>;
  /** Ingress shards in the layout (default 1). */
  routerShards?: number;
  /** Start one in-process router per shard (default true). */
  startRouters?: boolean;
  /** Audit to `dmr.audit` (default true). */
  audit?: boolean;
  /** The routers' tracer (hop spans); default none, tracing off. */
  tracer?: Tracer;
  /** Client ids on the denylist (they keep their queue, lose their user). */
  denied?: string[];
  /**
   * The CA for the broker, the policy signer and the clients (trust domain
   * `dmr.test`); default: a new one in the fixture's directory. Pass a real
   * CentOps' CA so that certificates CentOps issues are accepted.
   */
  ca?: CertificateAuthority;
  /**
   * The node's place in a mesh (MeshFixture): its link peers, CentOps'
   * routes from it, and nodes on the denylist. Default: no links, no routes.
   */
  mesh?: {
    links: readonly string[];
    routes: NodeConfig['routes'];
    deniedNodes?: readonly string[];
    maxHops?: number;
  };
}

export const DEFAULT_CLIENTS: readonly FixtureClientSpec[] = [
  { id: 'ria-bot', organisation: 'ria', roles: ['bot'], labels: { tier: 'gold' } },
  { id: 'ria-desk', organisation: 'ria', roles: ['desk'] },
  { id: 'rik-bot', organisation: 'rik', roles: ['bot'] },
  { id: 'ppa-bot', organisation: 'ppa', roles: ['bot'] },
  { id: 'far-bot', organisation: 'ria', roles: ['bot'], homeNode: 'node-far' },
];

export const DEFAULT_LIMITS: Limits = {
  maxMessageBytes: 65_536,
  maxTtlMs: 600_000,
  queueMaxLength: 10_000,
  deliveryLimit: 3,
  timestampSkewMs: 300_000,
  dedupWindowMs: 900_000,
  maxHeaderBytes: 16_384,
  queueMaxBytes: 67_108_864,
  ingressDeliveryLimit: 5,
  // Lifted to the router's whole window: a test of fairness sets its own (benches send from one client).
  senderRatePerSecond: 1_000_000,
  senderBurst: 1_000_000,
  maxIdsPerSender: 1_000_000,
  maxConnectionsPerUser: 10,
  maxChannelsPerUser: 100,
};

/** The broker user of a client of the fixture, and the `user_id` it sends: its certificate's SPIFFE id. */
export function clientUser(id: string): string {
  return spiffeId(TRUST_DOMAIN, 'client', id);
}

/** What a client publishes; every field can be overridden, `null` removes a property or header. */
export interface SendOptions {
  to?: string | null;
  body?: string | Buffer;
  messageId?: string | null;
  type?: string | null;
  /** POSIX seconds; default now. */
  timestamp?: number | null;
  expiration?: string | number;
  /** Default: the client's SPIFFE id (what RabbitMQ checks against its login); null sends none. */
  userId?: string | null;
  version?: unknown;
  headers?: Record<string, unknown>;
  properties?: Options.Publish;
}

export interface TestClient {
  readonly id: string;
  readonly connection: ChannelModel;
  /** The confirm channel `send` publishes on. */
  readonly channel: ConfirmChannel;
  /** Publishes to dmr.ingress; resolves with the message id once the broker confirmed it. */
  send(options?: SendOptions): Promise<string | undefined>;
  /** The next message from the client's own queue (acked), or throws after `timeoutMs`. */
  next(timeoutMs?: number): Promise<ConsumeMessage>;
  /** Collects messages until none arrives for `quietMs` (default 1 s) or `maxMs` (default 10 s) have passed. */
  drain(quietMs?: number, maxMs?: number): Promise<ConsumeMessage[]>;
  close(): Promise<void>;
}

/** A message read through the management API (inspection of queues no test user may read). */
export interface PeekedMessage {
  payload: string;
  properties: {
    message_id?: string;
    correlation_id?: string;
    type?: string;
    user_id?: string;
    headers?: Record<string, unknown>;
    [key: string]: unknown;
  };
}

export interface RouterHandle {
  router: Router;
  metrics: RouterMetrics;
  registry: Registry;
  audit: StreamAuditSink | undefined;
}

/** A router running in a child process (src/testing/router-main.ts). */
export interface RouterProcess {
  child: ChildProcess;
  /** stdout lines so far (pino JSON). */
  lines: string[];
  exited: Promise<number | null>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function parseReport(message: { content: Buffer }): DeliveryReport {
  return JSON.parse(message.content.toString('utf8')) as DeliveryReport;
}

export class NodeFixture {
  readonly dir: string;
  readonly harness: BrokerHarness;
  readonly ca: CertificateAuthority;
  config: NodeConfig;
  readonly vhost: string;
  readonly management: ManagementClient;
  readonly policy: PolicyEngine;
  readonly bundle: Buffer;
  readonly verification: BundleVerification;
  /** Every JSON log line of every in-process router. */
  readonly logLines: Array<Record<string, unknown>> = [];
  readonly logger: Logger;
  readonly routers: RouterHandle[] = [];
  readonly #material = new Map<string, { certificatePem: string; privateKeyPem: string }>();
  readonly #clients: TestClient[] = [];
  readonly #children: RouterProcess[] = [];
  #routerShards = 1;
  /** This node's TLS files for its shovels, once `linkWithShovels` installed them. */
  #linkTls: LinkTlsFiles | undefined;

  private constructor(init: {
    dir: string;
    harness: BrokerHarness;
    ca: CertificateAuthority;
    config: NodeConfig;
    policy: PolicyEngine;
    bundle: Buffer;
    verification: BundleVerification;
  }) {
    this.dir = init.dir;
    this.harness = init.harness;
    this.ca = init.ca;
    this.config = init.config;
    this.vhost = vhostName(init.config.node.id);
    this.management = init.harness.management();
    this.policy = init.policy;
    this.bundle = init.bundle;
    this.verification = init.verification;
    this.logger = pino(
      { level: 'info', base: undefined },
      {
        write: (line: string) => {
          this.logLines.push(JSON.parse(line) as Record<string, unknown>);
        },
      },
    );
  }

  static async start(options: NodeFixtureOptions = {}): Promise<NodeFixture> {
    const label = options.label ?? 'fixture';
    const nodeId = options.nodeId ?? 'node-a';
    const dir = await mkdtemp(join(tmpdir(), `dmr-${label}-`));
    let harness: BrokerHarness | undefined;
    try {
      const ca = options.ca ?? (await CertificateAuthority.init(join(dir, 'pki'), { trustDomain: TRUST_DOMAIN }));
      if (ca.trustDomain !== TRUST_DOMAIN) throw new Error(`the fixture's CA must be for ${TRUST_DOMAIN}`);
      const config = fixtureConfig(nodeId, options.clients ?? DEFAULT_CLIENTS, {
        ...DEFAULT_LIMITS,
        ...options.limits,
        ...(options.mesh?.maxHops === undefined ? {} : { maxHops: options.mesh.maxHops }),
      });
      const deny = (kind: 'client' | 'node') => (id: string) => ({
        id,
        kind,
        reason: 'test',
        since: '2026-01-01T00:00:00.000Z',
      });
      config.denylist = [
        ...(options.denied ?? []).map(deny('client')),
        ...(options.mesh?.deniedNodes ?? []).map(deny('node')),
      ];
      if (options.mesh !== undefined) {
        config.links = options.mesh.links.map((peer) => ({
          peer,
          amqpsEndpoint: 'amqps://127.0.0.1:5671',
          cost: 1,
          peerCertificates: [],
        }));
        config.routes = [...options.mesh.routes];
      }
      const [started, policy] = await Promise.all([
        // The broker refuses a body over the node's limit itself, before storing it (max_message_size).
        startBrokers({
          dir: join(dir, 'brokers'),
          ca,
          // One harness per node of a mesh: distinct broker names.
          namePrefix: options.mesh === undefined ? label : `${label}-${nodeId}`,
          maxMessageBytes: config.limits.maxMessageBytes,
        }),
        buildPolicy(ca, dir, options.grants ?? [{ from: 'ria', to: 'rik' }]),
      ]);
      harness = started;
      const fixture = new NodeFixture({ dir, harness, ca, config, ...policy });
      fixture.#routerShards = options.routerShards ?? 1;
      const result = await reconcile(
        harness.management(),
        desiredLayout(config, { routerShards: options.routerShards ?? 1 }),
      );
      if (result.conflicts.length > 0) throw new Error(`layout conflicts: ${JSON.stringify(result.conflicts)}`);
      const denied = new Set(options.denied);
      const users = config.clients.filter((client) => client.status === 'active' && !denied.has(client.id));
      for (const id of [nodeId, ...users.map((client) => client.id)]) {
        const issued = await ca.issueWithKey(
          id === nodeId
            ? { kind: 'node', id, dns: [harness.node(0).servername], ips: ['127.0.0.1'] }
            : { kind: 'client', id },
        );
        fixture.#material.set(id, { certificatePem: issued.chainPem, privateKeyPem: issued.privateKeyPem });
        // As a node agent does (broker-tls.ts): the broker presents the node's certificate, the identity
        // clients pin (spiffe://<td>/node/<nodeId>).
        if (id === nodeId) await harness.installServerCertificate(0, issued);
      }
      if (options.startRouters ?? true) {
        for (let shard = 0; shard < (options.routerShards ?? 1); shard += 1) {
          await fixture.startRouter({
            shard,
            audit: options.audit ?? true,
            ...(options.tracer === undefined ? {} : { tracer: options.tracer }),
          });
        }
      }
      return fixture;
    } catch (error) {
      await harness?.stop();
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  get nodeId(): string {
    return this.config.node.id;
  }

  /** An AMQPS connection to the node's vhost as `id` (a client, or the node id for the router's identity). */
  async connectAs(id: string): Promise<ChannelModel> {
    const material = this.#material.get(id);
    if (material === undefined) throw new Error(`no certificate for ${id}`);
    const connection = await this.harness.connect({ ...material, vhost: this.vhost });
    // A broker restart or a test closing it must not become an uncaught error.
    connection.on('error', () => undefined);
    return connection;
  }

  /**
   * The node's identity for the mesh, as a node agent would hand it to its
   * routers: the node key and certificate chain this fixture's CA issued,
   * the CA's roots, and `crlPems` when a test revokes something.
   */
  nodeIdentity(crlPems?: readonly string[]): NodeIdentity {
    const material = this.#material.get(this.nodeId);
    if (material === undefined) throw new Error('no node certificate');
    return {
      certificateChainPem: material.certificatePem,
      privateKeyPem: material.privateKeyPem,
      trustBundlePem: this.ca.trustBundlePem(),
      ...(crlPems === undefined ? {} : { crlPems }),
    };
  }

  /**
   * An AMQPS connection to `peer`'s vhost logged in with this node's
   * certificate: what this node's link (a shovel) uses, and what a
   * test-only forwarder publishes to `peer`'s mesh ingress with.
   */
  async connectToPeer(peer: NodeFixture): Promise<ChannelModel> {
    const material = this.#material.get(this.nodeId);
    if (material === undefined) throw new Error('no node certificate');
    const connection = await peer.harness.connect({ ...material, vhost: peer.vhost });
    connection.on('error', () => undefined);
    return connection;
  }

  /** Starts an in-process router on `shard` (with its own metrics registry) and waits until it consumes. */
  async startRouter(
    overrides: Omit<Partial<RouterOptions>, 'audit'> & { audit?: boolean } = {},
  ): Promise<RouterHandle> {
    const registry = new Registry();
    const metrics = new RouterMetrics(registry);
    const { audit: withAudit = true, ...rest } = overrides;
    const audit = withAudit ? new StreamAuditSink() : undefined;
    const router = new Router({
      nodeId: this.nodeId,
      connect: () => this.connectAs(this.nodeId),
      policy: this.policy,
      logger: this.logger,
      metrics,
      backoff: { initialMs: 100, maxMs: 2_000 },
      identity: this.nodeIdentity(),
      ...(audit === undefined ? {} : { audit }),
      ...rest,
    });
    router.applyConfig(this.config);
    await router.start();
    const handle = { router, metrics, registry, audit };
    this.routers.push(handle);
    return handle;
  }

  /**
   * Starts a router in a child process (src/testing/router-main.ts) on
   * `shard`; resolves once it logged that it consumes. Kill it with
   * `child.kill('SIGKILL')` (by its PID, which this fixture owns).
   * With `replayDir` its replay memory is kept there (ReplayJournal), as
   * `dmr node run` keeps it in the state dir: pass the same directory to
   * the router that replaces a killed one.
   */
  async spawnRouter(shard = 0, options: { replayDir?: string } = {}): Promise<RouterProcess> {
    const material = this.#material.get(this.nodeId);
    if (material === undefined) throw new Error('no node certificate');
    const spec = join(this.dir, `router-${shard}-${randomUUID()}.json`);
    const bundleFile = join(this.dir, 'bundle.tar.gz');
    await writeFile(bundleFile, this.bundle);
    await writeFile(
      spec,
      JSON.stringify({
        shard,
        port: this.harness.node(0).amqpsPort,
        caPem: this.harness.trustBundlePem,
        ...material,
        config: this.config,
        bundleFile,
        verification: this.verification,
        ...(options.replayDir === undefined ? {} : { replayDir: options.replayDir }),
      }),
    );
    // The IPC channel is a lifeline: if this test process dies (a test-file timeout), the router stops too.
    const child = spawn(process.execPath, [join(here, 'router-main.js'), spec], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const lines: string[] = [];
    let buffered = '';
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        const parts = buffered.split('\n');
        buffered = parts.pop() ?? '';
        for (const line of parts) {
          lines.push(line);
          if (line.includes('"router consuming"')) resolve();
        }
      });
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      void exited.then((code) => reject(new Error(`router process exited (${String(code)}): ${stderr}`)));
    });
    const handle = { child, lines, exited };
    this.#children.push(handle);
    await ready;
    return handle;
  }

  /** A connected test client (a confirm channel for sending, a consumer on its own queue). */
  async client(id: string): Promise<TestClient> {
    const connection = await this.connectAs(id);
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => undefined);
    const inbox: ConsumeMessage[] = [];
    const waiters: Array<(message: ConsumeMessage) => void> = [];
    let consuming: Promise<unknown> | undefined;
    const ensureConsuming = (): Promise<unknown> =>
      (consuming ??= channel.consume(`dmr.client.${id}`, (message) => {
        if (message === null) return;
        channel.ack(message);
        const waiter = waiters.shift();
        if (waiter) waiter(message);
        else inbox.push(message);
      }));
    const next = async (timeoutMs = 10_000): Promise<ConsumeMessage> => {
      await ensureConsuming();
      const queued = inbox.shift();
      if (queued) return queued;
      return new Promise<ConsumeMessage>((resolve, reject) => {
        const timer = setTimeout(() => {
          const index = waiters.indexOf(waiter);
          if (index >= 0) waiters.splice(index, 1);
          reject(new Error(`${id}: no message within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = (message: ConsumeMessage): void => {
          clearTimeout(timer);
          resolve(message);
        };
        waiters.push(waiter);
      });
    };
    const client: TestClient = {
      id,
      connection,
      channel,
      send: (options = {}) => sendAs(channel, id, options),
      next,
      drain: async (quietMs = 1_000, maxMs = 10_000) => {
        // Bounded as well as quiet-ended: under a continuous stream a quiet gap may never come.
        const messages: ConsumeMessage[] = [];
        const deadline = Date.now() + maxMs;
        while (Date.now() < deadline) {
          try {
            messages.push(await next(Math.max(1, Math.min(quietMs, deadline - Date.now()))));
          } catch {
            return messages;
          }
        }
        return messages;
      },
      close: () => connection.close().catch(() => undefined),
    };
    this.#clients.push(client);
    return client;
  }

  /**
   * Re-declares `queue`, a quorum queue of the layout, empty with its own arguments but room for `maxLength`
   * messages, and binds it again (`bindings`: exchange, routing key): the layout's limits are node-wide, a test
   * wants one small queue. The routers do not notice: the bindings are the same.
   */
  async resizeQueue(
    queue: string,
    maxLength: number,
    bindings: ReadonlyArray<readonly [exchange: string, routingKey: string]>,
  ): Promise<void> {
    const path = `/queues/${encodeURIComponent(this.vhost)}/${queue}`;
    const info = (await this.management.request('GET', path)) as { arguments: Record<string, string | number> };
    await this.management.request('DELETE', path);
    await this.management.declareQueue(this.vhost, queue, {
      arguments: { ...info.arguments, 'x-max-length': maxLength },
    });
    for (const [exchange, key] of bindings) await this.management.bindQueue(this.vhost, exchange, queue, key);
  }

  /** Removes and returns up to `count` messages of `queue` via the management API. */
  async take(queue: string, count = 1000): Promise<PeekedMessage[]> {
    const body = await this.management.request(
      'POST',
      `/queues/${encodeURIComponent(this.vhost)}/${encodeURIComponent(queue)}/get`,
      { count, ackmode: 'ack_requeue_false', encoding: 'auto', truncate: 100_000 },
    );
    return Array.isArray(body) ? body.filter(isRecord).map((item) => item as unknown as PeekedMessage) : [];
  }

  /**
   * Takes from `dmr.rejected` until the message `messageId` is among what it took (the others taken with it are
   * dropped), and returns it.
   */
  async awaitRejected(messageId: string | undefined, timeoutMs: number): Promise<PeekedMessage> {
    let found: PeekedMessage | undefined;
    await waitFor(
      `${String(messageId)} in ${REJECTED_QUEUE}`,
      async () => {
        found ??= (await this.take(REJECTED_QUEUE)).find((message) => message.properties.message_id === messageId);
        return found !== undefined;
      },
      { timeoutMs },
    );
    return found as PeekedMessage;
  }

  /** Messages ready in `queue` (management statistics lag by up to a few seconds). */
  async depth(queue: string): Promise<number> {
    const info = await this.management.request(
      'GET',
      `/queues/${encodeURIComponent(this.vhost)}/${encodeURIComponent(queue)}`,
    );
    return isRecord(info) && typeof info.messages === 'number' ? info.messages : 0;
  }

  /**
   * Every record in `dmr.audit`, read from the start of the stream with a
   * reader identity created for the purpose (read on `dmr.audit` only).
   * Resolves once no record arrived for `quietMs`.
   */
  async auditRecords(quietMs = 1_000): Promise<Buffer[]> {
    const reader = 'audit-reader';
    await this.helperIdentity(reader, { configure: '', write: '', read: '^dmr\\.audit$' });
    const connection = await this.connectAs(reader);
    try {
      const channel = await connection.createChannel();
      // Streams need a prefetch and manual acks.
      await channel.prefetch(500);
      const records: Buffer[] = [];
      let last = Date.now();
      await channel.consume(
        'dmr.audit',
        (message) => {
          if (message === null) return;
          // A batch message carries several records (audit.ts); anything else (checkpoints, markers) stays whole.
          if (message.properties.type === AUDIT_RECORDS_TYPE) {
            records.push(...auditRecordsIn(message.properties.type, message.content));
          } else records.push(message.content);
          last = Date.now();
          channel.ack(message);
        },
        { arguments: { 'x-stream-offset': 'first' } },
      );
      while (Date.now() - last < quietMs) await new Promise((resolve) => setTimeout(resolve, 100));
      return records;
    } finally {
      await connection.close().catch(() => undefined);
    }
  }

  /**
   * A test-only broker user with a certificate of its own and exactly
   * `permissions` in the node's vhost (created once): for readers and relays
   * no client or router may be, such as the audit reader or a link forwarder.
   */
  async helperIdentity(id: string, permissions: { configure: string; write: string; read: string }): Promise<void> {
    if (this.#material.has(id)) return;
    const issued = await this.ca.issueWithKey({ kind: 'client', id });
    this.#material.set(id, { certificatePem: issued.chainPem, privateKeyPem: issued.privateKeyPem });
    await this.management.createCertificateUser(clientUser(id), []);
    await this.management.setPermissions(this.vhost, clientUser(id), permissions);
  }

  /**
   * Applies a changed configuration (revision + 1) to the in-process routers
   * only, as a configuration stream would: the broker layout stays as it
   * is. For what the router decides by (routes, denylist, directory).
   */
  reconfigure(change: (config: NodeConfig) => void): NodeConfig {
    const next = structuredClone(this.config);
    change(next);
    next.revision = this.config.revision + 1;
    this.config = next;
    for (const { router } of this.routers) router.applyConfig(next);
    return next;
  }

  /**
   * Gives the node real links to `peers`, as its agent would: each link's
   * endpoint is the peer's broker, this node's TLS files are installed for
   * its broker, and the reconciler keeps a shovel per link (the routers'
   * view is unchanged: same peers, same routes). Resolves once every
   * shovel runs.
   */
  async linkWithShovels(peers: readonly NodeFixture[]): Promise<void> {
    const material = this.#material.get(this.nodeId);
    if (material === undefined) throw new Error('no node certificate');
    const endpoints = new Map(peers.map((peer) => [peer.nodeId, peer.harness.node(0).amqpsUrl]));
    this.config = {
      ...this.config,
      links: this.config.links.map((link) => ({
        ...link,
        amqpsEndpoint: endpoints.get(link.peer) ?? link.amqpsEndpoint,
      })),
    };
    const tls = await installLinkTlsFiles(join(this.dir, 'link-tls'), {
      chainPem: material.certificatePem,
      privateKeyPem: material.privateKeyPem,
      trustPem: this.harness.trustBundlePem,
    });
    this.#linkTls = tls;
    const layout = desiredLayout(this.config, {
      routerShards: this.#routerShards,
      links: { tls, reconnectDelaySeconds: 1 },
    });
    const result = await reconcile(this.management, layout);
    if (result.conflicts.length > 0) throw new Error(`layout conflicts: ${JSON.stringify(result.conflicts)}`);
    for (const peer of peers) {
      let last: unknown;
      await waitFor(
        () => `shovel ${linkShovelName(peer.nodeId)} of ${this.nodeId} to run; last ${JSON.stringify(last)}`,
        async () => {
          const status = await this.management.shovelStatus(this.vhost, linkShovelName(peer.nodeId));
          last = status;
          return status?.state === 'running';
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
    }
  }

  /**
   * A changed configuration (revision + 1) applied as a node agent applies
   * one: the reconciler first (with `drains` kept across calls, so a removed
   * link drains before its shovel and queue go), then the routers. Needs
   * `linkWithShovels` first; new links' endpoints must be set by `change`.
   */
  async applyMeshConfig(
    change: (config: NodeConfig) => void,
    drains: DrainTracker,
  ): Promise<Awaited<ReturnType<typeof reconcile>>> {
    if (this.#linkTls === undefined) throw new Error('linkWithShovels first');
    const next = structuredClone(this.config);
    change(next);
    next.revision = this.config.revision + 1;
    const result = await this.reconcileLinks(next, drains);
    this.config = next;
    for (const { router } of this.routers) router.applyConfig(next);
    return result;
  }

  /** One reconcile of the current configuration, links included (a drain's later passes). */
  reconcileLinks(config: NodeConfig, drains: DrainTracker): ReturnType<typeof reconcile> {
    if (this.#linkTls === undefined) throw new Error('linkWithShovels first');
    const layout = desiredLayout(config, {
      routerShards: this.#routerShards,
      links: { tls: this.#linkTls, reconnectDelaySeconds: 1 },
    });
    return reconcile(this.management, layout, { drains });
  }

  /** Log lines of decisions about `messageId`. */
  decisions(messageId: string): Array<Record<string, unknown>> {
    return this.logLines.filter((line) => line.msg === 'route' && line.messageId === messageId);
  }

  async stopRouters(): Promise<void> {
    await Promise.all(this.routers.splice(0).map((handle) => handle.router.stop()));
  }

  async stop(): Promise<void> {
    await this.stopRouters();
    for (const { child, exited } of this.#children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL'); // our own child, by PID
        await exited;
      }
    }
    await Promise.all(this.#clients.map((client) => client.close()));
    await this.policy.close();
    await this.harness.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

function fixtureConfig(nodeId: string, clients: readonly FixtureClientSpec[], limits: Limits): NodeConfig {
  const local = clients.filter((client) => (client.homeNode ?? nodeId) === nodeId);
  return {
    apiVersion: 'dmr.ee/v1',
    kind: 'NodeConfig',
    trustDomain: TRUST_DOMAIN,
    node: { id: nodeId, amqpsEndpoint: 'amqps://127.0.0.1:5671', managementEndpoint: 'https://127.0.0.1:15671' },
    revision: 1,
    issuedAt: new Date().toISOString().replace(/\.\d+Z$/, '.000Z'),
    clients: local.map((client) => ({
      id: client.id,
      organisation: client.organisation,
      roles: client.roles ?? [],
      labels: client.labels ?? {},
      status: client.status ?? 'active',
    })),
    directory: clients.map((client) => ({
      id: client.id,
      homeNode: client.homeNode ?? nodeId,
      organisation: client.organisation,
      roles: client.roles ?? [],
      status: client.status ?? 'active',
      certificates: [],
    })),
    links: [],
    routes: [],
    denylist: [],
    limits,
  };
}

async function buildPolicy(
  ca: CertificateAuthority,
  dir: string,
  grants: Grant[],
): Promise<{ policy: PolicyEngine; bundle: Buffer; verification: BundleVerification }> {
  const rego = join(dir, 'rego');
  await cp(REGO_DIR, rego, { recursive: true });
  const dataFile = join(rego, 'dmr', 'data.json');
  const data = JSON.parse(await readFile(dataFile, 'utf8')) as Record<string, unknown>;
  data.grants = grants;
  await writeFile(dataFile, JSON.stringify(data));
  const issued = await ca.issueWithKey({ kind: 'centops', id: 'policy-signer' });
  const signer = new BundleSigner({ certificateChainPem: issued.chainPem, privateKeyPem: issued.privateKeyPem });
  const built = await buildBundle({ dir: rego, revision: '1', signer });
  const verification = { trustBundlePem: ca.rootCertificatePem, expectedSigner: policySignerSpiffeId(TRUST_DOMAIN) };
  return { policy: await PolicyEngine.load(built.archive, { verification }), bundle: built.archive, verification };
}

function sendAs(channel: ConfirmChannel, id: string, options: SendOptions): Promise<string | undefined> {
  const messageId = options.messageId === undefined ? randomUUID() : (options.messageId ?? undefined);
  const headers: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (options.to !== null) headers['dmr-recipient'] = options.to ?? 'rik-bot';
  if (options.version !== null) headers['dmr-version'] = options.version ?? 1;
  for (const [name, value] of Object.entries(options.headers ?? {})) headers[name] = value;
  const properties: Options.Publish = {
    persistent: true,
    ...(messageId === undefined ? {} : { messageId }),
    ...(options.userId === null ? {} : { userId: options.userId ?? clientUser(id) }),
    ...(options.type === null ? {} : { type: options.type ?? 'ChatMessage' }),
    ...(options.timestamp === null ? {} : { timestamp: options.timestamp ?? Math.floor(Date.now() / 1000) }),
    ...(options.expiration === undefined ? {} : { expiration: options.expiration }),
    contentType: 'application/json',
    headers,
    ...options.properties,
  };
  const body = Buffer.isBuffer(options.body) ? options.body : Buffer.from(options.body ?? '{"text":"hello"}', 'utf8');
  return new Promise((resolve, reject) => {
    channel.publish('dmr.ingress', '', body, properties, (error: unknown) =>
      error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(messageId),
    );
  });
}
