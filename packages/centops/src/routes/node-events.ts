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
 * and a per-node request budget (@fastify/rate-limit, as the enrolment
 * listener's per-address one, keyed here by the caller's certificate id).
 */
import rateLimit from '@fastify/rate-limit';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { DmrError, ID_PATTERN_SOURCE, parseEvent } from '@dmr/core';
import { NODE_EVENT_KINDS } from '../server/events.js';
import type { RouteContext } from './context.js';
import { errorResponses } from './schemas.js';

/** A node's events come at control-plane rates (a few per revision or renewal): this many a minute per caller. */
export const NODE_EVENTS_BURST = 30;
const BODY_LIMIT = 4096;

export function nodeEventRoutes(context: RouteContext): FastifyPluginAsync {
  return async (app) => {
    // Counted after the body's schema check (preHandler), per authenticated certificate id: keys are
    // identities CentOps issued, so the store behind it is bounded by the registry, not by callers.
    await app.register(rateLimit, { global: false, hook: 'preHandler' });
    app.post(
      '/v1/nodes/:id/events',
      {
        bodyLimit: BODY_LIMIT,
        config: {
          rateLimit: {
            max: NODE_EVENTS_BURST,
            timeWindow: 60_000,
            keyGenerator: (request) => `${request.principal.kind}:${request.principal.id}`,
            errorResponseBuilder: (_request, limit) =>
              new DmrError('RATE_LIMITED', `too many event reports from this caller; try again in ${limit.after}`, {
                details: { retryAfterSeconds: Math.max(1, Math.ceil(limit.ttl / 1000)) },
                hint: 'a node reports a few events per revision or renewal; wait and retry',
              }),
          },
        },
        schema: {
          tags: ['events'],
          summary: 'a node reports one of its events (docs/events.md); appended to the CentOps audit log',
          description:
            'Node certificates only, for their own id. The body is one event of a node kind of the catalogue ' +
            `(${NODE_EVENT_KINDS.join(', ')}): {kind, at, fields}. At most ${NODE_EVENTS_BURST} a minute per ` +
            'caller (429 RATE_LIMITED).',
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
        await context.events.reported(event);
        return reply.code(204).send();
      },
    );
  };
}
