/**
 * One span per message per hop (docs/decisions/0032-traces.md), kept out of
 * the paths: the router runs each delivery inside HopTrace.run(), which
 * opens the span as a child of the message's `traceparent` (a new trace
 * when it has none: the router is the edge for a plain AMQP client) and
 * ends it when the path settles. The steps mark themselves with one-line
 * calls that do nothing when no span is active (tracing off, or code
 * outside a delivery): hopEvent() for validated / policy / publish /
 * confirm / audit, hopSettled() for the decision, traceHeaders() to put
 * this hop's span into what the router publishes, so the next hop's span
 * is its child and the whole path is one trace.
 *
 * Attributes are ids and outcomes only (node, message id, sender,
 * recipient, result, reason, next hop): never a payload or a header value
 * a client chose.
 */
import {
  context,
  propagation,
  trace,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Tracer,
} from '@opentelemetry/api';
import { amqpHeaderGetter, amqpHeaderSetter, traceIdOf } from '@dmr/core';
import { UUID_PATTERN } from '@dmr/contract';
import type { ConsumeMessage, Options } from 'amqplib';
import type { AuditEvent } from './audit.js';

/** The per-hop steps a span records as events. */
export type HopStep = 'validated' | 'verified' | 'policy' | 'publish' | 'confirm' | 'audit';

export class HopTrace {
  readonly #tracer: Tracer | undefined;
  readonly #attributes: Attributes;

  constructor(tracer: Tracer | undefined, nodeId: string, shard: number) {
    this.#tracer = tracer;
    this.#attributes = { 'dmr.node': nodeId, 'dmr.shard': shard, 'messaging.system': 'rabbitmq' };
  }

  /** Runs `path` for one delivery inside its hop span; without a tracer, just runs it. */
  run(message: ConsumeMessage, handler: string, path: () => Promise<void>): Promise<void> {
    const tracer = this.#tracer;
    if (tracer === undefined) return path();
    const id = message.properties.messageId as unknown;
    const messageId = typeof id === 'string' && UUID_PATTERN.test(id.toLowerCase()) ? id.toLowerCase() : null;
    const parent = propagation.extract(ROOT_CONTEXT, message.properties.headers, amqpHeaderGetter);
    const span = tracer.startSpan(
      `dmr ${handler}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          ...this.#attributes,
          'messaging.destination.name': message.fields.routingKey,
          'messaging.rabbitmq.redelivered': message.fields.redelivered,
          ...(messageId === null ? {} : { 'messaging.message.id': messageId }),
        },
      },
      parent,
    );
    return context.with(trace.setSpan(parent, span), path).then(
      () => span.end(),
      (error: unknown) => {
        // Held for another attempt or dead-lettered by the router: the reason is the error's class, never its data.
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.name : 'error' });
        span.end();
        throw error;
      },
    );
  }
}

/** Marks a step of the current hop (no-op outside a traced delivery). */
export function hopEvent(step: HopStep, attributes?: Attributes): void {
  trace.getActiveSpan()?.addEvent(step, attributes);
}

/** Records the decision a delivery settled with on its hop span. */
export function hopSettled(decision: Omit<AuditEvent, 'kind' | 'node'>): void {
  const span = trace.getActiveSpan();
  if (span === undefined) return;
  span.setAttributes({
    'dmr.result': decision.result,
    ...(decision.reason === null ? {} : { 'dmr.reason': decision.reason }),
    ...(decision.sender === null ? {} : { 'dmr.sender': decision.sender }),
    ...(decision.recipient === null ? {} : { 'dmr.recipient': decision.recipient }),
    ...(decision.nextHop === undefined ? {} : { 'dmr.next_hop': decision.nextHop }),
  });
  if (decision.result === 'rejected') span.setStatus({ code: SpanStatusCode.ERROR, message: decision.reason ?? '' });
}

/**
 * `options` with this hop's span as the `traceparent` (and the trace's
 * `tracestate`), so the next hop or the recipient continues the trace; as
 * given when no span is active.
 */
export function traceHeaders(options: Options.Publish): Options.Publish {
  const active = trace.getActiveSpan();
  if (active === undefined) return options;
  const headers: Record<string, unknown> = { ...(options.headers as Record<string, unknown> | undefined) };
  propagation.inject(trace.setSpan(ROOT_CONTEXT, active), headers, amqpHeaderSetter);
  return { ...options, headers };
}

/** The trace an audit record belongs to: the hop span's, else the message's own `traceparent`. */
export function traceIdFor(message: ConsumeMessage): string | undefined {
  const active = trace.getActiveSpan();
  if (active !== undefined) return active.spanContext().traceId;
  const headers = message.properties.headers as Record<string, unknown> | undefined;
  return headers !== undefined && Object.prototype.hasOwnProperty.call(headers, 'traceparent')
    ? traceIdOf(headers.traceparent)
    : undefined;
}
