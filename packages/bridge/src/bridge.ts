/**
 * The HTTP bridge (`dmr bridge run`, docs/bridge.md): the Bürokratt v1 agent
 * API in front of a DMR client built on the SDK.
 *
 * - `POST /v1/messages`: validates the v1 JSON (400 with every field error),
 *   sends it with DmrClient.send and answers 202 only after the broker
 *   confirmed; a refusal by the node that arrives in time becomes a 4xx
 *   (verdicts.ts); DMR unavailable is 503 with Retry-After.
 * - Received messages are POSTed as v1 JSON (plus `senderId`) to the
 *   endpoint with bounded retries, then dead-lettered (delivery.ts).
 * - `GET /v1/health`: broker connection, certificate validity, CentOps.
 * - `GET /metrics`: Prometheus.
 *
 * Who may call it (auth.ts, docs/bridge.md "Authentication"): bearer tokens
 * and/or mutual TLS; without either the bridge listens only on loopback and
 * then answers only loopback `Host` names (DNS rebinding). With
 * authentication configured, every route needs it except `GET /v1/health`,
 * which tells an unauthenticated caller only `status` (an orchestrator's
 * probe carries no secret), the checks only to an authenticated one.
 */
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { pino, type Logger } from 'pino';
import {
  DmrError,
  ERROR_CATALOGUE,
  edgeTraceContext,
  inServerSpan,
  isDmrError,
  isErrorCode,
  isValidId,
  type ErrorCode,
  type Tracing,
} from '@dmr/core';
import { UUID_PATTERN } from '@dmr/contract';
import { centOpsServerCheck } from '@dmr/pki';
import {
  DmrClient,
  describeCertificate,
  loadTls,
  type ConnectOptions,
  type DeliveryReport,
  type ReceivedMessage,
  type Subscription,
  type TlsPem,
} from '@dmr/sdk';
import { bearerToken, isLoopbackHost, isLoopbackHostHeader } from './auth.js';
import { authProblems, TOKENS_VARIABLE, type BridgeConfig } from './config.js';
import { DeliveryAborted, DeliveryFailed, EndpointDeliverer, displayUrl } from './delivery.js';
import { CentOpsProbe, certificateHealth, type Health, type HealthCheck } from './health.js';
import { httpsOptions } from './https.js';
import { BridgeMetrics } from './metrics.js';
import { ReportPoster, reportDocument } from './reports.js';
import { checkV1Body, checkV1Message, toAmqpBody, type V1Delivered, type V1Message } from './v1.js';
import { Verdicts } from './verdicts.js';

export type { Health, HealthCheck } from './health.js';

export const V1_CONTENT_TYPE = 'application/json';

export interface BridgeOptions {
  /** A pino logger; default JSON to stdout at config.logLevel. */
  logger?: Logger;
  metrics?: BridgeMetrics;
  /** Overrides for the SDK client (tests: back-off, dedup). */
  client?: Partial<ConnectOptions>;
  /** Spans for POST /v1/messages (`dmr bridge run` passes startTracing's; none: no spans, no cost). */
  tracer?: Tracing['tracer'];
}

/** Routes an unauthenticated caller may use while authentication is configured (see the file comment). */
const OPEN_ROUTES = new Set(['/v1/health']);

function errorBody(error: DmrError): ReturnType<DmrError['toJSON']> {
  return error.toJSON();
}

/** A node refusal as the HTTP answer: its catalogue status when 4xx, else 503 (the node cannot take it now). */
function refusal(report: DeliveryReport): DmrError {
  const code: ErrorCode = isErrorCode(report.reason) ? report.reason : 'INTERNAL';
  return new DmrError(code, `the DMR node refused the message: ${report.detail}`, {
    details: {
      messageId: report.messageId,
      node: report.node,
      ...(report.policy === undefined ? {} : { policy: report.policy }),
    },
  });
}

export class Bridge {
  readonly config: BridgeConfig;
  readonly metrics: BridgeMetrics;
  readonly logger: Logger;
  readonly #client: DmrClient;
  readonly #tls: TlsPem;
  readonly #deliverer: EndpointDeliverer;
  readonly #verdicts: Verdicts;
  /** Late delivery reports to reports.url, when one is configured. */
  readonly #reports: ReportPoster | undefined;
  readonly #app: FastifyInstance;
  /** HTTPS options of the listener (server.tls), or undefined for plain HTTP. */
  readonly #https: HttpsServerOptions | undefined;
  /** Requests that presented a valid credential (or arrived over mutual TLS). */
  readonly #authenticated = new WeakSet<FastifyRequest>();
  /** The health probe of CentOps, when one is configured. */
  readonly #centops: CentOpsProbe | undefined;
  #subscription: Subscription | undefined;
  /** Aborted by close(): deliveries stop retrying and hand their message back to the queue. */
  readonly #stopping = new AbortController();
  #inFlight = 0;
  /** POST /v1/messages waiting for DMR's confirm (and verdict): at most send.maxInFlight. */
  #sending = 0;
  #requeued = 0;
  #url: string | undefined;
  readonly #tracer: Tracing['tracer'];
  /** config.listen.host is loopback (#hostChecked). */
  readonly #loopbackListener: boolean;

  private constructor(
    config: BridgeConfig,
    client: DmrClient,
    tls: TlsPem,
    https: HttpsServerOptions | undefined,
    options: BridgeOptions,
  ) {
    this.config = config;
    this.#loopbackListener = isLoopbackHost(config.listen.host);
    this.#client = client;
    this.#tls = tls;
    this.#https = https;
    const trustDomain = describeCertificate(tls.cert).trustDomain;
    const checkCentOps = trustDomain === undefined ? undefined : centOpsServerCheck(trustDomain);
    this.#centops =
      config.centops === undefined
        ? undefined
        : new CentOpsProbe(
            config.centops.url,
            () => ({ ca: this.#tls.ca, cert: this.#client.certificatePem, key: this.#tls.key }),
            checkCentOps,
          );
    this.metrics = options.metrics ?? new BridgeMetrics();
    this.#tracer = options.tracer;
    this.logger =
      options.logger ??
      pino({
        level: config.logLevel,
        base: { service: 'dmr-bridge', id: config.id },
        // Belt and braces: nothing logs request headers today, and a bearer token must never reach a log.
        redact: { paths: ['req.headers.authorization', 'headers.authorization'], censor: '[redacted]' },
      });
    this.#deliverer = new EndpointDeliverer(
      {
        ...config.endpoint,
        ...config.delivery,
        connections: config.delivery.concurrency,
        ...(options.tracer === undefined ? {} : { tracer: options.tracer }),
      },
      this.metrics,
    );
    this.#reports =
      config.reports === undefined
        ? undefined
        : new ReportPoster(config.reports, this.metrics, this.logger.child({ component: 'reports' }));
    this.#verdicts = new Verdicts({ waitMs: config.send.verdictWaitMs, cacheMs: config.send.recipientCacheMs });
    this.#app = this.#buildApp();
  }

  /**
   * Connects to the node (a wrong URL or certificate fails here, with
   * NODE_UNREACHABLE), starts consuming and delivering, and listens.
   */
  static async start(config: BridgeConfig, options: BridgeOptions = {}): Promise<Bridge> {
    const unsafe = authProblems(config);
    if (unsafe.length > 0) {
      throw new DmrError('BRIDGE_CONFIG_INVALID', `refusing to listen: ${unsafe.join('; ')}`, {
        details: { problems: unsafe },
        hint: 'listen on 127.0.0.1 (a service on this host), or configure bearer tokens or mutual TLS (docs/bridge.md "Authentication")',
      });
    }
    const https = await httpsOptions(config);
    const tls = await loadTls(config.tls);
    const client = await DmrClient.connect({
      url: config.broker.url,
      node: config.node,
      id: config.id,
      tls,
      ...(config.broker.serverName === undefined ? {} : { servername: config.broker.serverName }),
      ...options.client,
    });
    let bridge: Bridge;
    try {
      bridge = new Bridge(config, client, tls, https, options);
    } catch (error) {
      await client.close({ drainTimeoutMs: 0 });
      throw error;
    }
    try {
      await bridge.#start();
    } catch (error) {
      await bridge.close({ drainTimeoutMs: 0 });
      throw error;
    }
    return bridge;
  }

  /** `http://host:port` the bridge listens on. */
  get url(): string {
    if (this.#url === undefined) throw new DmrError('INTERNAL', 'the bridge is not listening');
    return this.#url;
  }

  get client(): DmrClient {
    return this.#client;
  }

  /** Messages being delivered to the endpoint or waiting for a retry. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Messages taken by POST /v1/messages and not answered yet (waiting for DMR's confirm or verdict). */
  get sending(): number {
    return this.#sending;
  }

  async #start(): Promise<void> {
    const client = this.#client;
    // Background failures are logged; without a listener the SDK keeps them quiet.
    client.on('error', (error) => {
      const code = isDmrError(error) ? error.code : undefined;
      // Not for this bridge's id (a routing flaw upstream): dead-lettered by the SDK, counted here.
      if (code === 'MESSAGE_MISADDRESSED') this.metrics.deliveries.inc({ result: 'misaddressed' });
      this.logger.warn(
        { err: { message: error.message, ...(code === undefined ? {} : { code }) } },
        'DMR client error',
      );
    });
    client.on('state', (state, previous) => {
      this.metrics.brokerConnected.set(state === 'open' ? 1 : 0);
      this.logger.info({ state, previous }, 'connection to the DMR node');
    });
    client.on('report', (report) => this.#onReport(report));
    this.metrics.brokerConnected.set(client.state === 'open' ? 1 : 0);
    this.#subscription = await client.receive((message) => this.#deliver(message), {
      prefetch: this.config.delivery.concurrency,
      // Refused or undeliverable: dead-lettered (the sender is told). Interrupted by shutdown: back to the queue.
      onError: (error) => (error instanceof DeliveryAborted ? 'requeue' : 'dead-letter'),
    });
    await this.#app.listen({ host: this.config.listen.host, port: this.config.listen.port });
    const address = this.#app.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.#url = `${this.#https === undefined ? 'http' : 'https'}://${host}:${address.port}`;
    const tokens = this.config.auth.tokens;
    if (tokens !== undefined && this.#https === undefined && !isLoopbackHost(this.config.listen.host)) {
      this.logger.warn(
        { listen: this.config.listen.host },
        'bearer tokens travel in clear over plain HTTP: set server.tls, or put a TLS-terminating proxy in front',
      );
    }
    this.logger.info(
      {
        url: this.#url,
        endpoint: displayUrl(this.config.endpoint.url),
        node: this.config.node,
        auth: {
          tokens: tokens?.toJSON() ?? null,
          mutualTls: this.config.server.tls?.clientCaFile !== undefined,
          loopbackHostsOnly: this.#hostChecked(),
        },
      },
      'bridge ready',
    );
  }

  // ---- sending -------------------------------------------------------------------------------------

  #buildApp(): FastifyInstance {
    const app = Fastify({
      loggerInstance: this.logger.child({ component: 'http' }) as FastifyBaseLogger,
      // Request lines would be one log line per message; refusals and failures are logged instead.
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: this.config.bodyLimitBytes,
      return503OnClosing: true,
      ...(this.#https === undefined ? {} : { https: this.#https }),
    }) as unknown as FastifyInstance;
    // Before the body is read: a refused caller costs no parsing.
    app.addHook('onRequest', async (request, reply) => this.#guard(request, reply));
    app.setErrorHandler((error: FastifyError, request, reply) => {
      const status = error.statusCode ?? 500;
      if (status >= 400 && status < 500) {
        // 413: the HTTP body is over bodyLimitBytes, the same refusal as a message over the node's limit.
        const dmrError = new DmrError(status === 413 ? 'MESSAGE_TOO_LARGE' : 'INVALID_ARGUMENT', error.message, {
          details: { fastifyCode: error.code ?? null },
        });
        return reply.code(status).send(errorBody(dmrError));
      }
      request.log.error({ err: error }, 'unexpected failure');
      return reply.code(500).send(errorBody(new DmrError('INTERNAL', 'an unexpected error occurred; see the log')));
    });
    app.setNotFoundHandler((request, reply) =>
      reply.code(404).send(errorBody(new DmrError('NOT_FOUND', `no route ${request.method} ${request.url}`))),
    );
    app.addHook('onResponse', async (request, reply) => {
      this.metrics.requests.inc({ route: request.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
    });
    app.post('/v1/messages', async (request, reply) =>
      inServerSpan(
        this.#tracer,
        'POST /v1/messages',
        request.headers,
        { 'http.request.method': 'POST', 'http.route': '/v1/messages', 'dmr.node': this.config.node },
        () => this.#send(request.body, request.headers, reply),
        () => reply.statusCode,
      ),
    );
    app.get('/v1/health', async (request, reply) => {
      const health = await this.health();
      const code = health.status === 'down' ? 503 : 200;
      if (this.#authRequired() && !this.#authenticated.has(request))
        return reply.code(code).send({ status: health.status });
      return reply.code(code).send(health);
    });
    app.get('/metrics', async (_request, reply) =>
      reply.type(this.metrics.registry.contentType).send(await this.metrics.registry.metrics()),
    );
    return app;
  }

  // ---- who may call -------------------------------------------------------------------------------

  /** Whether callers must authenticate: tokens or mutual TLS are configured. */
  #authRequired(): boolean {
    return (this.config.auth.tokens?.count ?? 0) > 0 || this.config.server.tls?.clientCaFile !== undefined;
  }

  /**
   * A loopback listener answers only loopback Host names (DNS rebinding). Decided once: the listen host does not
   * change, and parsing it into a BlockList check on every request was ≈ 1.5 % of a sending bridge's CPU (0041).
   */
  #hostChecked(): boolean {
    return this.#loopbackListener;
  }

  /** Host check, then credentials; a refusal answers here, before the body is read. */
  async #guard(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    if (this.#hostChecked() && !isLoopbackHostHeader(request.headers.host)) {
      const error = new DmrError(
        'HOST_NOT_ALLOWED',
        'this bridge listens on loopback and answers only loopback host names',
        {
          details: { listen: this.config.listen.host },
          hint: 'call it as http://127.0.0.1:<port> or http://localhost:<port> (a web page under another name is refused: DNS rebinding)',
        },
      );
      return reply.code(error.httpStatus).send(errorBody(error));
    }
    if (!this.#authRequired()) {
      this.#authenticated.add(request);
      return undefined;
    }
    const tokens = this.config.auth.tokens;
    // With mutual TLS the handshake already refused a caller without a certificate of server.tls.clientCaFile.
    const presented = bearerToken(request.headers.authorization);
    const tokenOk = tokens === undefined || (presented !== undefined && tokens.matches(presented));
    if (tokenOk) {
      this.#authenticated.add(request);
      return undefined;
    }
    if (OPEN_ROUTES.has(request.routeOptions.url ?? '')) return undefined;
    // The token itself is never logged, not even a part of it.
    request.log.debug({ ip: request.ip, presented: presented !== undefined }, 'unauthenticated request refused');
    const error = new DmrError(
      'UNAUTHENTICATED',
      presented === undefined ? 'a bearer token is required' : 'the bearer token is not valid',
      {
        hint: `send Authorization: Bearer <token>, a token of auth.tokensFile or ${TOKENS_VARIABLE}`,
      },
    );
    return reply
      .code(401)
      .header(
        'www-authenticate',
        presented === undefined ? 'Bearer realm="dmr-bridge"' : 'Bearer realm="dmr-bridge", error="invalid_token"',
      )
      .send(errorBody(error));
  }

  #unavailable(reply: FastifyReply, error: DmrError): FastifyReply {
    return reply.code(503).header('retry-after', String(this.config.send.retryAfterSeconds)).send(errorBody(error));
  }

  async #send(body: unknown, httpHeaders: FastifyRequest['headers'], reply: FastifyReply): Promise<FastifyReply> {
    const started = performance.now();
    const finish = (result: string): void => {
      this.metrics.sendDuration.observe({ result }, (performance.now() - started) / 1000);
    };
    const checked = checkV1Message(body);
    if (!checked.ok) {
      finish('invalid');
      const error = new DmrError('VALIDATION_FAILED', `the message is invalid: ${checked.errors.length} problem(s)`, {
        details: { problems: checked.errors },
      });
      // 400, not the catalogue's 422: the v1 agent API answers a bad body with 400.
      return reply.code(400).send(errorBody(error));
    }
    const message = checked.value;
    const id = message.id.toLowerCase();
    const content = Buffer.from(JSON.stringify(toAmqpBody(message)), 'utf8');
    if (content.length > this.config.send.maxMessageBytes) {
      finish('refused');
      const error = new DmrError(
        'MESSAGE_TOO_LARGE',
        `the message is ${content.length} bytes as sent to DMR; the limit is ${this.config.send.maxMessageBytes}`,
        {
          details: { messageId: id, sizeBytes: content.length, limitBytes: this.config.send.maxMessageBytes },
          hint: 'send a smaller payload (split the messages array, or move attachments out of the message)',
        },
      );
      return reply.code(error.httpStatus).send(errorBody(error));
    }
    if (this.#client.state !== 'open') {
      finish('unavailable');
      return this.#unavailable(
        reply,
        new DmrError('NODE_UNREACHABLE', `the bridge is not connected to DMR node ${this.config.node}`, {
          hint: 'send again later with the same id; the message was not taken',
        }),
      );
    }
    // A bound instead of a queue: past it, a caller is told at once to come back (503 + Retry-After) rather than
    // wait behind every send the node has not confirmed yet.
    const limit = this.config.send.maxInFlight;
    if (this.#sending >= limit) {
      finish('busy');
      return this.#unavailable(
        reply,
        new DmrError('MESSAGE_NOT_ACCEPTED', `the bridge already has ${limit} messages waiting for DMR's confirm`, {
          details: { messageId: id, inFlight: this.#sending, limit },
          hint: 'send again after Retry-After with the same id; the message was not taken (send.maxInFlight)',
        }),
      );
    }
    this.#sending += 1;
    this.metrics.sendsInFlight.inc();
    try {
      return await this.#sendTaken(message, id, content, this.#traceHeaders(httpHeaders, id), reply, finish);
    } finally {
      this.#sending -= 1;
      this.metrics.sendsInFlight.dec();
    }
  }

  /**
   * The trace context the message goes with (docs/observability.md): the
   * caller's `traceparent` when it is a valid W3C one, else a new trace (a
   * malformed one is replaced, never passed on); with tracing on, this
   * request's span, itself the child of a valid caller's traceparent.
   */
  #traceHeaders(httpHeaders: FastifyRequest['headers'], id: string): Record<string, string> {
    const edge = edgeTraceContext(
      this.#tracer === undefined ? { traceparent: httpHeaders.traceparent, tracestate: httpHeaders.tracestate } : {},
    );
    if (this.#tracer === undefined && edge.replaced) {
      // The value itself is the caller's and not logged.
      this.logger.info({ messageId: id }, 'malformed traceparent replaced by a new trace');
    }
    return edge.tracestate === undefined
      ? { traceparent: edge.traceparent }
      : { traceparent: edge.traceparent, tracestate: edge.tracestate };
  }

  /** The rest of #send for a message within the in-flight bound: publish, wait for the confirm and the verdict. */
  async #sendTaken(
    message: V1Message,
    id: string,
    content: Buffer,
    trace: Record<string, string>,
    reply: FastifyReply,
    finish: (result: string) => void,
  ): Promise<FastifyReply> {
    const wait = this.#verdicts.mustWait(message.recipientId);
    this.#verdicts.sent(id, message.recipientId);
    const verdict = wait ? this.#verdicts.listen(id) : undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.#client.send({
          to: message.recipientId,
          type: message.type,
          messageId: id,
          body: content,
          contentType: V1_CONTENT_TYPE,
          headers: trace,
        }),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => {
            reject(
              new DmrError('MESSAGE_NOT_ACCEPTED', `the DMR node did not confirm message ${id} in time`, {
                details: { messageId: id, timeoutMs: this.config.send.confirmTimeoutMs },
                hint: 'send again later with the same id: DMR drops the duplicate if the first copy got through',
              }),
            );
          }, this.config.send.confirmTimeoutMs);
        }),
      ]);
    } catch (error) {
      verdict?.cancel();
      const dmrError = isDmrError(error)
        ? error
        : new DmrError('MESSAGE_NOT_ACCEPTED', `message ${id} was not confirmed: ${(error as Error).message}`);
      if (dmrError.httpStatus >= 500) {
        finish('unavailable');
        this.logger.warn({ messageId: id, code: dmrError.code }, 'message not confirmed');
        return this.#unavailable(reply, dmrError);
      }
      finish('refused');
      return reply.code(dmrError.httpStatus).send(errorBody(dmrError));
    } finally {
      clearTimeout(timer);
    }
    if (verdict !== undefined) {
      const report = await verdict.wait();
      if (report !== undefined && report.reason !== 'MESSAGE_REPLAYED') {
        const error = refusal(report);
        this.logger.info({ messageId: id, recipient: message.recipientId, reason: report.reason }, 'message refused');
        if (ERROR_CATALOGUE[error.code].httpStatus >= 500) {
          finish('unavailable');
          return this.#unavailable(reply, error);
        }
        finish('refused');
        return reply.code(error.httpStatus).send(errorBody(error));
      }
    }
    finish('accepted');
    return reply.code(202).send({ id, status: 'accepted' });
  }

  #onReport(report: DeliveryReport): void {
    this.metrics.reports.inc({ reason: report.reason });
    const { recipient, awaited } = this.#verdicts.onReport(report);
    if (!awaited) {
      // Nobody waits for it: the HTTP answer went out already (a trusted recipient, or a late dead-letter).
      this.logger.warn(
        { messageId: report.messageId, recipient, status: report.status, reason: report.reason, detail: report.detail },
        'delivery report for a message already answered',
      );
      this.#reports?.post(reportDocument(report, this.config.id, recipient));
    }
  }

  // ---- delivering ----------------------------------------------------------------------------------

  async #deliver(message: ReceivedMessage): Promise<void> {
    const started = performance.now();
    this.#inFlight += 1;
    this.metrics.deliveriesInFlight.inc();
    try {
      const document = this.#toV1(message);
      if (document instanceof DmrError) {
        this.metrics.deliveries.inc({ result: 'invalid' });
        this.#failed(
          message,
          document.code,
          { problems: document.details.problems },
          'received message is not v1 JSON; dead-lettered',
        );
        throw document;
      }
      try {
        // The recipient's endpoint continues the trace: from this bridge's POST span with tracing on, else from
        // the last hop's traceparent, only a valid one (the SDK's check).
        const traceHeaders: Record<string, string> =
          message.traceparent === undefined ? {} : { traceparent: message.traceparent };
        const attempts = await this.#deliverer.deliver(
          JSON.stringify(document),
          this.#stopping.signal,
          message.id,
          traceHeaders,
        );
        this.metrics.deliveries.inc({ result: 'delivered' });
        if (attempts > 1) this.logger.info({ messageId: message.id, attempts }, 'delivered after retries');
      } catch (error) {
        if (error instanceof DeliveryAborted) {
          this.#requeued += 1;
          this.metrics.deliveries.inc({ result: 'requeued' });
          this.logger.info({ messageId: message.id, attempts: error.attempts }, `${error.message}; requeued`);
          throw error;
        }
        if (!(error instanceof DeliveryFailed)) throw error;
        this.metrics.deliveries.inc({ result: 'dead_lettered' });
        this.#failed(
          message,
          'ENDPOINT_DELIVERY_FAILED',
          { attempts: error.attempts, status: error.last.status },
          `${error.message}; dead-lettered`,
        );
        throw error;
      }
    } finally {
      this.#inFlight -= 1;
      this.metrics.deliveriesInFlight.dec();
      this.metrics.deliveryDuration.observe((performance.now() - started) / 1000);
    }
  }

  /**
   * A received message given up on: the SDK rejects it, so the broker
   * dead-letters it to the client's dead-letter queue, and that dead letter
   * reaches the node's routers, which write its audit record and its
   * delivery.failed event (RECIPIENT_REFUSED; docs/events.md). The bridge
   * writes no audit log and counts no event (that would count the one failure
   * twice); its warn line says why (code, attempts, last status) and names
   * the message for finding the router's record.
   */
  #failed(message: ReceivedMessage, reason: ErrorCode, context: Record<string, unknown>, line: string): void {
    this.logger.warn(
      {
        code: reason,
        ...(UUID_PATTERN.test(message.id) ? { messageId: message.id } : {}),
        ...(isValidId(message.from) ? { sender: message.from } : {}),
        ...(isValidId(message.to) ? { recipient: message.to } : {}),
        ...context,
      },
      line,
    );
  }

  #toV1(message: ReceivedMessage): V1Delivered | DmrError {
    let body: unknown;
    try {
      body = JSON.parse(message.body.toString('utf8'));
    } catch {
      return new DmrError('INVALID_ARGUMENT', 'the body is not JSON', {
        details: { problems: [{ path: 'body', message: 'is not JSON' }] },
      });
    }
    const checked = checkV1Body(body);
    const errors = checked.ok ? [] : [...checked.errors];
    if (message.type !== 'ChatMessage') errors.push({ path: 'type', message: 'must be ChatMessage' });
    if (!checked.ok || errors.length > 0) {
      return new DmrError('INVALID_ARGUMENT', 'not a v1 message', { details: { problems: errors } });
    }
    return {
      id: message.id,
      senderId: message.from,
      recipientId: message.to,
      timestamp: checked.value.timestamp ?? message.sentAt.toISOString(),
      type: 'ChatMessage',
      payload: checked.value.payload,
    };
  }

  // ---- health --------------------------------------------------------------------------------------

  async health(): Promise<Health> {
    const state = this.#client.state;
    const broker: HealthCheck = { ok: state === 'open', detail: `connection ${state}` };
    const certificate = certificateHealth(this.#client.certificatePem, this.metrics);
    const centops = this.#centops === undefined ? { ok: null, detail: 'not configured' } : await this.#centops.check();
    const ready = broker.ok && certificate.ok;
    return {
      status: !ready ? 'down' : centops.ok === false ? 'degraded' : 'ok',
      checks: { broker, certificate, centops },
    };
  }

  // ---- closing -------------------------------------------------------------------------------------

  /**
   * Stops answering HTTP and taking messages, lets deliveries under way
   * finish for up to `drainTimeoutMs` (default 10 s), then stops the ones
   * still retrying: their messages go back to the queue at once (requeued,
   * not dead-lettered; the broker hands them to the next bridge), and the
   * DMR client closes. The result says how many were handed back.
   */
  async close(options: { drainTimeoutMs?: number } = {}): Promise<{ requeued: number }> {
    const deadline = Date.now() + (options.drainTimeoutMs ?? 10_000);
    await this.#app.close().catch(() => undefined);
    const subscription = this.#subscription;
    this.#subscription = undefined;
    // Cancelling stops new deliveries at once and settles when the handlers under way have settled.
    const cancelled = subscription?.cancel() ?? Promise.resolve();
    while (this.#inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    // An attempt under way still finishes (bounded by endpoint.timeoutMs); only the waits between attempts end.
    this.#stopping.abort();
    await cancelled;
    await this.#client.close({ drainTimeoutMs: Math.max(0, deadline - Date.now()) });
    await this.#deliverer.close();
    await this.#reports?.close();
    return { requeued: this.#requeued };
  }
}
