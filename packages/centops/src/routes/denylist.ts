/**
 * The denylist as an API: read it (any operator role) and lift an entry
 * (operator or admin). Entries are added by revoking a client's or node's
 * certificate (routes/pki.ts). Lifting one bumps the revision like every
 * change nodes are configured from, and is audited; it does not un-revoke
 * any certificate: the id must enrol again (it may, once lifted).
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { READERS, WRITERS, actorOf, requireRole } from '../server/auth.js';
import type { RouteContext } from './context.js';
import { errorResponses } from './schemas.js';

const Entry = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  reason: Type.String(),
  since: Type.String({ format: 'date-time' }),
  addedBy: Type.String({ description: 'who put it there (certificate identity)' }),
});

export function denylistRoutes(context: RouteContext): FastifyPluginAsync {
  const { store, trustDomain } = context;
  return async (app) => {
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
        await store.removeFromDenylist(id, actorOf(request.principal, trustDomain));
        context.onRevision(await store.revision());
        return reply.code(204).send();
      },
    );
  };
}
