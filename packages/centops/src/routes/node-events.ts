/**
 * `POST /v1/nodes/:id/events`: a node reports an event of its own
 * (configuration applied or refused, its certificate installed or expiring;
 * docs/events.md). Only routers may write a node's `dmr.audit` stream, so
 * the agent's events reach an audit log here instead: CentOps appends each
 * to its own Merkle log (action `node.event`, actor the node's SPIFFE id),
 * logs it and counts it (decision 0035).
 *
 * What one node can do with it is bounded: only its own id (its mutual-TLS
 * certificate), only the node kinds of the event catalogue, every field
 * checked against the catalogue (no free text reaches the log), a small body,
 * and a per-node token bucket.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { DmrError, ID_PATTERN_SOURCE, parseEvent } from '@dmr/core';
import { NODE_EVENT_KINDS } from '../server/events.js';
import type { RouteContext } from './context.js';
import { errorResponses } from './schemas.js';

/** A node's events come at control-plane rates (a few per revision or renewal): a burst, then this many a minute. */
export const NODE_EVENTS_BURST = 30;
export const NODE_EVENTS_PER_MINUTE = 30;
const BODY_LIMIT = 4096;

export interface NodeEventsOptions {
  burst?: number;
  perMinute?: number;
  now?: () => number;
}

export function nodeEventRoutes(context: RouteContext, options: NodeEventsOptions = {}): FastifyPluginAsync {
  const burst = options.burst ?? NODE_EVENTS_BURST;
  const perMs = (options.perMinute ?? NODE_EVENTS_PER_MINUTE) / 60_000;
  const now = options.now ?? Date.now;
  // One bucket per authenticated node: keys are certificate identities, so the map is bounded by the registry.
  const buckets = new Map<string, { tokens: number; at: number }>();
  const take = (node: string): number => {
    const at = now();
    const bucket = buckets.get(node) ?? { tokens: burst, at };
    bucket.tokens = Math.min(burst, bucket.tokens + (at - bucket.at) * perMs);
    bucket.at = at;
    buckets.set(node, bucket);
    if (bucket.tokens < 1) return Math.ceil((1 - bucket.tokens) / perMs / 1000);
    bucket.tokens -= 1;
    return 0;
  };
  return async (app) => {
    app.post(
      '/v1/nodes/:id/events',
      {
        bodyLimit: BODY_LIMIT,
        schema: {
          tags: ['events'],
          summary: 'a node reports one of its events (docs/events.md); appended to the CentOps audit log',
          description:
            'Node certificates only, for their own id. The body is one event of a node kind of the catalogue ' +
            `(${NODE_EVENT_KINDS.join(', ')}): {kind, at, fields}. At most ${NODE_EVENTS_BURST} at once, then ` +
            `${NODE_EVENTS_PER_MINUTE} a minute per node (429 RATE_LIMITED).`,
          params: Type.Object({ id: Type.String({ pattern: ID_PATTERN_SOURCE }) }),
          body: Type.Object(
            {
              kind: Type.Union(NODE_EVENT_KINDS.map((kind) => Type.Literal(kind))),
              at: Type.String({ maxLength: 40 }),
              fields: Type.Record(Type.String(), Type.Union([Type.String({ maxLength: 100 }), Type.Integer()])),
            },
            { additionalProperties: false },
          ),
          response: { 204: Type.Null(), ...errorResponses(403, 422, 429) },
        },
      },
      async (request, reply) => {
        const { id } = request.params as { id: string };
        const principal = request.principal;
        // Only the node itself saw what happened to it; an operator writing it would falsify the record.
        if (principal.kind !== 'node' || principal.id !== id) {
          throw new DmrError('FORBIDDEN', `only node ${id} may report its events`, {
            details: { principal: { kind: principal.kind, id: principal.id }, node: id },
          });
        }
        const event = parseEvent(request.body);
        const node = (event.fields as { node?: unknown }).node;
        if (node !== id) {
          throw new DmrError('INVALID_ARGUMENT', `the event names node ${String(node)}, not ${id}`, {
            details: { problems: [`fields.node must be ${id}`] },
          });
        }
        const retryAfterSeconds = take(id);
        if (retryAfterSeconds > 0) {
          throw new DmrError(
            'RATE_LIMITED',
            `node ${id} reported too many events; try again in ${retryAfterSeconds}s`,
            {
              details: { retryAfterSeconds },
            },
          );
        }
        await context.events.reported(event);
        return reply.code(204).send();
      },
    );
  };
}
