/**
 * The router: the data plane's per-message path (DESIGN.md "Message
 * contract"). One Router consumes one ingress shard `dmr.ingress.<n>` and the
 * shared `dmr.dead-letter-reports` queue of its node's vhost.
 *
 * Per message (#route, readable top to bottom): contract checks → replay
 * guard → policy → publish to `dmr.delivery` (persistent, mandatory, confirmed)
 * → audit record confirmed → only then ack. A refusal publishes DMR's
 * metadata about it (never the body) to `dmr.rejected` and a report to the
 * sender, both confirmed, then acks. A transient failure (no policy, audit
 * not stored) keeps the message unacked and pauses consumption with an
 * exponential back-off, then tries it again: never a requeue, which on a
 * quorum queue counts as a delivery and would dead-letter a valid message
 * once the ingress delivery limit is reached. A failure that is not transient
 * (a bug) dead-letters the message to `dmr.rejected`.
 *
 * Connection loss: the broker redelivers whatever was not acked; the router
 * reconnects with exponential back-off and jitter and forgets (releases) the
 * ids of its in-flight messages so their redelivery is not a replay. A
 * delivery marked `redelivered` whose id the guard still holds is treated as
 * the router's own re-attempt, not a client replay, and is processed again:
 * duplicates on the wire are allowed (the SDK deduplicates by message id),
 * losses are not.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { AckBatcher, DmrError, backoffDelay, isDmrError, isValidId, reconnectLoop } from '@dmr/core';
import type { NodeConfig } from '@dmr/centops';
import type { PolicyDecider, PolicyDecision } from '@dmr/policy';
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message, Options } from 'amqplib';
import type { Logger } from 'pino';
import { RECIPIENT_HEADER, SENDER_HEADER, UUID_PATTERN } from '../message/contract.js';
import { ownHeader } from '../message/headers.js';
import { SenderRateLimit } from '../message/rate-limit.js';
import { ReplayGuard } from '../message/replay.js';
import { senderFromUserId, validateAtOrigin } from '../message/validate.js';
import {
  DEAD_LETTER_REPORTS_QUEUE,
  DELIVERY_EXCHANGE,
  REJECTED_EXCHANGE,
  ingressQueueName,
} from '../reconciler/layout.js';
import type { AuditEvent, AuditSink } from './audit.js';
import {
  DELIVERY_REPORT_TYPE,
  deadLetterReason,
  deliveredOptions,
  deliveryReport,
  policyInputFor,
  rejectedCopy,
  remainingTtl,
  reportOptions,
  routingContext,
  type DeliveryReport,
  type Refusal,
  type RoutingContext,
} from './envelope.js';
import type { RouterMetrics, RouterState } from './metrics.js';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export interface RouterOptions {
  nodeId: string;
  /** Consumes `dmr.ingress.<shard>` (default 0). */
  shard?: number;
  /** AMQPS + EXTERNAL as the node identity, vhost `dmr-<nodeId>`. Called again on every reconnect. */
  connect: () => Promise<ChannelModel>;
  /** Swapped by its owner; the router only calls decide(). */
  policy: PolicyDecider;
  logger: Logger;
  metrics: RouterMetrics;
  audit?: AuditSink;
  /** Unacknowledged deliveries per consumer (default 256): each waits on two broker confirms, so a small window caps throughput (bench/). */
  prefetch?: number;
  now?: () => number;
  /** Reconnect and policy-pause back-off (default 100 ms doubling to 10 s, with ±50 % jitter). */
  backoff?: BackoffOptions;
  /** Most message ids the replay guard holds (default 1 000 000); one sender holds at most limits.maxIdsPerSender. */
  replayMaxEntries?: number;
  /** Most senders whose rate the router tracks at once (default 100 000; least recently seen first out). */
  rateLimitMaxSenders?: number;
}

/** `unencodable`: amqplib refused to encode the message (thrown before anything reached the broker). */
type PublishOutcome = 'confirmed' | 'returned' | 'nacked' | 'unencodable';

type Handler = 'route' | 'dead-letter';

/** Not a valid id (ids have no dots), so never a client's binding on `dmr.delivery`: the probe is routed nowhere. */
const PROBE_ROUTING_KEY = 'dmr.body-limit-probe';
/** Above this the probe itself would cost too much per connection; such limits are not checked. */
const PROBE_MAX_BYTES = 16 * 1_048_576;

/** One connection's worth of state: dropped as a whole when the connection or channel goes. */
interface Session {
  connection: ChannelModel;
  channel: ConfirmChannel;
  /** Every delivery of `channel` is settled through it: the acks of one turn go out as one frame when they can. */
  acks: AckBatcher<ConsumeMessage>;
  alive: boolean;
  /** Resolves when the connection or channel closes, for whatever reason. */
  closed: Promise<void>;
  ingressTag: string | undefined;
  reportsTag: string | undefined;
  /** Message ids the guard accepted in this session and not yet settled: released on loss. */
  inflightIds: Set<string>;
  /** (exchange, routing key, message id) of mandatory publishes the broker returned, until their confirm. */
  returned: Set<string>;
  /** Deliveries kept unacked after a transient failure, tried again when the pause ends (at most prefetch × 2). */
  held: Array<{ message: ConsumeMessage; handler: Handler }>;
  paused: boolean;
}

/** Thrown when a step cannot complete now but may later: the message goes back to the broker. */
class Transient extends Error {
  constructor(
    /** Metric label: what was unavailable. */
    readonly reason: 'policy' | 'audit' | 'broker',
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

function returnKey(exchange: string, routingKey: string, messageId: unknown): string {
  return `${exchange}\0${routingKey}\0${typeof messageId === 'string' ? messageId : ''}`;
}

export class Router {
  readonly nodeId: string;
  readonly shard: number;
  readonly #options: RouterOptions;
  readonly #now: () => number;
  readonly #backoff: BackoffOptions;
  #context: RoutingContext | undefined;
  #guard: ReplayGuard | undefined;
  #rate: SenderRateLimit | undefined;
  #state: RouterState = 'idle';
  #session: Session | undefined;
  #running: Promise<void> | undefined;
  /** Aborts back-off sleeps and pause timers on stop(): no timer outlives the router. */
  readonly #stopping = new AbortController();
  /** Every per-message task, so stop() can wait for them to settle. */
  readonly #tasks = new Set<Promise<void>>();

  constructor(options: RouterOptions) {
    this.nodeId = options.nodeId;
    this.shard = options.shard ?? 0;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#backoff = options.backoff ?? { initialMs: 100, maxMs: 10_000 };
  }

  get state(): RouterState {
    return this.#state;
  }

  /**
   * Indexes `config` for the per-message path (directory, denylist, limits,
   * principals). A synchronous swap: each message reads the index once, so it
   * is judged by exactly one revision. The replay guard is kept across
   * revisions; only a changed dedup window replaces it (its memory restarts).
   */
  applyConfig(config: NodeConfig): void {
    if (config.node.id !== this.nodeId) {
      throw new DmrError('INVALID_ARGUMENT', `the configuration is for node ${config.node.id}, not ${this.nodeId}`);
    }
    const { dedupWindowMs: windowMs, maxIdsPerSender, senderRatePerSecond, senderBurst } = config.limits;
    if (this.#guard?.windowMs !== windowMs) {
      this.#guard = new ReplayGuard({ windowMs, maxEntries: this.#options.replayMaxEntries ?? 1_000_000 });
    }
    this.#guard.maxPerSender = maxIdsPerSender;
    if (this.#rate === undefined) {
      this.#rate = new SenderRateLimit({
        ratePerSecond: senderRatePerSecond,
        burst: senderBurst,
        ...(this.#options.rateLimitMaxSenders === undefined ? {} : { maxSenders: this.#options.rateLimitMaxSenders }),
      });
    } else this.#rate.configure(senderRatePerSecond, senderBurst);
    this.#context = routingContext(config);
  }

  /** Resolves once consuming; the router then keeps itself connected until stop(). */
  start(): Promise<void> {
    if (this.#context === undefined) {
      return Promise.reject(new DmrError('INVALID_ARGUMENT', 'applyConfig() must be called before start()'));
    }
    if (this.#running !== undefined) return Promise.reject(new DmrError('INVALID_ARGUMENT', 'already started'));
    return new Promise<void>((resolve) => {
      this.#running = this.#run(resolve);
    });
  }

  /** Cancels consumption, waits for in-flight messages to be acked or nacked, closes. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#stopping.abort();
    const session = this.#session;
    if (session?.alive === true) {
      for (const tag of [session.ingressTag, session.reportsTag]) {
        if (tag !== undefined) await session.channel.cancel(tag).catch(() => undefined);
      }
    }
    await Promise.allSettled([...this.#tasks]);
    await this.#options.audit?.close();
    if (session?.alive === true) {
      session.acks.flush();
      // amqplib muxes channels onto the socket in no fixed order: a connection.close (channel 0) can overtake
      // the acks just written on this channel, and the broker then redelivers messages already routed. The
      // channel's own close-ok comes after its acks.
      await session.channel.close().catch(() => undefined);
      await session.connection.close().catch(() => undefined);
    }
    await this.#running;
    this.#setState('stopped');
  }

  // ---- the per-message path ----------------------------------------------------------------------

  /**
   * One ingress message, from delivery to ack (or held on a transient
   * failure). `retry`: the router's own second attempt at a held message.
   */
  async #route(session: Session, message: ConsumeMessage, retry = false): Promise<void> {
    const started = performance.now();
    const now = this.#now();
    const context = this.#context as RoutingContext;
    const guard = this.#guard as ReplayGuard;
    if (!retry) this.#options.metrics.received.inc();

    // 1. The contract (DESIGN.md "Message contract"): the first broken rule is the reason.
    const checked = validateAtOrigin(message, context.message, now);
    if (!checked.ok) return this.#refuse(session, message, context, started, checked);
    const validated = checked.message;

    // 2. The sender's rate, counted once per message: not again for the router's own re-attempts.
    if (!retry && !message.fields.redelivered) {
      const rate = (this.#rate as SenderRateLimit).take(validated.sender, now);
      if (!rate.ok) return this.#refuse(session, message, context, started, rate);
    }

    // 3. Replays, within the sender's share of the window. A redelivery of an id we hold is our own
    // re-attempt (see the file comment), not a replay.
    const replay = guard.check(validated.messageId, now, validated.sender);
    if (!replay.ok && !(replay.reason === 'MESSAGE_REPLAYED' && message.fields.redelivered)) {
      return this.#refuse(session, message, context, started, replay);
    }
    session.inflightIds.add(validated.messageId);
    try {
      // 4. Policy: deny by default; no answer at all is transient, never an allow.
      const input = policyInputFor(validated, context, now);
      if (input === undefined) {
        return await this.#refuse(session, message, context, started, {
          reason: 'POLICY_DENIED',
          detail: 'sender or recipient is missing from the directory index',
        });
      }
      const policyStarted = performance.now();
      let decision: PolicyDecision;
      try {
        decision = await this.#options.policy.decide(input);
      } catch (error) {
        this.#options.metrics.policyDecisions.inc({ result: 'error', reason: 'POLICY_UNAVAILABLE' });
        throw new Transient('policy', 'the policy could not decide', { cause: error });
      }
      this.#options.metrics.policySeconds.observe((performance.now() - policyStarted) / 1000);
      for (const reason of decision.reasons.length > 0 ? decision.reasons : ['NONE']) {
        this.#options.metrics.policyDecisions.inc({ result: decision.allow ? 'allow' : 'deny', reason });
      }
      const policy = { revision: decision.revision, reasons: decision.reasons };
      if (!decision.allow) {
        const detail = `policy revision ${decision.revision ?? '?'} denied: ${decision.reasons.join(', ')}`;
        return await this.#refuse(session, message, context, started, { reason: 'POLICY_DENIED', detail, policy });
      }

      // 5. Route: this scope is one node, so a recipient homed elsewhere is unreachable (no relay yet).
      if (validated.recipientHomeNode !== this.nodeId) {
        const detail = `recipient ${validated.recipient} is homed on ${validated.recipientHomeNode}; relaying between nodes is not supported yet`;
        return await this.#refuse(session, message, context, started, {
          reason: 'RECIPIENT_UNREACHABLE',
          detail,
          policy,
        });
      }
      const ttl = remainingTtl(validated, now);
      if (ttl !== undefined && ttl <= 0) {
        const detail = `expiration of ${validated.expirationMs ?? 0} ms passed before routing`;
        return await this.#refuse(session, message, context, started, { reason: 'MESSAGE_EXPIRED', detail, policy });
      }

      // 6. Deliver, confirmed by the recipient's queue.
      const options = deliveredOptions(message.properties, validated, this.nodeId, now, ttl);
      const outcome = await this.#publish(session, DELIVERY_EXCHANGE, validated.recipient, message.content, options);
      if (outcome === 'returned') {
        const detail = `no queue for ${validated.recipient} on node ${this.nodeId}`;
        return await this.#refuse(session, message, context, started, {
          reason: 'RECIPIENT_UNREACHABLE',
          detail,
          policy,
        });
      }
      if (outcome === 'nacked') {
        const detail = `the queue of ${validated.recipient} is full`;
        return await this.#refuse(session, message, context, started, {
          reason: 'RECIPIENT_QUEUE_FULL',
          detail,
          policy,
        });
      }
      if (outcome === 'unencodable') {
        // Not transient: the same message would fail the same way on every attempt.
        const detail = 'a property of the message cannot be encoded again for delivery';
        return await this.#refuse(session, message, context, started, {
          reason: 'MESSAGE_UNENCODABLE',
          detail,
          policy,
        });
      }

      // 7. Audit, then ack: nothing acknowledged lacks its record.
      await this.#settle(session, message, started, {
        messageId: validated.messageId,
        sender: validated.sender,
        recipient: validated.recipient,
        result: 'routed',
        reason: null,
        policyRevision: decision.revision ?? null,
        policyReasons: decision.reasons,
        configRevision: context.revision,
        at: new Date(now).toISOString(),
      });
    } catch (error) {
      // Held for another attempt: that attempt is the same message, not a replay.
      guard.release(validated.messageId);
      throw error;
    } finally {
      session.inflightIds.delete(validated.messageId);
    }
  }

  /**
   * The one refusal tail: DMR's metadata about the refused message (never its
   * body or client headers) to `dmr.rejected`, a report to its sender when it
   * has a queue here (never for a report), the audit record; all confirmed,
   * then the ack.
   */
  async #refuse(
    session: Session,
    message: ConsumeMessage,
    context: RoutingContext,
    started: number,
    refusal: Refusal,
  ): Promise<void> {
    const now = this.#now();
    // user_id, when set, is what RabbitMQ checked against the login: a client's SPIFFE id names the sender.
    const from = senderFromUserId(message.properties.userId, context.message.trustDomain);
    const messageId = validMessageId(message);
    // An unvalidated header: recorded only when it is a valid id.
    const recipient = validId(ownHeader(message.properties.headers, RECIPIENT_HEADER));
    const reportTo = this.#reportable(context, from) ? from : undefined;
    const copy = rejectedCopy(
      {
        messageId,
        sender: from,
        recipient,
        body: message.content,
        type: message.properties.type,
        timestamp: message.properties.timestamp,
      },
      refusal,
    );
    const stored = this.#publish(session, REJECTED_EXCHANGE, '', copy.content, copy.options);
    const report =
      reportTo === undefined
        ? undefined
        : this.#sendReport(session, reportTo, deliveryReport(messageId, 'rejected', refusal, this.nodeId, now), now);
    const [outcome] = await Promise.all([stored, report]);
    if (outcome !== 'confirmed') {
      throw new Transient('broker', `the rejected queue did not take the refusal (${refusal.reason}: ${outcome})`);
    }
    await this.#settle(
      session,
      message,
      started,
      {
        messageId,
        sender: from ?? null,
        recipient,
        result: 'rejected',
        reason: refusal.reason,
        policyRevision: refusal.policy?.revision ?? null,
        policyReasons: refusal.policy?.reasons ?? [],
        configRevision: context.revision,
        at: new Date(now).toISOString(),
      },
      refusal.detail,
    );
  }

  /**
   * The end of every ingress message: its audit record confirmed, then the
   * ack, then the metrics and the one decision log line (the same fields as
   * the record, never payload).
   */
  async #settle(
    session: Session,
    message: ConsumeMessage,
    started: number,
    decision: Omit<AuditEvent, 'kind' | 'node'> & { result: 'routed' | 'rejected' },
    detail?: string,
  ): Promise<void> {
    await this.#audit({ kind: 'route', ...decision });
    session.acks.ack(message);
    const seconds = (performance.now() - started) / 1000;
    if (decision.result === 'routed') this.#options.metrics.routed.inc();
    else this.#options.metrics.rejected.inc({ reason: decision.reason ?? 'UNKNOWN' });
    this.#options.metrics.routeSeconds.observe(seconds);
    this.#options.logger.info(
      {
        ...decision,
        ...(detail === undefined ? {} : { detail }),
        hops: [this.nodeId],
        ms: Math.round(seconds * 100_000) / 100,
      },
      'route',
    );
  }

  /** A dead letter (expired or over the delivery limit in a client queue) becomes a report to its sender. */
  async #reportDeadLetter(session: Session, message: ConsumeMessage): Promise<void> {
    const now = this.#now();
    const context = this.#context as RoutingContext;
    const headers = message.properties.headers;
    const reason = deadLetterReason(headers);
    const sender = headers?.[SENDER_HEADER] as unknown;
    const recipient = headers?.[RECIPIENT_HEADER] as unknown;
    const messageId = validMessageId(message);
    // Never a report about a report (a report that expired in its queue): that could loop.
    const aboutReport = message.properties.type === DELIVERY_REPORT_TYPE;
    if (reason !== undefined && !aboutReport && typeof sender === 'string' && this.#reportable(context, sender)) {
      const where = validId(recipient) === null ? 'a recipient queue' : `the queue of ${String(recipient)}`;
      const detail =
        reason === 'MESSAGE_EXPIRED'
          ? `expired in ${where}`
          : `delivered too often from ${where} without an ack (delivery limit)`;
      const report = deliveryReport(messageId, 'dead-lettered', { reason, detail }, this.nodeId, now);
      // A full sender queue nacks the report: it cannot be sent now or by retrying in a loop, so it is logged.
      const outcome = await this.#sendReport(session, sender, report, now);
      await this.#audit({
        kind: 'dead-letter',
        messageId,
        sender,
        recipient: validId(recipient),
        result: 'reported',
        reason,
        policyRevision: null,
        policyReasons: [],
        configRevision: context.revision,
        at: new Date(now).toISOString(),
      });
      this.#options.logger.info({ messageId, sender, reason, report: outcome }, 'dead-letter');
    }
    session.acks.ack(message);
  }

  // ---- helpers of the path -------------------------------------------------------------------------

  /** Whether `sender` gets a report: a local client with a queue here and not denied. */
  #reportable(context: RoutingContext, sender: string | undefined): sender is string {
    return sender !== undefined && context.localQueues.has(sender) && !context.message.denied.has(sender);
  }

  async #sendReport(session: Session, to: string, report: DeliveryReport, now: number): Promise<PublishOutcome> {
    const body = Buffer.from(JSON.stringify(report), 'utf8');
    const outcome = await this.#publish(
      session,
      DELIVERY_EXCHANGE,
      to,
      body,
      reportOptions(report, this.nodeId, now, to),
    );
    this.#options.metrics.reports.inc({ kind: outcome === 'confirmed' ? report.status : `${report.status}-lost` });
    return outcome;
  }

  async #audit(event: Omit<AuditEvent, 'node'>): Promise<void> {
    const audit = this.#options.audit;
    if (audit === undefined) return;
    try {
      await audit.append({ ...event, node: this.nodeId });
    } catch (error) {
      throw new Transient('audit', 'the audit record was not stored', { cause: error });
    }
  }

  /** Publishes and waits for the broker's answer; throws when the channel closed meanwhile. */
  #publish(
    session: Session,
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
  ): Promise<PublishOutcome> {
    return new Promise<PublishOutcome>((resolve, reject) => {
      if (!session.alive) {
        reject(new Transient('broker', 'the broker connection is gone'));
        return;
      }
      const key = returnKey(exchange, routingKey, options.messageId);
      try {
        session.channel.publish(exchange, routingKey, content, options, (error: unknown) => {
          // A mandatory message without a queue is returned first, then confirmed (AMQP 0-9-1).
          const returned = session.returned.delete(key);
          if (error === null || error === undefined) resolve(returned ? 'returned' : 'confirmed');
          else if (error instanceof Error && error.message === 'message nacked') resolve('nacked');
          else reject(new Transient('broker', 'the channel closed before the confirm', { cause: error }));
        });
      } catch (error) {
        // amqplib throws before writing anything when it cannot encode the message; the channel is fine.
        if (session.alive) {
          this.#options.logger.warn({ error: error instanceof Error ? error.message : String(error) }, 'unencodable');
          resolve('unencodable');
        } else reject(new Transient('broker', 'publish failed', { cause: error }));
      }
    });
  }

  /** Runs one delivery as a tracked task; a failure is held (transient) or dead-lettered (anything else). */
  #dispatch(session: Session, message: ConsumeMessage | null, handler: Handler, retry = false): void {
    if (message === null) {
      // The broker cancelled the consumer (queue deleted): reconnecting re-consumes or fails loudly.
      this.#options.logger.warn({ shard: this.shard, handler }, 'consumer cancelled by the broker');
      void session.connection.close().catch(() => undefined);
      return;
    }
    if (!retry) session.acks.track(message);
    const work = handler === 'route' ? this.#route(session, message, retry) : this.#reportDeadLetter(session, message);
    const task = work
      .catch((error: unknown) => this.#failed(session, message, handler, error))
      .finally(() => this.#tasks.delete(task));
    this.#tasks.add(task);
  }

  /**
   * A delivery that could not be settled. Transient (policy, audit, broker
   * unavailable): kept unacked and tried again after a pause — never
   * requeued, which on a quorum queue counts as a delivery. Anything else
   * is a bug that would fail again: dead-lettered (nack without requeue) to
   * `dmr.rejected`, a bounded outcome instead of a loop.
   */
  #failed(session: Session, message: ConsumeMessage, handler: Handler, error: unknown): void {
    const transient = error instanceof Transient;
    const reason = transient ? error.reason : 'internal';
    const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
    this.#options.logger.warn(
      {
        messageId: validMessageId(message),
        reason,
        error: error instanceof Error ? error.message : String(error),
        cause: isDmrError(cause) ? cause.code : cause instanceof Error ? cause.message : String(cause),
      },
      transient ? 'message held for another attempt' : 'message dead-lettered after an internal error',
    );
    // A closed channel already handed every unacked delivery back to the broker.
    if (!session.alive) return;
    if (!transient) {
      this.#options.metrics.deadLettered.inc();
      try {
        session.acks.nack(message, false);
      } catch {
        // The channel closed under us: the broker requeues the message, and its delivery limit still applies.
      }
      return;
    }
    this.#options.metrics.requeued.inc({ reason });
    session.held.push({ message, handler });
    this.#pause(session);
  }

  /**
   * Stops taking new messages for a growing while, then tries the held ones
   * again; consumption resumes only once a round of them settles without a
   * transient failure. A missing policy or audit stream is not a busy loop.
   */
  #pause(session: Session): void {
    if (session.paused) return;
    session.paused = true;
    const tags = [session.ingressTag, session.reportsTag];
    session.ingressTag = undefined;
    session.reportsTag = undefined;
    this.#setState('backing-off');
    void (async () => {
      for (const tag of tags) if (tag !== undefined) await session.channel.cancel(tag).catch(() => undefined);
      for (let failures = 0; ; failures += 1) {
        const delay = this.#delay(failures);
        this.#options.logger.warn(
          { shard: this.shard, delayMs: delay, held: session.held.length },
          'pausing ingress: policy, audit or broker unavailable',
        );
        try {
          await sleep(delay, undefined, { signal: this.#stopping.signal });
        } catch {
          return; // stopped: closing the channel hands the held messages back
        }
        if (!session.alive || this.#stopping.signal.aborted) return;
        // Messages still in flight may join the held ones: wait for them, then try every held one once.
        await Promise.allSettled([...this.#tasks]);
        const round = session.held.splice(0);
        for (const { message, handler } of round) this.#dispatch(session, message, handler, true);
        await Promise.allSettled([...this.#tasks]);
        if (!session.alive || this.#stopping.signal.aborted) return;
        if (session.held.length === 0) break;
      }
      session.paused = false;
      try {
        await this.#consume(session);
        this.#setState('running');
      } catch (error) {
        this.#options.logger.warn({ error: String(error) }, 'resuming ingress failed');
        void session.connection.close().catch(() => undefined);
      }
    })();
  }

  // ---- connection lifecycle -----------------------------------------------------------------------

  async #run(started: () => void): Promise<void> {
    await reconnectLoop<Session>({
      signal: this.#stopping.signal,
      backoff: this.#backoff,
      open: () => this.#open(),
      closed: (session) => session.closed,
      drop: (session) => this.#drop(session),
      onConnecting: () => this.#setState('connecting'),
      onOpen: (_session, reconnected) => {
        if (reconnected) this.#options.metrics.reconnects.inc();
        this.#setState('running');
        this.#options.logger.info({ shard: this.shard }, 'router consuming');
        started();
      },
      onOpenFailed: (error) =>
        this.#options.logger.warn(
          { error: error instanceof Error ? error.message : String(error) },
          'broker connection failed',
        ),
      onPause: () => this.#setState('backing-off'),
    });
    started();
  }

  async #open(): Promise<Session> {
    const connection = await this.#options.connect();
    try {
      const channel = await connection.createConfirmChannel();
      let markClosed: () => void = () => undefined;
      const session: Session = {
        connection,
        channel,
        acks: new AckBatcher<ConsumeMessage>(channel),
        alive: true,
        closed: new Promise<void>((resolve) => (markClosed = resolve)),
        ingressTag: undefined,
        reportsTag: undefined,
        inflightIds: new Set(),
        returned: new Set(),
        held: [],
        paused: false,
      };
      const close = (): void => {
        session.alive = false;
        session.acks.discard();
        markClosed();
      };
      // Errors are followed by 'close'; listening keeps them from becoming uncaught exceptions.
      connection.on('error', (error: Error) =>
        this.#options.logger.warn({ error: error.message }, 'broker connection error'),
      );
      channel.on('error', (error: Error) =>
        this.#options.logger.warn({ error: error.message }, 'router channel error'),
      );
      connection.on('close', close);
      channel.on('close', close);
      channel.on('return', (returned: Message) => {
        const { exchange, routingKey } = returned.fields;
        session.returned.add(returnKey(exchange, routingKey, returned.properties.messageId));
      });
      this.#session = session;
      this.#options.audit?.attach?.(channel);
      await channel.prefetch(this.#options.prefetch ?? 256);
      await this.#probeBodyLimit(connection);
      await this.#consume(session);
      return session;
    } catch (error) {
      await connection.close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Whether the broker refuses a body over limits.maxMessageBytes before
   * storing it (RabbitMQ's max_message_size; its default is 128 MiB): one
   * publish of limit + 1 bytes, on a channel of its own, to `dmr.delivery`
   * under a routing key no queue is bound to. Refused: the broker closes
   * that channel (406). Confirmed: the broker would store oversized bodies
   * from clients; logged and shown by `dmr_router_broker_body_limit_enforced`.
   */
  async #probeBodyLimit(connection: ChannelModel): Promise<void> {
    const limit = (this.#context as RoutingContext).message.limits.maxMessageBytes;
    if (limit > PROBE_MAX_BYTES) return;
    let channel: ConfirmChannel | undefined;
    try {
      channel = await connection.createConfirmChannel();
      channel.on('error', () => undefined);
      const probe = channel;
      const refused = new Promise<'refused'>((resolve) => probe.once('close', () => resolve('refused')));
      const confirmed = new Promise<'stored' | 'refused'>((resolve) => {
        probe.publish(DELIVERY_EXCHANGE, PROBE_ROUTING_KEY, Buffer.alloc(limit + 1), {}, (error: unknown) =>
          resolve(error === null || error === undefined ? 'stored' : 'refused'),
        );
      });
      const outcome = await Promise.race([refused, confirmed]);
      this.#options.metrics.bodyLimitEnforced.set(outcome === 'refused' ? 1 : 0);
      if (outcome === 'stored') {
        this.#options.logger.warn(
          { maxMessageBytes: limit },
          'the broker accepts bodies over limits.maxMessageBytes: set its max_message_size (docs/node-run.md)',
        );
        await probe.close().catch(() => undefined);
      }
    } catch (error) {
      this.#options.logger.warn({ error: String(error) }, 'could not check the broker body limit');
      await channel?.close().catch(() => undefined);
    }
  }

  async #consume(session: Session): Promise<void> {
    const ingress = await session.channel.consume(
      ingressQueueName(this.shard),
      (message) => this.#dispatch(session, message, 'route'),
      { noAck: false },
    );
    session.ingressTag = ingress.consumerTag;
    const reports = await session.channel.consume(
      DEAD_LETTER_REPORTS_QUEUE,
      (message) => this.#dispatch(session, message, 'dead-letter'),
      { noAck: false },
    );
    session.reportsTag = reports.consumerTag;
  }

  /** After a loss: the broker requeues every unacked delivery; forget their ids so they are not replays. */
  #drop(session: Session): void {
    session.alive = false;
    for (const id of session.inflightIds) this.#guard?.release(id);
    session.inflightIds.clear();
    this.#options.audit?.detach?.();
    if (this.#session === session) this.#session = undefined;
    void session.connection.close().catch(() => undefined);
  }

  #delay(failures: number): number {
    return backoffDelay(failures, this.#backoff);
  }

  #setState(state: RouterState): void {
    if (this.#state === 'stopped') return;
    this.#state = state;
    this.#options.metrics.setState(state);
  }
}

/** `value` if it is a valid principal id, else null: logs and records never carry an unvalidated client value. */
function validId(value: unknown): string | null {
  return typeof value === 'string' && isValidId(value) ? value : null;
}

/** The message id if it is a usable one (a UUID, lowercased), else null: never an unvalidated client value. */
function validMessageId(message: Message): string | null {
  const id = message.properties.messageId as unknown;
  return typeof id === 'string' && UUID_PATTERN.test(id.toLowerCase()) ? id.toLowerCase() : null;
}
