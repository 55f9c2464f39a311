/**
 * The CentOps server: two HTTPS listeners over one store and one CA.
 *
 * - the API (`listen`): mutual TLS only. The TLS layer itself refuses a
 *   peer without a certificate chaining to the trust bundle
 *   (requestCert + rejectUnauthorized), and auth.ts then maps the
 *   certificate to a principal and refuses revoked, denylisted or foreign
 *   ones on every request.
 * - enrolment (`enrolListen`): server-authenticated TLS, no client
 *   certificate, serving only POST /v1/enroll and the public PKI documents.
 *   A caller that has no certificate yet cannot present one; keeping it on
 *   its own socket means no route of the API can ever be reached without
 *   one, whatever a route forgets (ADR 0004).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server as HttpsServer, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import AjvCompiler from '@fastify/ajv-compiler';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { DmrError, parseDuration, serveMetrics, type MetricsServer, type Tracing } from '@dmr/core';
import { traceRequests } from './tracing.js';
import { CertificateAuthority } from '@dmr/pki';
import { ConfigSigner, RevisionHub, feedRoutes } from '../feed/index.js';
import { PolicyService } from '../policy/service.js';
import { ensurePolicySigner, policySignerPaths } from '../policy/signer.js';
import { auditLogRoutes } from '../routes/audit-log.js';
import { denylistRoutes } from '../routes/denylist.js';
import { directoryRoutes } from '../routes/directory.js';
import { enrolRoutes, pkiRoutes } from '../routes/pki.js';
import { operatorRoutes } from '../routes/operators.js';
import { operationsRoutes } from '../routes/operations.js';
import { policyRoutes } from '../routes/policies.js';
import { registryRoutes } from '../routes/registry.js';
import type { RouteContext } from '../routes/context.js';
import { openStore, type Store } from '../store/index.js';
import { IssuedIndex, READERS, authenticate, installAuth, requireRole } from './auth.js';
import { CertificateService } from './certificates.js';
import { formatListen, type CentOpsConfig } from './config.js';
import { localActor } from './credentials.js';
import { installErrorHandler } from './errors.js';
import { nodeEventRoutes } from '../routes/node-events.js';
import { CentOpsEvents } from './events.js';
import { CentOpsMetrics } from './metrics.js';
import { assertNoStrayKeys } from './stray-keys.js';
import { AuditWitness } from './witness.js';

export const API_VERSION = '0.1.0';

export interface StartOptions {
  /** fastify's logger: false in tests, pino options (JSON to stdout) in `serve`. */
  logger?: FastifyServerOptions['logger'];
  /** An already open store (tests); otherwise config.database is opened and closed with the server. */
  store?: Store;
  /** Feed poll interval (ms) for revision changes made by other processes. */
  pollIntervalMs?: number;
  /** The clock of the certificate service (renewal limits, superseding); tests share it with the store. */
  now?: () => Date;
  /** How long one policy test or change may run opa (default 60 s). */
  policyTimeoutMs?: number;
  /** The metrics to record into (tests read them); a new registry otherwise. */
  metrics?: CentOpsMetrics;
  /** A span per API and enrolment request (`serve` passes startTracing's); none: no hooks. */
  tracer?: Tracing['tracer'];
}

/** The enrolment listener takes a token and a CSR: a few KiB. */
export const ENROL_BODY_LIMIT = 64 * 1024;
/** Requests per source address per minute on the enrolment listener. */
export const DEFAULT_ENROL_REQUESTS_PER_MINUTE = 60;

export interface CentOpsServer {
  api: FastifyInstance;
  enrol: FastifyInstance;
  store: Store;
  ca: CertificateAuthority;
  /** The policy set and its bundle (src/policy/). */
  policies: PolicyService;
  /** Enrolment, renewal, revocation by identity, the CRL (certificates.ts). */
  certificates: CertificateService;
  apiUrl: string;
  enrolUrl: string;
  metrics: CentOpsMetrics;
  /** `http://host:port` of GET /metrics and /healthz when `metricsListen` is configured. */
  metricsUrl: string | undefined;
  /** Witnesses the routers' audit checkpoints and checkpoints CentOps' own audit log (witness.ts). */
  witness: AuditWitness;
  /** Configuration streams and long-polls waiting for a new revision (a test waits for its long-poll to be parked). */
  feedWaiters(): number;
  /** Stops accepting, finishes what is in flight, closes the store. */
  close(): Promise<void>;
}

function tlsServerFactory(tls: ServerOptions) {
  // fastify keeps its default (http) server types; the socket is a TLSSocket at run time (auth.ts checks).
  return (handler: Parameters<typeof createServer>[1]): HttpsServer => createServer(tls, handler);
}

const ajvPool = AjvCompiler();

/**
 * Request validation with one Ajv per kind of input. Bodies are JSON and are
 * judged exactly as sent: no type coercion (fastify's default would turn
 * `{"name": 3}` into `"3"` and `[x]` into `x`), so a wrong type is a 422
 * naming the field. Querystrings, path parameters and headers arrive as
 * text, so they keep fastify's coercion (`?limit=10`, `?dryRun=true`).
 * Both report every problem and never strip unknown fields (the schemas
 * forbid them, so they are refused and named).
 */
const buildValidator: NonNullable<
  NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']
> = (externalSchemas, options) => {
  const shared = { plugins: options?.plugins, onCreate: options?.onCreate };
  const strictBody = ajvPool(externalSchemas, {
    ...shared,
    customOptions: { allErrors: true, removeAdditional: false, coerceTypes: false },
  });
  const coercing = ajvPool(externalSchemas, {
    ...shared,
    customOptions: { allErrors: true, removeAdditional: false, coerceTypes: 'array' },
  });
  return (route) => (route.httpPart === 'body' ? strictBody(route) : coercing(route));
};

function baseApp(logger: FastifyServerOptions['logger'], tls: ServerOptions, bodyLimit: number): FastifyInstance {
  const app = Fastify({
    logger: logger ?? false,
    serverFactory: tlsServerFactory(tls) as unknown as FastifyServerOptions['serverFactory'],
    schemaController: { compilersFactory: { buildValidator } },
    bodyLimit,
    return503OnClosing: true,
  });
  installErrorHandler(app);
  return app;
}

async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port });
  const address = app.server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `https://${shownHost}:${address.port}`;
}

export async function startServer(config: CentOpsConfig, options: StartOptions = {}): Promise<CentOpsServer> {
  await assertNoStrayKeys(config);
  const [certificate, key, signerChain, signerKey] = await Promise.all([
    readFile(config.tls.certificate, 'utf8'),
    readFile(config.tls.key, 'utf8'),
    readFile(config.signer.certificate, 'utf8'),
    readFile(config.signer.key, 'utf8'),
  ]);
  const ca = await CertificateAuthority.open(config.caDir);
  const store = options.store ?? (await openStore(config.database));
  const ownsStore = options.store === undefined;
  const hub = new RevisionHub({ store, pollIntervalMs: options.pollIntervalMs });
  const signer = new ConfigSigner({ certificateChainPem: signerChain, privateKeyPem: signerKey });
  const issued = new IssuedIndex(ca);
  const metrics = options.metrics ?? new CentOpsMetrics();
  // The API's logger, read when an event happens (the listener is made below; no event comes before it).
  const events = new CentOpsEvents({
    metrics,
    store,
    trustDomain: config.trustDomain,
    logger: {
      info: (fields, message) => api.log.info(fields, message),
      warn: (fields, message) => api.log.warn(fields, message),
      error: (fields, message) => api.log.error(fields, message),
    },
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  const context: RouteContext = {
    events,
    store,
    ca,
    issued,
    trustDomain: config.trustDomain,
    // A registry change may have revoked certificates (delete revokes): the CA's records follow before nodes hear of it.
    onRevision: (revision) => {
      events.published(revision);
      void service
        .syncRevocations()
        .catch((error: unknown) => api.log.error({ err: error }, 'revoking at the CA failed'))
        .finally(() => hub.publish(revision));
    },
  };
  const service = new CertificateService({
    ...context,
    ...(config.limits?.renewalsPerHour === undefined ? {} : { renewalsPerHour: config.limits.renewalsPerHour }),
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(config.renewalOverlap === undefined ? {} : { renewalOverlapMs: parseDuration(config.renewalOverlap) }),
    ...(config.renewalGrace === undefined ? {} : { renewalGraceMs: parseDuration(config.renewalGrace) }),
    events,
  });
  // Predecessors of renewed certificates are revoked once their overlap is over (and before every CRL).
  const sweeper = setInterval(
    () => void service.sweep().catch((error: unknown) => api.log.error({ err: error }, 'superseding failed')),
    Math.max(1000, Math.min(60_000, service.renewalOverlapMs / 4)),
  );
  sweeper.unref();
  // Issued here when a CentOps directory predates policies (init makes it otherwise).
  const policySigner = await ensurePolicySigner(
    policySignerPaths(config.signer.certificate),
    ca,
    store,
    localActor('serve'),
  );
  const policies = new PolicyService({
    store,
    signer: policySigner.signer,
    ...(options.policyTimeoutMs === undefined ? {} : { timeoutMs: options.policyTimeoutMs }),
  });
  const tls: ServerOptions = { cert: certificate, key, minVersion: 'TLSv1.2' };

  // Authenticated callers only; a policy set alone may be 4 MiB of Rego and data.
  const api = baseApp(
    options.logger,
    { ...tls, ca: ca.trustBundlePem(), requestCert: true, rejectUnauthorized: true },
    8 * 1024 * 1024,
  );
  await api.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'DMR CentOps API',
        version: API_VERSION,
        description:
          'Mutual TLS only: the caller is the identity of its client certificate. Errors are ' +
          '{error:{code,message,details}}. Enrolment (POST /v1/enroll) is served on the separate enrolment listener.',
      },
    },
  });
  const auth = { store, trustDomain: config.trustDomain, issued };
  metrics.instrument(api, 'api');
  traceRequests(api, options.tracer, 'api');
  installAuth(api, auth);
  api.get('/v1/openapi.json', { schema: { hide: true }, preHandler: requireRole(...READERS) }, async () =>
    api.swagger(),
  );
  await api.register(registryRoutes(context));
  await api.register(operationsRoutes(context));
  await api.register(pkiRoutes(service, context));
  await api.register(operatorRoutes(service));
  await api.register(denylistRoutes(context, service));
  await api.register(directoryRoutes(context));
  await api.register(policyRoutes(context, policies));
  await api.register(nodeEventRoutes(context));
  const witness = new AuditWitness({
    store,
    trustDomain: config.trustDomain,
    signerChainPem: signerChain,
    signerKeyPem: signerKey,
    logger: api.log,
  });
  await api.register(auditLogRoutes(context, witness));
  metrics.watch({
    revision: () => store.revision(),
    policyVersion: async () => (await policies.current())?.version,
    feedSubscribers: () => hub.listenerCount,
    auditLogBroken: () => witness.ownLogBroken,
  });
  // Streams and long-polls outlive the request's authentication: the feed checks the certificate again per document.
  await api.register(feedRoutes, {
    store,
    signer,
    hub,
    build: { trustDomain: config.trustDomain },
    reauthenticate: (request) => authenticate(request, auth),
  });

  const enrol = baseApp(options.logger, tls, ENROL_BODY_LIMIT);
  metrics.instrument(enrol, 'enrol');
  traceRequests(enrol, options.tracer, 'enrol');
  // Anyone can reach this listener: every route, the public documents too, counts against the source's budget.
  await enrol.register(rateLimit, {
    global: true,
    max: config.limits?.enrolRequestsPerMinute ?? DEFAULT_ENROL_REQUESTS_PER_MINUTE,
    timeWindow: 60_000,
    errorResponseBuilder: (_request, context) =>
      new DmrError('RATE_LIMITED', `too many requests from this address; try again in ${context.after}`, {
        details: { retryAfterSeconds: Math.ceil(context.ttl / 1000) },
        hint: 'enrolment needs one request; wait and retry once',
      }),
  });
  await enrol.register(enrolRoutes(service, context));

  let apiUrl: string;
  let enrolUrl: string;
  let metricsServer: MetricsServer | undefined;
  try {
    apiUrl = await listen(api, config.listen.host, config.listen.port);
    enrolUrl = await listen(enrol, config.enrolListen.host, config.enrolListen.port);
    if (config.metricsListen !== undefined) {
      // Up while it answers: the API's own health is what its callers (nodes, operators) see.
      metricsServer = await serveMetrics(formatListen(config.metricsListen), metrics.registry, {
        unhealthyReason: () => undefined,
      });
    }
  } catch (error) {
    clearInterval(sweeper);
    metricsServer?.server.close();
    await witness.stop();
    await Promise.allSettled([api.close(), enrol.close()]);
    hub.close();
    if (ownsStore) await store.close();
    throw error;
  }
  witness.start();
  return {
    api,
    witness,
    enrol,
    store,
    ca,
    policies,
    apiUrl,
    enrolUrl,
    metrics,
    metricsUrl: metricsServer?.url,
    certificates: service,
    feedWaiters: () => hub.listenerCount,
    async close() {
      clearInterval(sweeper);
      await witness.stop();
      // SSE streams end when the hub closes; then both listeners drain and the store goes last.
      hub.close();
      await Promise.allSettled([api.close(), enrol.close(), metricsServer?.close()]);
      if (ownsStore) await store.close();
    },
  };
}
