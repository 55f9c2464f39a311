/**
 * The router's Prometheus metrics (docs/contract.md "Observability", `dmr_` prefix),
 * registered on a Registry the caller owns, so several routers in one process
 * (tests, shards) do not collide in the global registry.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export const ROUTER_STATES = ['idle', 'connecting', 'running', 'backing-off', 'stopped'] as const;
export type RouterState = (typeof ROUTER_STATES)[number];

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
  readonly deadLettered: Counter;
  readonly bodyLimitEnforced: Gauge;
  readonly forwarded: Counter;
  readonly relayed: Counter<'outcome'>;
  readonly relayRefused: Counter<'reason'>;
  readonly duplicatesDropped: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
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
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.policySeconds = new Histogram({
      name: 'dmr_policy_decision_seconds',
      help: 'Time the policy took to decide one message.',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
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
      help: 'Delivery reports sent to senders, by kind (rejected, dead-lettered).',
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
      help: 'Times a message was held unacked because its destination was full, by destination kind (recipient queue, link); tried again with back-off, never refused for it.',
      labelNames: ['kind'],
      registers,
    });
    this.heldNow = new Gauge({
      name: 'dmr_router_messages_held',
      help: 'Messages held now for a full destination; at the hold bound the router takes no new messages.',
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
    this.setState('idle');
  }

  setState(current: RouterState): void {
    for (const state of ROUTER_STATES) this.state.set({ state }, state === current ? 1 : 0);
  }
}
