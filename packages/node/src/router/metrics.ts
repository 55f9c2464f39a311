/**
 * The router's Prometheus metrics (docs/contract.md "Observability", `dmr_` prefix),
 * registered on a Registry the caller owns, so several routers in one process
 * (tests, shards) do not collide in the global registry.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { EVENTS_COUNTER, latencyBuckets } from '@dmr/core';

export const ROUTER_STATES = ['idle', 'connecting', 'running', 'backing-off', 'stopped'] as const;
export type RouterState = (typeof ROUTER_STATES)[number];
/** What a held message waited for (router.ts `Transient`): shown at 0 from the start, so alerts see a series. */
export const REQUEUE_REASONS = ['policy', 'audit', 'broker'] as const;
export const RELAY_OUTCOMES = ['delivered', 'forwarded'] as const;

export class RouterMetrics {
  readonly received: Counter;
  readonly routed: Counter;
  readonly rejected: Counter<'reason'>;
  readonly policyDecisions: Counter<'result' | 'reason'>;
  readonly routeSeconds: Histogram;
  readonly policySeconds: Histogram;
  readonly state: Gauge<'state'>;
  readonly reconnects: Counter;
  readonly reports: Counter<'kind'>;
  readonly requeued: Counter<'reason'>;
  readonly held: Counter<'kind'>;
  readonly heldNow: Gauge;
  readonly parked: Counter<'kind'>;
  readonly unparked: Counter;
  readonly deadLettered: Counter;
  readonly bodyLimitEnforced: Gauge;
  readonly forwarded: Counter;
  readonly relayed: Counter<'outcome'>;
  readonly relayRefused: Counter<'reason'>;
  readonly duplicatesDropped: Counter;
  /** dmr_events_total: failed deliveries (delivery.failed), counted by the router's EventRecorder. */
  readonly events: Counter<'kind' | 'reason'>;
  readonly hopSeconds: Histogram<'peer'>;
  readonly replayWindowIds: Gauge;
  readonly replayWindowCapacity: Gauge;
  #replayWindow: (() => { size: number; capacity: number } | undefined) | undefined;
  readonly auditUnwitnessedSeconds: Gauge;
  #auditLog: (() => { size: number; witnessedSize: number } | undefined) | undefined;
  /** When the audit log was last seen fully witnessed, or its witnessed size last moved (ms). */
  #auditCaughtUp = { at: Date.now(), witnessedSize: 0 };

  constructor(registry: Registry) {
    const registers = [registry];
    this.events = new Counter({ ...EVENTS_COUNTER, labelNames: [...EVENTS_COUNTER.labelNames], registers: [registry] });
    this.received = new Counter({
      name: 'dmr_router_messages_received_total',
      help: 'Messages the router took from its ingress queue.',
      registers,
    });
    this.routed = new Counter({
      name: 'dmr_router_messages_routed_total',
      help: 'Messages delivered to a recipient queue (publisher-confirmed).',
      registers,
    });
    this.rejected = new Counter({
      name: 'dmr_router_messages_rejected_total',
      help: 'Messages refused, by catalogue code.',
      labelNames: ['reason'],
      registers,
    });
    this.policyDecisions = new Counter({
      name: 'dmr_policy_decisions_total',
      help: 'Policy decisions by result (allow, deny, error) and policy reason code.',
      labelNames: ['result', 'reason'],
      registers,
    });
    this.routeSeconds = new Histogram({
      name: 'dmr_router_route_seconds',
      help: 'From taking a message off ingress to the confirm of its delivery or refusal.',
      buckets: latencyBuckets(0.0005, 2.5),
      registers,
    });
    this.policySeconds = new Histogram({
      name: 'dmr_policy_decision_seconds',
      help: 'Time the policy took to decide one message.',
      buckets: latencyBuckets(0.00005, 0.05),
      registers,
    });
    this.state = new Gauge({
      name: 'dmr_router_state',
      help: 'The router state: 1 for the current one, 0 for the others.',
      labelNames: ['state'],
      registers,
    });
    this.reconnects = new Counter({
      name: 'dmr_router_reconnects_total',
      help: 'Connections to the broker re-established after a loss.',
      registers,
    });
    this.reports = new Counter({
      name: 'dmr_router_reports_total',
      help: 'Delivery reports to senders, by kind: rejected, dead-lettered (taken by the sender queue); *-mesh (sent toward the sender node); *-held (a full sender queue or link: the message waits, tried again); *-lost (no queue or route for the sender).',
      labelNames: ['kind'],
      registers,
    });
    this.requeued = new Counter({
      name: 'dmr_router_messages_requeued_total',
      help: 'Messages held unacked for a later attempt after a transient failure, by what was unavailable (policy, audit, broker).',
      labelNames: ['reason'],
      registers,
    });
    this.held = new Counter({
      name: 'dmr_router_messages_held_total',
      help: 'Times a message was held unacked because its destination was full, by destination kind (recipient queue, link, report: a delivery report to a full sender queue or link); tried again with back-off, never refused for it.',
      labelNames: ['kind'],
      registers,
    });
    this.heldNow = new Gauge({
      name: 'dmr_router_messages_held',
      help: 'Messages held now for a full destination; at the hold bound the router takes no new messages.',
      registers,
    });
    this.parked = new Counter({
      name: 'dmr_router_messages_parked_total',
      help: 'Messages parked in dmr.parking.<n> because their destination held its share of the hold (docs/decisions/0039-parking.md), by destination kind; each comes back to its input after the parking TTL. Parked now, node-wide: the sum of this minus dmr_router_messages_unparked_total over the routers.',
      labelNames: ['kind'],
      registers,
    });
    this.unparked = new Counter({
      name: 'dmr_router_messages_unparked_total',
      help: 'Parked messages that came back from dmr.parking.<n> to a router input and were taken again (a dead letter comes back to any router).',
      registers,
    });
    this.bodyLimitEnforced = new Gauge({
      name: 'dmr_router_broker_body_limit_enforced',
      help: '1 if the broker refuses a body over limits.maxMessageBytes (its max_message_size), 0 if it stores it, -1 if not checked.',
      registers,
    });
    this.bodyLimitEnforced.set(-1);
    this.deadLettered = new Counter({
      name: 'dmr_router_messages_dead_lettered_total',
      help: 'Messages the router dead-lettered to dmr.rejected after an internal error instead of retrying them.',
      registers,
    });
    this.forwarded = new Counter({
      name: 'dmr_router_messages_forwarded_total',
      help: "Local clients' messages sent over a link toward the recipient's home node (publisher-confirmed).",
      registers,
    });
    this.relayed = new Counter({
      name: 'dmr_router_mesh_messages_relayed_total',
      help: 'Messages from peer nodes that verified and were delivered here or forwarded to the next hop, by outcome.',
      labelNames: ['outcome'],
      registers,
    });
    this.relayRefused = new Counter({
      name: 'dmr_router_mesh_messages_refused_total',
      help: 'Messages from peer nodes refused at this hop, by catalogue code.',
      labelNames: ['reason'],
      registers,
    });
    this.duplicatesDropped = new Counter({
      name: 'dmr_router_mesh_duplicates_dropped_total',
      help: 'Messages from peer nodes dropped because this node already handled their id (link redelivery).',
      registers,
    });
    this.hopSeconds = new Histogram({
      name: 'dmr_router_hop_seconds',
      help: "From the previous node's time in the hop chain to this router taking the message: the link and its queues (two nodes' clocks), by previous node.",
      labelNames: ['peer'],
      buckets: latencyBuckets(0.001, 60),
      registers,
    });
    // Read when scraped, never on the per-message path.
    const replayWindow = () => this.#replayWindow?.();
    this.replayWindowIds = new Gauge({
      name: 'dmr_router_replay_window_ids',
      help: 'Message ids the replay guard holds now (expired ones not yet swept included).',
      registers,
      collect() {
        const window = replayWindow();
        if (window !== undefined) this.set(window.size);
      },
    });
    this.replayWindowCapacity = new Gauge({
      name: 'dmr_router_replay_window_capacity',
      help: 'Most message ids the replay guard holds; a full window refuses new ids with REPLAY_WINDOW_FULL.',
      registers,
      collect() {
        const window = replayWindow();
        if (window !== undefined) this.set(window.capacity);
      },
    });
    const auditLog = () => this.#auditLog?.();
    const auditCaughtUp = this.#auditCaughtUp;
    this.auditUnwitnessedSeconds = new Gauge({
      name: 'dmr_router_audit_unwitnessed_seconds',
      help: "How long this router's audit log has held records CentOps has not witnessed, with no checkpoint witnessed meanwhile (0 when all are; checkpoints go every second: minutes mean CentOps is unreachable or refuses the writer's checkpoints).",
      registers,
      collect() {
        const log = auditLog();
        if (log === undefined) return;
        const now = Date.now();
        if (log.size === log.witnessedSize || log.witnessedSize !== auditCaughtUp.witnessedSize) {
          auditCaughtUp.at = now;
          auditCaughtUp.witnessedSize = log.witnessedSize;
        }
        this.set(log.size === log.witnessedSize ? 0 : (now - auditCaughtUp.at) / 1000);
      },
    });
    // Fixed label sets start at zero, so a dashboard or an alert sees the series before the first event.
    for (const reason of REQUEUE_REASONS) this.requeued.inc({ reason }, 0);
    for (const outcome of RELAY_OUTCOMES) this.relayed.inc({ outcome }, 0);
    this.setState('idle');
  }

  /** Where the replay window gauges read from when scraped (the router's current guard). */
  watchReplayWindow(source: () => { size: number; capacity: number } | undefined): void {
    this.#replayWindow = source;
  }

  /** Where the audit gauge reads the writer's log size and the size CentOps witnessed (the checkpointer). */
  watchAuditLog(source: () => { size: number; witnessedSize: number } | undefined): void {
    this.#auditLog = source;
  }

  /** The message's last hop entry was written by `peer` at `at` (ISO 8601); `nowMs`: when this router took it. */
  observeHop(peer: string, at: string | undefined, nowMs: number): void {
    const sent = at === undefined ? Number.NaN : Date.parse(at);
    // Clocks of two nodes: a negative transit is skew, counted as zero rather than dropped.
    if (Number.isFinite(sent)) this.hopSeconds.observe({ peer }, Math.max(0, nowMs - sent) / 1000);
  }

  setState(current: RouterState): void {
    for (const state of ROUTER_STATES) this.state.set({ state }, state === current ? 1 : 0);
  }
}
