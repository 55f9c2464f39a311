/**
 * The denylist as an API: read it (any operator role) and lift an entry
 * (operator or admin). Entries are added with POST /v1/denylist or by
 * revoking a client's or node's certificate (routes/pki.ts); either revokes
 * every unexpired certificate of the id and moves its not-before to now.
 * Lifting one bumps the revision like every change nodes are configured
 * from, and is audited; it does not un-revoke any certificate nor move the
 * not-before back: the id must enrol again (it may, once lifted).
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { READERS, WRITERS, actorOf, requireRole } from '../server/auth.js';
import type { CertificateService } from '../server/certificates.js';
import type { IdentityKind } from '../store/index.js';
import type { RouteContext } from './context.js';
import { errorResponses } from './schemas.js';

const Entry = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  reason: Type.String(),
  since: Type.String({ format: 'date-time' }),
  addedBy: Type.String({ description: 'who put it there (certificate identity)' }),
});

export function denylistRoutes(context: RouteContext, service: CertificateService): FastifyPluginAsync {
  const { store, trustDomain } = context;
  return async (app) => {
    app.post(
      '/v1/denylist',
      {
        preHandler: requireRole(...WRITERS),
        schema: {
          tags: ['denylist'],
          summary: 'deny an identity: every unexpired certificate of it is revoked and its not-before moves to now',
          description:
            'client and node: a denylist entry in the same new revision (nodes refuse the id). operator (admins ' +
            'only): CentOps refuses every certificate of the id issued before now; nodes never see operators.',
          body: Type.Object(
            {
              id: Type.String({ minLength: 2, maxLength: 63, pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$' }),
              kind: Type.Union([Type.Literal('client'), Type.Literal('node'), Type.Literal('operator')]),
              reason: Type.String({ minLength: 1, maxLength: 500 }),
            },
            { additionalProperties: false },
          ),
          response: errorResponses(422),
        },
      },
      async (request, reply) => {
        const body = request.body as { id: string; kind: IdentityKind; reason: string };
        const denied = await service.deny({ kind: body.kind, id: body.id }, body.reason, request.principal);
        return reply.code(201).send(denied);
      },
    );

    app.get(
      '/v1/denylist',
      {
        preHandler: requireRole(...READERS),
        schema: {
          tags: ['denylist'],
          summary: 'ids nodes must refuse, ordered by id',
          response: { 200: Type.Object({ items: Type.Array(Entry) }) },
        },
      },
      async () => ({ items: await store.listDenylist() }),
    );

    app.delete(
      '/v1/denylist/:id',
      {
        preHandler: requireRole(...WRITERS),
        schema: {
          tags: ['denylist'],
          summary: 'lift a denylist entry (a new revision); revoked certificates stay revoked',
          params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 63 }) }),
          response: { 204: Type.Null(), ...errorResponses(404) },
        },
      },
      async (request, reply) => {
        const { id } = request.params as { id: string };
        const lifted = await store.removeFromDenylist(id, actorOf(request.principal, trustDomain));
        context.events.denylist('remove', lifted.kind, id, lifted.revision);
        context.onRevision(lifted.revision);
        return reply.code(204).send();
      },
    );
  };
}
