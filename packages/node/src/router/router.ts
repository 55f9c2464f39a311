/**
 * The router: the data plane's lifecycle around its per-message paths
 * (docs/contract.md "Message contract"). One Router consumes one ingress shard
 * `dmr.ingress.<n>` and the shared `dmr.dead-letter-reports` queue of its
 * node's vhost, and hands each delivery to its path:
 *
 * - origin-path.ts, a local client's message (readable top to bottom):
 *   contract checks → sender rate → replay guard → policy → publish to
 *   `dmr.delivery` (persistent, mandatory, confirmed) → audit record
 *   confirmed → only then ack;
 *   A recipient homed on another node: signed and sent to the outbound
 *   queue of the next hop instead (docs/mesh.md);
 * - relay-path.ts, a message from a peer node (`dmr.mesh-ingress.<n>`, consumed
 *   once the router has a node identity): hop chain verified → parties →
 *   replay (duplicates dropped) → policy with the hop context → delivered
 *   here or forwarded to the next hop, a refusal reported back across the mesh;
 * - dead-letter-path.ts, a client queue's, a link's or a router input's dead
 *   letter: a report to its sender, wherever the sender is homed.
 *
 * Every path ends in the same tail (outcome.ts). A refusal publishes DMR's
 * metadata about it (never the body) to `dmr.rejected` and a report to the
 * sender, both confirmed, then acks. A full destination (a recipient's
 * queue, a link's outbound queue) holds that message unacked, per
 * destination, and tries it again with back-off while the shard keeps
 * routing the rest (hold.ts); past the hold's bound the router stops taking
 * new messages until held ones settle, so the ingress fills and the broker
 * refuses the senders (docs/decisions/0028). A transient failure (no
 * policy, audit not stored) keeps the message unacked and pauses
 * consumption with an exponential back-off, then tries it again (#failed,
 * #pause here). Neither is a requeue, which on a quorum queue counts as a
 * delivery and would dead-letter a valid message once the ingress delivery
 * limit is reached. A failure that is not transient (a bug) dead-letters
 * the message to `dmr.rejected`.
 *
 * Connection loss: the broker redelivers whatever was not acked; the router
 * reconnects with exponential back-off and jitter and forgets (releases) the
 * ids of its in-flight messages so their redelivery is not a replay. A
 * delivery marked `redelivered` whose id the guard still holds is treated as
 * the router's own re-attempt, not a client replay, and is processed again:
 * duplicates on the wire are allowed (the SDK deduplicates by message id),
 * losses are not.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AckBatcher, DmrError, backoffDelay, isDmrError, reconnectLoop } from '@dmr/core';
import type { NodeConfig } from '@dmr/contract';
import type { PolicyDecider } from '@dmr/policy';
import type { Tracer } from '@opentelemetry/api';
import type { ChannelModel, ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import type { Logger } from 'pino';
import { SenderRateLimit } from '../message/rate-limit.js';
import { ReplayGuard } from '../message/replay.js';
import type { DurableReplayMemory } from '../message/replay-journal.js';
import {
  DEAD_LETTER_REPORTS_QUEUE,
  DELIVERY_EXCHANGE,
  PARKING_EXCHANGE,
  ingressQueueName,
  meshIngressQueueName,
} from '@dmr/contract';
import type { AuditSink } from './audit.js';
import { DeadLetterPath } from './dead-letter-path.js';
import { HopTrace } from './hop-trace.js';
import { routingContext, type RoutingContext } from './envelope.js';
import { MeshContextBuilder, type MeshContext, type NodeIdentity } from './mesh-context.js';
import type { RouterMetrics, RouterState } from './metrics.js';
import { OriginPath, type RoutingState } from './origin-path.js';
import { DEFAULT_HOLD_BACKOFF, DEFAULT_HOLD_MAX_BYTES, Holds, type HoldOptions } from './hold.js';
import {
  Held,
  Outcomes,
  Transient,
  returnKey,
  validMessageId,
  type Handler,
  type HeldDelivery,
  type Session,
} from './outcome.js';
import { parkable, parkedOptions, parksFor, unpark } from './parking.js';
import { RelayPath } from './relay-path.js';

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
  /**
   * The shard's replay memory on disk (a ReplayJournal its owner opened and closes): the guard starts from
   * what the previous router of the shard held and writes every id through it. None: memory only.
   */
  replayMemory?: DurableReplayMemory;
  /** Most senders whose rate the router tracks at once (default 100 000; least recently seen first out). */
  rateLimitMaxSenders?: number;
  /**
   * The node's key, certificate chain, trust bundle and CRLs: what it signs
   * and verifies mesh messages with. Without one the router neither
   * forwards (RECIPIENT_UNREACHABLE) nor consumes its mesh ingress shard.
   * Replace it with applyIdentity() (renewal, a new CRL or trust bundle).
   */
  identity?: NodeIdentity;
  /** One span per delivery (hop-trace.ts) when set; none, and the paths run untraced (tracing off). */
  tracer?: Tracer;
  /**
   * Messages held for a full destination (hold.ts): past maxMessages
   * (default half the prefetch, so other recipients keep a window) or
   * maxBytes the router takes no new messages until held ones settle.
   */
  hold?: Partial<HoldOptions>;
}

/** Not a valid id (ids have no dots), so never a client's binding on `dmr.delivery`: the probe is routed nowhere. */
const PROBE_ROUTING_KEY = 'dmr.body-limit-probe';
/** Above this the probe itself would cost too much per connection; such limits are not checked. */
const PROBE_MAX_BYTES = 16 * 1_048_576;

export class Router {
  readonly nodeId: string;
  readonly shard: number;
  readonly #options: RouterOptions;
  readonly #now: () => number;
  readonly #backoff: BackoffOptions;
  #context: RoutingContext | undefined;
  #config: NodeConfig | undefined;
  #identity: NodeIdentity | undefined;
  readonly #meshBuilder = new MeshContextBuilder();
  #mesh: MeshContext | undefined;
  #guard: ReplayGuard | undefined;
  #rate: SenderRateLimit | undefined;
  #state: RouterState = 'idle';
  #session: Session | undefined;
  #running: Promise<void> | undefined;
  /** Aborts back-off sleeps and pause timers on stop(): no timer outlives the router. */
  readonly #stopping = new AbortController();
  /** Every per-message task, so stop() can wait for them to settle. */
  readonly #tasks = new Set<Promise<void>>();
  /** The paths a delivery can take, by the queue it came from; all end in the same tail (outcome.ts). */
  readonly #origin: OriginPath;
  readonly #relay: RelayPath;
  readonly #deadLetters: DeadLetterPath;
  readonly #outcome: Outcomes;
  readonly #trace: HopTrace;

  constructor(options: RouterOptions) {
    this.nodeId = options.nodeId;
    this.shard = options.shard ?? 0;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#backoff = options.backoff ?? { initialMs: 100, maxMs: 10_000 };
    options.metrics.watchReplayWindow(() =>
      this.#guard === undefined ? undefined : { size: this.#guard.size, capacity: this.#guard.maxEntries },
    );
    const outcome = (this.#outcome = new Outcomes({
      nodeId: this.nodeId,
      now: this.#now,
      logger: options.logger,
      metrics: options.metrics,
      ...(options.audit === undefined ? {} : { audit: options.audit }),
    }));
    this.#origin = new OriginPath({
      nodeId: this.nodeId,
      now: this.#now,
      policy: options.policy,
      metrics: options.metrics,
      outcome,
    });
    this.#relay = new RelayPath({
      nodeId: this.nodeId,
      now: this.#now,
      policy: options.policy,
      logger: options.logger,
      metrics: options.metrics,
      outcome,
    });
    this.#deadLetters = new DeadLetterPath({ nodeId: this.nodeId, now: this.#now, logger: options.logger, outcome });
    this.#outcome = outcome;
    this.#identity = options.identity;
    this.#trace = new HopTrace(options.tracer, this.nodeId, this.shard);
  }

  get state(): RouterState {
    return this.#state;
  }

  /**
   * Indexes `config` for the per-message path (directory, denylist, limits,
   * principals). A synchronous swap: each message reads the index once, so it
   * is judged by exactly one revision. The replay guard is kept across
   * revisions; a changed dedup window applies to ids seen from then on.
   */
  applyConfig(config: NodeConfig): void {
    if (config.node.id !== this.nodeId) {
      throw new DmrError('INVALID_ARGUMENT', `the configuration is for node ${config.node.id}, not ${this.nodeId}`);
    }
    const { dedupWindowMs: windowMs, maxIdsPerSender, senderRatePerSecond, senderBurst } = config.limits;
    if (this.#guard === undefined) this.#guard = this.#replayGuard(windowMs);
    this.#guard.windowMs = windowMs;
    this.#guard.maxPerSender = maxIdsPerSender;
    if (this.#rate === undefined) {
      this.#rate = new SenderRateLimit({
        ratePerSecond: senderRatePerSecond,
        burst: senderBurst,
        ...(this.#options.rateLimitMaxSenders === undefined ? {} : { maxSenders: this.#options.rateLimitMaxSenders }),
      });
    } else this.#rate.configure(senderRatePerSecond, senderBurst);
    const mesh = this.#identity === undefined ? undefined : this.#meshBuilder.build(config, this.#identity);
    this.#context = routingContext(config);
    this.#mesh = mesh;
    this.#config = config;
    // Held messages are judged by the new revision now, not at their next try: a removed recipient or a
    // changed policy settles them with a report while their destination is still full.
    if (this.#session?.alive === true) this.#session.holds.wake();
  }

  /** The shard's guard, holding again what the previous router of the shard remembered on disk. */
  #replayGuard(windowMs: number): ReplayGuard {
    const memory = this.#options.replayMemory;
    const guard = new ReplayGuard({
      windowMs,
      maxEntries: this.#options.replayMaxEntries ?? 1_000_000,
      ...(memory === undefined ? {} : { journal: memory }),
    });
    if (memory !== undefined) {
      const restored = guard.restore(memory.takeLoaded(), this.#now());
      this.#options.logger.info({ shard: this.shard, restored }, 'replay memory restored');
    }
    return guard;
  }

  /**
   * Replaces the node identity (a renewed certificate, a new trust bundle
   * or CRL): the next message is signed and verified with it. A router
   * started without one does not start consuming its mesh ingress here:
   * the next (re)connect does.
   */
  applyIdentity(identity: NodeIdentity): void {
    const mesh = this.#config === undefined ? undefined : this.#meshBuilder.build(this.#config, identity);
    this.#identity = identity;
    if (mesh !== undefined) this.#mesh = mesh;
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
    // Held messages stay unacked: closing the channel hands them back to the broker.
    session?.holds.clear();
    if (session?.alive === true) {
      for (const tag of [session.ingressTag, session.reportsTag, session.meshTag]) {
        if (tag !== undefined) await session.channel.cancel(tag).catch(() => undefined);
      }
    }
    await Promise.allSettled([...this.#tasks]);
    session?.holds.clear();
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

  /**
   * Runs one delivery as a tracked task; a failure is held (full destination,
   * transient) or dead-lettered (anything else). `takenAt`: set on the
   * router's own re-attempt, when it first took the delivery.
   */
  #dispatch(
    session: Session,
    message: ConsumeMessage | null,
    handler: Handler,
    takenAt?: number,
    fresh = takenAt === undefined,
  ): void {
    if (message === null) {
      // The broker cancelled the consumer (queue deleted): reconnecting re-consumes or fails loudly.
      this.#options.logger.warn({ shard: this.shard, handler }, 'consumer cancelled by the broker');
      void session.connection.close().catch(() => undefined);
      return;
    }
    if (fresh) session.acks.track(message);
    const held: HeldDelivery = { handler, takenAt: takenAt ?? this.#now() };
    const work = this.#trace.run(message, handler, () => this.#handle(session, message, handler, takenAt));
    const task = work
      .then(
        () => session.holds.settled(message),
        (error: unknown) => this.#failed(session, message, held, error),
      )
      .finally(() => this.#tasks.delete(task));
    this.#tasks.add(task);
  }

  /**
   * A delivery from one of the router's queues. A copy coming back from
   * parking (parking.ts) is the router's own later attempt at a message it
   * took before: put back as it was, judged as of when it was first taken.
   */
  #take(session: Session, message: ConsumeMessage | null, handler: Handler): void {
    const back = message === null ? undefined : unpark(message);
    if (message !== null && back !== undefined) {
      this.#options.metrics.unparked.inc();
      if (back.copied) this.#outcome.markCopied(message);
    }
    this.#dispatch(session, message, handler, back?.takenAt, true);
  }

  /** One delivery on its path, judged by the revision applied now. */
  #handle(session: Session, message: ConsumeMessage, handler: Handler, takenAt: number | undefined): Promise<void> {
    const state: RoutingState = {
      context: this.#context as RoutingContext,
      guard: this.#guard as ReplayGuard,
      rate: this.#rate as SenderRateLimit,
      mesh: this.#mesh,
    };
    switch (handler) {
      case 'route':
        return this.#origin.route(session, message, state, takenAt);
      case 'relay':
        return this.#relay.route(session, message, state, takenAt !== undefined);
      case 'dead-letter':
        return this.#deadLetters.report(session, message, state);
    }
  }

  /**
   * A delivery that could not be settled. Transient (policy, audit, broker
   * unavailable): kept unacked and tried again after a pause — never
   * requeued, which on a quorum queue counts as a delivery. Anything else
   * is a bug that would fail again: dead-lettered (nack without requeue) to
   * `dmr.rejected`, a bounded outcome instead of a loop.
   */
  #failed(session: Session, message: ConsumeMessage, held: HeldDelivery, error: unknown): Promise<void> | undefined {
    if (error instanceof Held) {
      // Not a failure: the destination is full. The message waits for it alone; the shard routes the rest.
      if (!session.alive) return;
      // A destination holding its share already: a new message for it waits in the parking queue instead, so
      // one stuck destination cannot fill the shard's hold and stop everyone else (decision 0039).
      // A link is never parked: its outbound queue is its buffer, and a partition pushes back instead (parksFor).
      if (!session.holds.has(message) && parksFor(error.key) && session.holds.crowded(error.key) && parkable(message)) {
        return this.#park(session, message, held, error);
      }
      this.#options.metrics.held.inc({ kind: error.kind });
      session.holds.hold(error.key, message, held, message.content.length);
      return undefined;
    }
    const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
    const detail = {
      error: error instanceof Error ? error.message : String(error),
      cause: isDmrError(cause) ? cause.code : cause instanceof Error ? cause.message : String(cause),
    };
    if (!(error instanceof Transient)) return this.#deadLetter(session, message, held, detail);
    const reason = error.reason;
    this.#options.logger.warn(
      { messageId: validMessageId(message), reason, ...detail },
      'message held for another attempt',
    );
    // A closed channel already handed every unacked delivery back to the broker.
    if (!session.alive) return undefined;
    this.#options.metrics.requeued.inc({ reason });
    session.holds.forget(message);
    session.held.push({ message, ...held });
    this.#pause(session);
    return undefined;
  }

  /**
   * A bug's dead letter is a failed delivery like any other (docs/events.md):
   * its audit record (reason INTERNAL) first, then the nack to `dmr.rejected`,
   * then its one line, the `delivery.failed` event. Without its record it is
   * not settled: an audit outage holds it like any message (Transient).
   */
  async #deadLetter(
    session: Session,
    message: ConsumeMessage,
    held: HeldDelivery,
    detail: { error: string; cause: string },
  ): Promise<void> {
    const messageId = validMessageId(message);
    try {
      await this.#outcome.audit({
        kind: held.handler === 'dead-letter' ? 'dead-letter' : 'route',
        messageId,
        sender: null,
        recipient: null,
        result: 'rejected',
        reason: 'INTERNAL',
        policyRevision: null,
        policyReasons: [],
        configRevision: this.#context?.revision ?? 0,
        at: new Date(this.#now()).toISOString(),
      });
    } catch (error) {
      await this.#failed(session, message, held, error);
      return;
    }
    // A closed channel already handed every unacked delivery back to the broker.
    if (!session.alive) return;
    session.holds.settled(message);
    this.#options.metrics.deadLettered.inc();
    try {
      session.acks.nack(message, false);
    } catch {
      // The channel closed under us: the broker requeues the message, and its delivery limit still applies.
    }
    this.#outcome.failedDelivery(
      { messageId, sender: null, recipient: null, reason: 'INTERNAL' },
      { handler: held.handler, ...detail },
      'message dead-lettered after an internal error',
    );
  }

  /**
   * Parks `message` (parking.ts): a copy to `dmr.parking` under the name of
   * the input it came from, confirmed, then the ack; the parking queue's TTL
   * brings the copy back to that input. A parking queue that does not take
   * it (full: reject-publish; none in the layout: returned) leaves it held
   * past its destination's share, up to the shard's bound, where the router
   * stops taking new messages: backpressure to the edge, never a loss.
   */
  async #park(session: Session, message: ConsumeMessage, held: HeldDelivery, error: Held): Promise<void> {
    const input =
      held.handler === 'route'
        ? ingressQueueName(this.shard)
        : held.handler === 'relay'
          ? meshIngressQueueName(this.shard)
          : DEAD_LETTER_REPORTS_QUEUE;
    const options = parkedOptions(message, held.takenAt, this.#outcome.hasCopy(message));
    const outcome = await this.#outcome
      .publish(session, PARKING_EXCHANGE, input, message.content, options)
      .catch(() => undefined); // the channel closed: the broker has the message back
    if (!session.alive || outcome === undefined) return;
    if (outcome === 'confirmed') {
      session.acks.ack(message);
      this.#options.metrics.parked.inc({ kind: error.kind });
      if (session.parkingRefused > 0) {
        this.#options.logger.info(
          { shard: this.shard, heldPastShare: session.parkingRefused },
          'parking takes messages again',
        );
        session.parkingRefused = 0;
      }
      return;
    }
    // One line when parking starts refusing, one when it takes again: under an overload this happens to every
    // message (measured: 70 lines a second), and dmr_router_messages_held_total counts each one anyway.
    if (session.parkingRefused === 0) {
      this.#options.logger.warn(
        { shard: this.shard, destination: error.key, parking: outcome },
        'parking does not take messages: holding them past their destination share until it does',
      );
    }
    session.parkingRefused += 1;
    this.#options.metrics.held.inc({ kind: error.kind });
    session.holds.hold(error.key, message, held, message.content.length);
  }

  /**
   * Stops taking new messages for a growing while, then tries the held ones
   * again; consumption resumes only once a round of them settles without a
   * transient failure. A missing policy or audit stream is not a busy loop.
   */
  #pause(session: Session): void {
    if (session.paused) return;
    session.paused = true;
    const tags = [session.ingressTag, session.reportsTag, session.meshTag];
    session.ingressTag = undefined;
    session.reportsTag = undefined;
    session.meshTag = undefined;
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
        for (const { message, handler, takenAt } of round) this.#dispatch(session, message, handler, takenAt);
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
        meshTag: undefined,
        inflightIds: new Set(),
        returned: new Set(),
        held: [],
        paused: false,
        gate: Promise.resolve(),
        parkingRefused: 0,
        holds: new Holds<ConsumeMessage, HeldDelivery>(this.#holdOptions(), {
          retry: (message, held) => this.#dispatch(session, message, held.handler, held.takenAt),
          onFull: (full) => this.#holdsFull(session, full),
          onCount: (count) => this.#options.metrics.heldNow.set(count),
        }),
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
      this.#options.audit?.attach?.(channel, connection);
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
    const reports = await session.channel.consume(
      DEAD_LETTER_REPORTS_QUEUE,
      (message) => this.#take(session, message, 'dead-letter'),
      { noAck: false },
    );
    session.reportsTag = reports.consumerTag;
    if (!session.holds.full) await this.#consumeInputs(session);
  }

  /** The shard's inputs: new messages from clients and, with a node identity, from peer nodes. */
  async #consumeInputs(session: Session): Promise<void> {
    const ingress = await session.channel.consume(
      ingressQueueName(this.shard),
      (message) => this.#take(session, message, 'route'),
      { noAck: false },
    );
    session.ingressTag = ingress.consumerTag;
    // The mesh ingress only with a key to verify and sign with: without one every message would be refused.
    if (this.#mesh !== undefined) {
      const mesh = await session.channel.consume(
        meshIngressQueueName(this.shard),
        (message) => this.#take(session, message, 'relay'),
        { noAck: false },
      );
      session.meshTag = mesh.consumerTag;
    }
  }

  /**
   * The hold reached its bound (or fell back under it): stop (resume) taking
   * new messages from the inputs. Dead-letter reports keep flowing: they
   * settle what is already in the node. Changes run one after the other on
   * the session; a pause for a transient failure resumes the inputs itself.
   */
  #holdsFull(session: Session, full: boolean): void {
    this.#options.logger.warn(
      {
        shard: this.shard,
        held: session.holds.count,
        heldBytes: session.holds.bytes,
        destinations: session.holds.keys,
      },
      full ? 'hold full: taking no new messages until held ones settle' : 'hold below its bound: taking messages again',
    );
    session.gate = session.gate.then(async () => {
      if (!session.alive || session.paused || this.#stopping.signal.aborted) return;
      try {
        if (session.holds.full) {
          const tags = [session.ingressTag, session.meshTag];
          session.ingressTag = undefined;
          session.meshTag = undefined;
          for (const tag of tags) if (tag !== undefined) await session.channel.cancel(tag);
          this.#options.logger.info({ shard: this.shard }, 'inputs stopped');
        } else if (session.ingressTag === undefined) {
          await this.#consumeInputs(session);
          this.#options.logger.info({ shard: this.shard }, 'inputs resumed');
        }
      } catch (error) {
        this.#options.logger.warn({ error: String(error) }, 'changing the inputs failed');
        void session.connection.close().catch(() => undefined);
      }
    });
  }

  #holdOptions(): HoldOptions {
    const prefetch = this.#options.prefetch ?? 256;
    const maxMessages = this.#options.hold?.maxMessages ?? Math.max(1, Math.floor(prefetch / 2));
    return {
      maxMessages,
      maxBytes: this.#options.hold?.maxBytes ?? DEFAULT_HOLD_MAX_BYTES,
      maxPerKey: this.#options.hold?.maxPerKey ?? Math.max(1, Math.floor(maxMessages / 8)),
      backoff: this.#options.hold?.backoff ?? DEFAULT_HOLD_BACKOFF,
    };
  }

  /** After a loss: the broker requeues every unacked delivery; forget their ids so they are not replays. */
  #drop(session: Session): void {
    session.alive = false;
    session.holds.clear();
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
