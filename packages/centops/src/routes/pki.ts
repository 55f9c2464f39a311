/**
 * The certificate service's routes. Two plugins, one per listener:
 *
 * - `pkiRoutes` (mTLS API): tokens, renewal, revocation, certificate list,
 *   CRL and trust bundle.
 * - `enrolRoutes` (the enrolment listener, server-auth TLS only): enrolment
 *   with a token, grace renewal with a proof of an expired certificate's key
 *   (a nonce, then the proof: decision 0030), CRL and trust bundle, and
 *   nothing else (ADR 0004).
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { DmrError, assertValidId } from '@dmr/core';
import type { RevocationReason } from '@dmr/pki';
import { WRITERS, READERS, actorOf, requireRole } from '../server/auth.js';
import type { CertificateService } from '../server/certificates.js';
import { sendPage } from '../server/http.js';
import type { CertificateQuery } from '../store/index.js';
import type { RouteContext } from './context.js';
import {
  CertificateKind,
  PageQuery,
  PrincipalKind,
  RevocationReason as ReasonSchema,
  errorResponses,
} from './schemas.js';

const PEM_TYPE = 'application/x-pem-file';

export const Issued = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  role: Type.Optional(Type.String({ description: 'operators only' })),
  serial: Type.String(),
  notBefore: Type.String(),
  notAfter: Type.String(),
  fingerprint: Type.String(),
  certificate: Type.String(),
  chain: Type.String(),
  trustBundle: Type.String(),
});

export const Csr = Type.String({ minLength: 1, maxLength: 65_536, description: 'PKCS#10 CSR, PEM' });

/** Public, signed or self-verifying documents: served on both listeners. */
function publicDocuments(service: CertificateService, context: RouteContext): FastifyPluginAsync {
  return async (app) => {
    app.get(
      '/v1/pki/crl',
      { schema: { tags: ['pki'], summary: 'the current CRL (PEM), signed by the CentOps intermediate' } },
      async (_request, reply: FastifyReply) =>
        reply
          .type(PEM_TYPE)
          .header('cache-control', 'no-cache')
          .send(await service.crl()),
    );
    app.get(
      '/v1/pki/trust-bundle',
      { schema: { tags: ['pki'], summary: 'the roots to trust (PEM); several during a rollover' } },
      async (_request, reply: FastifyReply) => reply.type(PEM_TYPE).send(context.ca.trustBundlePem()),
    );
  };
}

export function enrolRoutes(service: CertificateService, context: RouteContext): FastifyPluginAsync {
  return async (app) => {
    await app.register(publicDocuments(service, context));
    app.post(
      '/v1/enroll',
      {
        schema: {
          tags: ['pki'],
          summary: 'exchange a one-time bootstrap token and a CSR for a certificate',
          body: Type.Object(
            { token: Type.String({ minLength: 1, maxLength: 200 }), csr: Csr },
            { additionalProperties: false },
          ),
          response: { 201: Issued, ...errorResponses(400, 413, 422, 429) },
        },
      },
      async (request, reply) => {
        const { token, csr } = request.body as { token: string; csr: string };
        const issued = await service.enrol(token, csr, `enrol:${request.ip}`);
        request.log.info({ id: issued.id, kind: issued.kind, serial: issued.serial }, 'enrolled');
        return reply.code(201).send(issued);
      },
    );
    app.post(
      '/v1/renewal/nonce',
      {
        schema: {
          tags: ['pki'],
          summary: 'a single-use nonce (5 min) for a grace renewal: sign it with the key of the expired certificate',
          response: {
            201: Type.Object({ nonce: Type.String(), expiresAt: Type.String() }),
            ...errorResponses(429),
          },
        },
      },
      async (_request, reply) => reply.code(201).header('cache-control', 'no-store').send(service.renewalNonce()),
    );
    app.post(
      '/v1/renewal',
      {
        schema: {
          tags: ['pki'],
          summary:
            'grace renewal: a client or node whose certificate expired (within renewalGrace) proves it holds its key with a JWS over a nonce and a new CSR',
          body: Type.Object(
            {
              proof: Type.String({ minLength: 1, maxLength: 131_072, description: 'compact JWS, typ dmr-renewal+jws' }),
            },
            { additionalProperties: false },
          ),
          response: { 201: Issued, ...errorResponses(400, 410, 422, 429) },
        },
      },
      async (request, reply) => {
        const issued = await service.renewWithProof((request.body as { proof: string }).proof);
        request.log.info({ id: issued.id, kind: issued.kind, serial: issued.serial }, 'renewed after expiry (grace)');
        return reply.code(201).send(issued);
      },
    );
  };
}

/**
 * Whether an id is a client or a node, for a token request that does not
 * say. Neither is refused here, naming both: guessing one would answer
 * "Node <id> does not exist" for a mistyped client id.
 */
async function principalKindOf(store: RouteContext['store'], id: string): Promise<'client' | 'node'> {
  assertValidId(id);
  if ((await store.find('Client', id)) !== undefined) return 'client';
  if ((await store.find('Node', id)) !== undefined) return 'node';
  throw new DmrError('NOT_FOUND', `no client or node "${id}" is registered`, {
    hint: 'check the id (dmr ctl get clients, dmr ctl get nodes), or register it first (dmr ctl create client|node)',
    details: { id },
  });
}

export function pkiRoutes(service: CertificateService, context: RouteContext): FastifyPluginAsync {
  const { store, trustDomain } = context;
  return async (app) => {
    await app.register(publicDocuments(service, context));

    app.post(
      '/v1/tokens',
      {
        preHandler: requireRole(...WRITERS),
        schema: {
          tags: ['pki'],
          summary: 'create a one-time, expiring bootstrap token for a registered client or node',
          body: Type.Object(
            {
              id: Type.String(),
              kind: Type.Optional(PrincipalKind),
              ttl: Type.Optional(Type.String({ description: 'lifetime, e.g. 15m or 24h (at most 7d); default 1h' })),
            },
            { additionalProperties: false },
          ),
          response: errorResponses(404, 422),
        },
      },
      async (request, reply) => {
        const body = request.body as { id: string; kind?: 'client' | 'node'; ttl?: string };
        const kind = body.kind ?? (await principalKindOf(store, body.id));
        const token = await store.createBootstrapToken(
          { id: body.id, kind, ttl: body.ttl ?? '1h' },
          actorOf(request.principal, trustDomain),
        );
        return reply.code(201).header('cache-control', 'no-store').send(token);
      },
    );

    app.get(
      '/v1/tokens',
      {
        preHandler: requireRole(...WRITERS),
        schema: {
          tags: ['pki'],
          summary: 'bootstrap tokens (never the secrets)',
          querystring: Type.Object({ id: Type.Optional(Type.String()) }, { additionalProperties: false }),
        },
      },
      async (request) => ({ items: await store.listBootstrapTokens((request.query as { id?: string }).id) }),
    );

    app.post(
      '/v1/certificates/renew',
      {
        schema: {
          tags: ['pki'],
          summary: 'a new certificate for the caller, who proves its id with its current certificate',
          body: Type.Object({ csr: Csr }, { additionalProperties: false }),
          response: { 201: Issued, ...errorResponses(400) },
        },
      },
      async (request, reply) => {
        const issued = await service.renew(request.principal, (request.body as { csr: string }).csr);
        request.log.info({ serial: issued.serial, previous: request.certificateSerial }, 'renewed');
        return reply.code(201).send(issued);
      },
    );

    app.post(
      '/v1/certificates/:serial/revoke',
      {
        preHandler: requireRole(...WRITERS),
        schema: {
          tags: ['pki'],
          summary: 'revoke: the serial goes on the CRL, a client or node on the denylist',
          params: Type.Object({ serial: Type.String({ pattern: '^[0-9a-fA-F:]{1,64}$' }) }),
          body: Type.Object({ reason: ReasonSchema }, { additionalProperties: false }),
          response: errorResponses(404, 409),
        },
      },
      async (request) => {
        const { serial } = request.params as { serial: string };
        const { reason } = request.body as { reason: RevocationReason };
        return service.revoke(serial, reason, request.principal);
      },
    );

    app.get(
      '/v1/certificates',
      {
        preHandler: requireRole(...READERS),
        schema: {
          tags: ['pki'],
          summary: 'certificates issued by this CentOps: clients, nodes, operators (with role) and its own',
          querystring: Type.Object(
            {
              ...PageQuery,
              id: Type.Optional(Type.String()),
              kind: Type.Optional(CertificateKind),
              revoked: Type.Optional(Type.Boolean()),
            },
            { additionalProperties: false },
          ),
        },
      },
      async (request, reply) => sendPage(reply, await store.listCertificates(request.query as CertificateQuery)),
    );

    app.get(
      '/v1/certificates/:serial',
      {
        preHandler: requireRole(...READERS),
        schema: { tags: ['pki'], summary: 'one certificate record', params: Type.Object({ serial: Type.String() }) },
      },
      async (request) => {
        const { serial } = request.params as { serial: string };
        if (!/^[0-9a-fA-F:]{1,64}$/.test(serial)) throw new DmrError('INVALID_ARGUMENT', 'not a serial');
        return store.getCertificate(serial);
      },
    );
  };
}
