/**
 * The policy set and its bundle (src/policy/):
 *
 *   GET  /v1/policy[?version=N]   operators (any role): the set with its files; ETag "<version>"
 *   PUT  /v1/policy[?dryRun=true] operator, admin: {files}; If-Match optional; 422 POLICY_INVALID with OPA's output
 *   POST /v1/policy/test          operator, admin: {files} → opa check + opa test, nothing stored
 *   GET  /v1/policy/bundle        nodes and operators: the signed bundle; ETag "sha256:<hex>", If-None-Match → 304
 *
 * The bundle route is also what a stock OPA polls as its bundle service
 * (README: "Policy bundle service"): OPA sends If-None-Match with the ETag
 * it last activated and gets 304 while nothing changed.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { DmrError } from '@dmr/core';
import type { PolicyService } from '../policy/service.js';
import { READERS, WRITERS, actorOf, requireRole } from '../server/auth.js';
import { etag, expectedVersion } from '../server/http.js';
import type { RouteContext } from './context.js';
import { errorResponses } from './schemas.js';

const FilesBody = Type.Object(
  {
    files: Type.Record(Type.String(), Type.String(), {
      description: 'relative path → content: .rego modules, *_test.rego tests, data.json files',
    }),
  },
  { additionalProperties: false },
);

/** Nodes (to run the policy) and operators of any role (to inspect it); never clients. */
async function nodeOrReader(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
  const principal = request.principal;
  if (principal.kind === 'node') return;
  if (principal.kind === 'operator' && READERS.includes(principal.role)) return;
  throw new DmrError('FORBIDDEN', `a ${principal.kind} may not read the policy bundle`, {
    details: { allowed: ['node', ...READERS.map((role) => `operator:${role}`)] },
  });
}

/** `"sha256:<hex>"` in If-None-Match (a list, W/ or * included) matches the current bundle. */
function notModified(header: string | undefined, tag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((item) => {
    const value = item.trim().replace(/^W\//, '');
    return value === '*' || value === tag;
  });
}

export function policyRoutes(context: RouteContext, service: PolicyService): FastifyPluginAsync {
  const { trustDomain } = context;
  return async (app) => {
    app.get(
      '/v1/policy',
      {
        preHandler: requireRole(...READERS),
        schema: {
          tags: ['policy'],
          summary: 'the policy set (Rego, data, tests), its version and its bundle',
          querystring: Type.Object(
            { version: Type.Optional(Type.Integer({ minimum: 1, description: 'an older version' })) },
            { additionalProperties: false },
          ),
          response: errorResponses(404),
        },
      },
      async (request, reply) => {
        const { version } = request.query as { version?: number };
        const policy = await service.get(version);
        void reply.header('etag', etag(policy.version));
        return policy;
      },
    );

    app.put(
      '/v1/policy',
      {
        preHandler: requireRole(...WRITERS),
        schema: {
          tags: ['policy'],
          summary: 'replace the policy set: accepted only if opa check --strict and opa test pass',
          description:
            'A new version and a new signed bundle; the registry revision moves on so nodes learn of it. ' +
            'Refused with 422 POLICY_INVALID (details.output = OPA’s output) when a check or test fails. ' +
            'If-Match is optional; a different current version answers 412.',
          querystring: Type.Object({ dryRun: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
          body: FilesBody,
          response: errorResponses(409, 412, 422),
        },
      },
      async (request, reply) => {
        const { files } = request.body as { files: Record<string, string> };
        const { dryRun } = request.query as { dryRun?: boolean };
        const version = expectedVersion(request.headers['if-match']);
        const result = await service.apply(files, actorOf(request.principal, trustDomain), {
          dryRun: dryRun === true,
          ...(version === undefined ? {} : { expectedVersion: version }),
        });
        if (result.changed && result.policy !== undefined) {
          const { version, digest, registryRevision } = result.policy;
          context.events.policyChanged(version, digest, registryRevision);
          context.onRevision(registryRevision);
        }
        if (result.policy !== undefined) void reply.header('etag', etag(result.policy.version));
        return result;
      },
    );

    app.post(
      '/v1/policy/test',
      {
        preHandler: requireRole(...WRITERS),
        schema: {
          tags: ['policy'],
          summary: 'run opa check --strict and opa test on a policy set; stores nothing',
          body: FilesBody,
          response: errorResponses(422),
        },
      },
      async (request) => {
        const { files } = request.body as { files: Record<string, string> };
        return service.test(files);
      },
    );

    app.get(
      '/v1/policy/bundle',
      {
        preHandler: nodeOrReader,
        schema: {
          tags: ['policy'],
          summary: 'the signed policy bundle (OPA bundle format, with policy.wasm); If-None-Match → 304',
          response: errorResponses(404),
        },
      },
      async (request, reply) => {
        const bundle = await service.bundle();
        const tag = `"sha256:${bundle.digest}"`;
        void reply
          .header('etag', tag)
          .header('cache-control', 'no-cache')
          .header('x-dmr-policy-revision', bundle.revision);
        if (notModified(request.headers['if-none-match'], tag)) return reply.code(304).send();
        return reply.type('application/gzip').send(bundle.archive);
      },
    );
  };
}
