/**
 * The audit logs' checkpoints (server/witness.ts, docs/audit.md):
 *
 *   POST /v1/audit/checkpoints                          a node's writer: witness this checkpoint
 *   GET  /v1/audit/writers/:node/:name/checkpoint       the node itself or an operator: the last one held
 *   GET  /v1/audit/writers                              operators: the writers CentOps knows
 *   GET  /v1/audit/checkpoints?origin=…                 operators: a log's checkpoints, smallest first
 */
import { TLSSocket } from 'node:tls';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { DmrError } from '@dmr/core';
import { CHECKPOINT_SUBMISSION_SCHEMA, centOpsOrigin, writerOrigin } from '@dmr/contract';
import { READERS, requireNode, requireRole } from '../server/auth.js';
import type { AuditWitness, CheckpointSubmission } from '../server/witness.js';
import type { RouteContext } from './context.js';
import { errorResponses } from './schemas.js';

const Id = Type.String({ minLength: 2, maxLength: 63, pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$' });

function callerCertificate(request: FastifyRequest) {
  const socket = request.raw.socket;
  const certificate = socket instanceof TLSSocket ? socket.getPeerX509Certificate() : undefined;
  if (certificate === undefined) throw new DmrError('UNAUTHENTICATED', 'no client certificate on this connection');
  return certificate;
}

export function auditLogRoutes(context: RouteContext, witness: AuditWitness): FastifyPluginAsync {
  const { store, trustDomain } = context;
  return async (app) => {
    app.post(
      '/v1/audit/checkpoints',
      {
        preHandler: requireNode(),
        schema: {
          tags: ['audit'],
          summary: "a router writer's signed checkpoint, to be witnessed (countersigned) by CentOps",
          description:
            'checkpoint: a C2SP signed note signed with the calling node certificate; proof: consistency proof ' +
            'from the size CentOps holds; edge: the log edge at this size. A checkpoint that does not extend the ' +
            'held one is refused with AUDIT_CHECKPOINT_INVALID (a fork).',
          body: CHECKPOINT_SUBMISSION_SCHEMA,
          response: errorResponses(422),
        },
      },
      async (request) =>
        witness.witness(request.principal.id, callerCertificate(request), request.body as CheckpointSubmission),
    );

    app.get(
      '/v1/audit/writers/:node/:name/checkpoint',
      {
        schema: {
          tags: ['audit'],
          summary: "the last checkpoint CentOps holds for a writer's log, with the writer's log edge at it",
          params: Type.Object({ node: Id, name: Id }),
        },
      },
      async (request) => {
        const { node, name } = request.params as { node: string; name: string };
        const principal = request.principal;
        if (!(principal.kind === 'node' && principal.id === node) && principal.kind !== 'operator') {
          throw new DmrError('FORBIDDEN', `only node ${node} or an operator may read its writers' checkpoints`);
        }
        const latest = await store.latestAuditCheckpoint(writerOrigin(trustDomain, `${node}/${name}`));
        if (latest === undefined) {
          throw new DmrError('NOT_FOUND', `CentOps holds no checkpoint of writer ${node}/${name}`, {
            hint: 'a new writer starts its log from nothing',
          });
        }
        return {
          checkpoint: latest.note,
          size: latest.size,
          edge: latest.edge ?? [],
          witness: witness.witnessChain,
          at: latest.at,
        };
      },
    );

    app.get(
      '/v1/audit/writers',
      { preHandler: requireRole(...READERS), schema: { tags: ['audit'], summary: 'the router writers CentOps knows' } },
      async () => ({ items: await store.listAuditWriters(), centops: centOpsOrigin(trustDomain) }),
    );

    app.get(
      '/v1/audit/checkpoints',
      {
        preHandler: requireRole(...READERS),
        schema: {
          tags: ['audit'],
          summary: "a log's checkpoints held by CentOps, smallest first",
          querystring: Type.Object(
            {
              origin: Type.String({ minLength: 1, maxLength: 255 }),
              afterSize: Type.Optional(Type.Integer({ minimum: -1 })),
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 1000 })),
            },
            { additionalProperties: false },
          ),
        },
      },
      async (request) => {
        const query = request.query as { origin: string; afterSize?: number; limit?: number };
        const items = await store.listAuditCheckpoints(query.origin, query.afterSize, query.limit);
        return {
          items: items.map((item) => ({ checkpoint: item.note, size: item.size, at: item.at })),
          witness: witness.witnessChain,
        };
      },
    );
  };
}
