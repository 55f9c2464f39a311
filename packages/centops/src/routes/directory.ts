/**
 * The certificate directory: a client's current certificate, for
 * any mesh participant that wants to protect a message for it end to end
 * (encrypt for its key) or verify a message it signed. Certificates are
 * public data, so every authenticated principal may read them: clients and
 * nodes over mTLS, and operators of any role.
 *
 * The answer is the newest certificate of the id that is valid now, not
 * revoked, and whose chain CentOps kept (migration 0004). Anything else is
 * refused with the precise reason, so a caller can refuse with it too:
 *
 *   NOT_FOUND (404)            no such client (details.reason `unknown-id`), or no
 *                              current certificate (`no-current-certificate`: never
 *                              enrolled, expired, or recorded before chains were kept)
 *   PRINCIPAL_DENIED (403)     the id is on the denylist
 *   CERTIFICATE_REVOKED (410)  every current certificate of the id is revoked
 *
 * The client's registry status rides along (`status`): a suspended client
 * still has a certificate, but a node will not deliver to or from it.
 * Callers check the chain against their trust bundle and the CRL themselves
 * (the SDK's CentOpsDirectory does): the directory says which certificate,
 * the CA's signature says it is genuine.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { DmrError } from '@dmr/core';
import { requireMeshPrincipal } from '../server/auth.js';
import type { CertificateWithChain } from '../store/index.js';
import type { RouteContext } from './context.js';
import { Id, errorResponses } from './schemas.js';

export const DirectoryCertificate = Type.Object({
  id: Type.String(),
  kind: Type.Literal('client'),
  serial: Type.String({ description: 'lowercase hex' }),
  fingerprint: Type.String({ description: 'sha256 of the DER leaf, hex' }),
  notBefore: Type.String({ format: 'date-time' }),
  notAfter: Type.String({ format: 'date-time' }),
  chainPem: Type.String({ description: 'PEM, the leaf first, then CentOps’ intermediate' }),
  status: Type.String({ description: 'the client’s registry status: active, suspended or revoked' }),
  earlier: Type.Array(
    Type.Object({
      serial: Type.String(),
      fingerprint: Type.String(),
      notBefore: Type.String({ format: 'date-time' }),
      notAfter: Type.String({ format: 'date-time' }),
      chainPem: Type.String(),
    }),
    {
      description:
        'its other valid, unrevoked certificates, newest first: a message signed just before a renewal verifies ' +
        'with one of them; never encrypt for these',
    },
  ),
});

/** Valid now, not revoked, and its chain kept: a certificate the directory can serve. */
function servable(certificate: CertificateWithChain, now: Date): boolean {
  return certificate.revokedAt === null && certificate.chainPem !== null && new Date(certificate.notBefore) <= now;
}

/** The certificate to serve: the newest servable one (input: newest first). */
function current(certificates: CertificateWithChain[], now: Date): CertificateWithChain | undefined {
  return certificates.find((certificate) => servable(certificate, now));
}

export function directoryRoutes(context: RouteContext): FastifyPluginAsync {
  const { store } = context;
  return async (app) => {
    app.get(
      '/v1/directory/clients/:id/certificate',
      {
        preHandler: requireMeshPrincipal(),
        schema: {
          tags: ['directory'],
          summary: 'a client’s current certificate (PEM chain), for end-to-end protection; any mesh principal',
          params: Type.Object({ id: Id }, { additionalProperties: false }),
          response: { 200: DirectoryCertificate, ...errorResponses(404, 410, 422) },
        },
      },
      async (request, reply) => {
        const { id } = request.params as { id: string };
        const denied = (await store.listDenylist()).find((entry) => entry.id === id);
        if (denied !== undefined) {
          throw new DmrError('PRINCIPAL_DENIED', `client ${id} is on the denylist since ${denied.since}`, {
            details: { id, since: denied.since },
            hint: 'do not encrypt for or accept messages from it; an operator lifts the entry with DELETE /v1/denylist/{id}',
          });
        }
        const client = await store.find('Client', id);
        if (client === undefined) {
          throw new DmrError('NOT_FOUND', `no client ${id} is registered`, { details: { id, reason: 'unknown-id' } });
        }
        // Validity is judged by the certificates' own times against this server's clock.
        const certificates = await store.certificatesOf('client', id);
        const chosen = current(certificates, new Date());
        if (chosen === undefined || chosen.chainPem === null) {
          if (certificates.some((certificate) => certificate.revokedAt !== null)) {
            const serials = certificates.filter((c) => c.revokedAt !== null).map((c) => c.serial);
            throw new DmrError('CERTIFICATE_REVOKED', `every current certificate of client ${id} is revoked`, {
              details: { id, serials },
              hint: 'the client must enrol again (a new bootstrap token) before anyone can protect messages for it',
            });
          }
          throw new DmrError('NOT_FOUND', `client ${id} has no current certificate in the directory`, {
            details: { id, reason: 'no-current-certificate' },
            hint: 'the client gets one by enrolling or renewing (certificates issued before the directory existed are not kept)',
          });
        }
        const now = new Date();
        const earlier = certificates
          .filter((certificate) => certificate !== chosen && servable(certificate, now))
          .map((certificate) => ({
            serial: certificate.serial,
            fingerprint: certificate.fingerprint,
            notBefore: certificate.notBefore,
            notAfter: certificate.notAfter,
            chainPem: certificate.chainPem as string,
          }));
        return reply.header('cache-control', 'no-cache').send({
          id,
          kind: 'client',
          serial: chosen.serial,
          fingerprint: chosen.fingerprint,
          notBefore: chosen.notBefore,
          notAfter: chosen.notAfter,
          chainPem: chosen.chainPem,
          status: client.spec.status,
          earlier,
        });
      },
    );
  };
}
