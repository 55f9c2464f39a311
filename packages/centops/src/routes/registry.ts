/**
 * CRUD for organisations, clients, nodes and links: one definition per kind,
 * the same five routes each. Reading needs any operator role; writing needs
 * operator or admin. Nodes and clients have no access here: a node learns
 * the registry through its signed configuration (the feed) only.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { DmrError } from '@dmr/core';
import type { ResourceKind, ResourceSpecs } from '../model.js';
import { READERS, WRITERS, actorOf, requireRole } from '../server/auth.js';
import { etag, expectedVersion, sendPage } from '../server/http.js';
import type { ListFilters } from '../store/index.js';
import type { RouteContext } from './context.js';
import {
  IdParams,
  PageQuery,
  PreconditionHeaders,
  SPEC_SCHEMAS,
  errorResponses,
  pageOf,
  storedSchema,
} from './schemas.js';

interface KindRoutes<K extends ResourceKind> {
  kind: K;
  path: string;
  /** List filters this kind accepts as query parameters. */
  filters: readonly string[];
}

const KINDS = [
  { kind: 'Organisation', path: 'organisations', filters: [] },
  { kind: 'Client', path: 'clients', filters: ['organisation', 'homeNode'] },
  { kind: 'Node', path: 'nodes', filters: [] },
  { kind: 'Link', path: 'links', filters: ['node'] },
] as const satisfies ReadonlyArray<KindRoutes<ResourceKind>>;
// The filter names are checked against the store's ListFilters here, once.
const _filtersAreKnown: Array<keyof ListFilters['Client'] | keyof ListFilters['Link']> = KINDS.flatMap((def) => [
  ...def.filters,
]);
void _filtersAreKnown;

function registerKind<K extends ResourceKind>(app: FastifyInstance, context: RouteContext, def: KindRoutes<K>): void {
  const { store, trustDomain } = context;
  const base = `/v1/${def.path}`;
  const tags = [def.path];
  const stored = storedSchema(def.kind);
  const spec: TSchema = SPEC_SCHEMAS[def.kind];
  const filterQuery = Object.fromEntries(def.filters.map((name) => [name, Type.Optional(Type.String())]));
  const after = async () => context.onRevision(await store.revision());

  app.get(
    base,
    {
      preHandler: requireRole(...READERS),
      schema: {
        tags,
        summary: `list ${def.path}`,
        querystring: Type.Object({ ...PageQuery, ...filterQuery }, { additionalProperties: false }),
        response: { 200: pageOf(stored), ...errorResponses(422) },
      },
    },
    async (request, reply) => {
      const query = request.query as { limit?: number; cursor?: string } & Record<string, string | undefined>;
      const filter = Object.fromEntries(
        def.filters.filter((name) => query[name] !== undefined).map((name) => [name, query[name]]),
      ) as ListFilters[K];
      return sendPage(reply, await store.list(def.kind, { limit: query.limit, cursor: query.cursor, filter }));
    },
  );

  app.get(
    `${base}/:id`,
    {
      preHandler: requireRole(...READERS),
      schema: {
        tags,
        summary: `get one of ${def.path}`,
        params: IdParams,
        response: { 200: stored, ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const resource = await store.get(def.kind, id);
      void reply.header('etag', etag(resource.version));
      return resource;
    },
  );

  app.post(
    base,
    {
      preHandler: requireRole(...WRITERS),
      schema: {
        tags,
        summary: `create one of ${def.path}`,
        body: spec,
        response: { 201: stored, ...errorResponses(409, 422) },
      },
    },
    async (request, reply) => {
      const body = request.body as ResourceSpecs[K];
      const created = await store.create(def.kind, body, actorOf(request.principal, trustDomain));
      await after();
      void reply.code(201).header('etag', etag(created.version)).header('location', `${base}/${created.spec.id}`);
      return created;
    },
  );

  app.put(
    `${base}/:id`,
    {
      preHandler: requireRole(...WRITERS),
      schema: {
        tags,
        summary: `replace one of ${def.path}`,
        description: 'If-Match is optional; when given, a different current version answers 412.',
        params: IdParams,
        headers: PreconditionHeaders,
        body: spec,
        response: { 200: stored, ...errorResponses(404, 412, 422) },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const body = request.body as ResourceSpecs[K];
      if (body.id !== id) {
        throw new DmrError('VALIDATION_FAILED', `the body's id "${body.id}" differs from the URL's "${id}"`, {
          details: { problems: [{ path: 'body.id', message: `must equal the id in the URL (${id})` }] },
        });
      }
      const version = expectedVersion(request.headers['if-match']);
      const updated = await store.update(def.kind, body, actorOf(request.principal, trustDomain), {
        expectedVersion: version,
      });
      await after();
      void reply.header('etag', etag(updated.version));
      return updated;
    },
  );

  app.delete(
    `${base}/:id`,
    {
      preHandler: requireRole(...WRITERS),
      schema: {
        tags,
        summary: `delete one of ${def.path}`,
        params: IdParams,
        headers: PreconditionHeaders,
        response: { 204: Type.Null(), ...errorResponses(404, 412, 422) },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const version = expectedVersion(request.headers['if-match']);
      await store.delete(def.kind, id, actorOf(request.principal, trustDomain), { expectedVersion: version });
      await after();
      return reply.code(204).send();
    },
  );
}

export function registryRoutes(context: RouteContext): FastifyPluginAsync {
  return async (app) => {
    for (const def of KINDS) registerKind(app, context, def as KindRoutes<ResourceKind>);
  };
}
