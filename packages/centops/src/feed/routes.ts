/**
 * The configuration feed's HTTP routes, as a Fastify plugin
 * the CentOps server registers after its mutual-TLS authentication hook:
 *
 * - `GET  /v1/nodes/:id/config`        the signed document; ETag `"<revision>"`;
 *   `If-None-Match` naming the current revision long-polls up to `?wait=`
 *   seconds (default 30, max 60) and answers 304 if nothing changed;
 * - `GET  /v1/nodes/:id/config/stream` server-sent events: the document at
 *   connect and at every new revision, heartbeats in between;
 * - `PUT  /v1/nodes/:id/status`        the node reports what it applied or refused;
 * - `GET  /v1/nodes/:id/status`        operators read it, with the current revision.
 *
 * Errors are thrown as DmrError; the server's error handler turns them into
 * `{error:{code,message,details}}` with the catalogue's HTTP status.
 */
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { DmrError, ID_PATTERN_SOURCE } from '@dmr/core';
import { NODE_STATUS_REPORT_SCHEMA } from '@dmr/contract';
import type { Store } from '../store/types.js';
import type { RevisionHub } from './hub.js';
import type { BuildOptions } from './node-config.js';
import { assertMayAccessNode, assertOperator, principalOf } from './principal.js';
import type { ConfigSigner } from './signing.js';
import { ConfigSource } from './source.js';
import { ConfigStream, SSE_HEADERS } from './sse.js';

export interface FeedOptions {
  store: Store;
  signer: ConfigSigner;
  hub: RevisionHub;
  /** The clock documents are issued at (tests). */
  now?: () => Date;
  /** SSE heartbeat interval (ms); default 15 s, under common 30–60 s proxy idle timeouts. */
  heartbeatMs?: number;
  /** What every document is built with: the trust domain, limit overrides. */
  build: BuildOptions;
  /**
   * Checks the caller's credentials again (the server: its certificate is
   * still unrevoked and its id not denylisted) before every document sent
   * on an open stream and after a long-poll wait, so a revocation also ends
   * a connection that was authenticated before it. Throws to refuse.
   */
  reauthenticate?: (request: FastifyRequest) => Promise<void>;
}

export const DEFAULT_WAIT_SECONDS = 30;
export const MAX_WAIT_SECONDS = 60;
export const JWS_MEDIA_TYPE = 'application/jose';

const NodeParams = Type.Object({ id: Type.String({ pattern: ID_PATTERN_SOURCE }) });
const ConfigQuery = Type.Object(
  { wait: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_WAIT_SECONDS, default: DEFAULT_WAIT_SECONDS })) },
  { additionalProperties: false },
);
// The body a node sends is the wire contract's.
const StatusBody = NODE_STATUS_REPORT_SCHEMA;

/** The revisions an If-None-Match header names (`"5"`, `W/"5"`, lists); `*` matches any. */
export function matchesRevision(header: string | undefined, revision: number): boolean {
  if (header === undefined) return false;
  return header.split(',').some((part) => {
    const tag = part.trim();
    return tag === '*' || tag.replace(/^W\//, '') === `"${revision}"`;
  });
}

function sendConfig(reply: FastifyReply, revision: number, jws: string): FastifyReply {
  return reply.header('etag', `"${revision}"`).header('cache-control', 'no-cache').type(JWS_MEDIA_TYPE).send(jws);
}

export const feedRoutes: FastifyPluginAsync<FeedOptions> = async (parent, options) => {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const { store, hub } = options;
  const source = new ConfigSource(store, options.signer, options.build, options.now);
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const streams = new Set<ConfigStream>();
  const reauthenticate = options.reauthenticate ?? (() => Promise.resolve());

  // Open streams and waiting long-polls would hold server.close() for up to a minute; end them first.
  const shutdown = new AbortController();
  app.addHook('preClose', async () => {
    shutdown.abort();
    await Promise.all([...streams].map((stream) => stream.shutdown()));
  });

  app.get(
    '/v1/nodes/:id/config',
    {
      schema: {
        summary: "The node's signed configuration (compact JWS); long-polls with If-None-Match",
        tags: ['feed'],
        params: NodeParams,
        querystring: ConfigQuery,
      },
    },
    async (request, reply) => {
      const nodeId = request.params.id;
      assertMayAccessNode(principalOf(request), nodeId, 'read the configuration');
      let current = await source.current(nodeId);
      if (!matchesRevision(request.headers['if-none-match'], current.revision)) {
        return sendConfig(reply, current.revision, current.jws);
      }
      const waitMs = (request.query.wait ?? DEFAULT_WAIT_SECONDS) * 1000;
      const gone = new AbortController();
      const onClose = () => gone.abort();
      // The response's close (not the request's) is what fires when the client hangs up mid-wait.
      reply.raw.once('close', onClose);
      try {
        const newer = await hub.waitForNewer(current.revision, waitMs, AbortSignal.any([gone.signal, shutdown.signal]));
        if (gone.signal.aborted) return reply;
        // Shutting down: answer "unchanged" now and let the node reconnect (to another replica).
        if (shutdown.signal.aborted) reply.header('connection', 'close');
        if (newer !== undefined) {
          // A long wait: the certificate may have been revoked meanwhile (that is itself a new revision).
          await reauthenticate(request);
          current = await source.current(nodeId);
        }
      } finally {
        reply.raw.off('close', onClose);
      }
      if (matchesRevision(request.headers['if-none-match'], current.revision)) {
        return reply.code(304).header('etag', `"${current.revision}"`).header('cache-control', 'no-cache').send();
      }
      return sendConfig(reply, current.revision, current.jws);
    },
  );

  app.get(
    '/v1/nodes/:id/config/stream',
    {
      schema: {
        summary: "Server-sent events: the node's signed configuration at connect and at every new revision",
        tags: ['feed'],
        params: NodeParams,
      },
    },
    async (request, reply) => {
      const nodeId = request.params.id;
      assertMayAccessNode(principalOf(request), nodeId, 'read the configuration');
      // Fail before hijacking, so an unknown node is a normal JSON 404.
      await source.current(nodeId);
      reply.hijack();
      const response = reply.raw;
      response.writeHead(200, {
        ...SSE_HEADERS,
        ...(request.raw.httpVersionMajor < 2 ? { connection: 'keep-alive' } : {}),
      });
      response.flushHeaders();
      let unsubscribe: () => void = () => undefined;
      const stream = new ConfigStream(
        response,
        async () => {
          await reauthenticate(request);
          return source.current(nodeId);
        },
        heartbeatMs,
        () => {
          unsubscribe();
          streams.delete(stream);
        },
      );
      streams.add(stream);
      // Subscribe before the first send: a revision landing in between is then not missed.
      unsubscribe = hub.subscribe(() => void stream.pump());
      await stream.pump();
    },
  );

  app.put(
    '/v1/nodes/:id/status',
    {
      schema: {
        summary: 'The node reports the revision it applied, or the one it refused and why',
        tags: ['feed'],
        params: NodeParams,
        body: StatusBody,
      },
    },
    async (request) => {
      const nodeId = request.params.id;
      const principal = principalOf(request);
      // Only the node itself knows what it runs; an operator writing it would falsify the record.
      if (principal.kind !== 'node' || principal.id !== nodeId) {
        throw new DmrError('FORBIDDEN', `only node ${nodeId} may report its status`, {
          details: { principal: { kind: principal.kind, id: principal.id }, node: nodeId },
        });
      }
      const body = request.body;
      return store.reportNodeStatus(nodeId, {
        appliedRevision: body.appliedRevision,
        refused: body.refused ?? null,
        policyRevision: body.policyRevision ?? null,
      });
    },
  );

  app.get(
    '/v1/nodes/:id/status',
    {
      schema: {
        summary: 'What the node last reported, beside the current revision',
        tags: ['feed'],
        params: NodeParams,
      },
    },
    async (request) => {
      const nodeId = request.params.id;
      assertOperator(principalOf(request), 'read node status');
      await store.get('Node', nodeId);
      const [status, currentRevision] = await Promise.all([store.getNodeStatus(nodeId), store.revision()]);
      return {
        nodeId,
        currentRevision,
        appliedRevision: status?.appliedRevision ?? null,
        refused: status?.refused ?? null,
        policyRevision: status?.policyRevision ?? null,
        reportedAt: status?.reportedAt ?? null,
        inSync: status?.appliedRevision === currentRevision,
      };
    },
  );
};
