/**
 * Operator management (admin only): a certificate for an operator, with a
 * role, from a CSR the operator made. Why a CSR relayed by an admin rather
 * than a bootstrap token: see the package README ("Operators").
 */
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { OperatorRole as Role } from '@dmr/pki';
import { requireRole } from '../server/auth.js';
import type { CertificateService } from '../server/certificates.js';
import { Csr, Issued } from './pki.js';
import { Id, OperatorRole, errorResponses } from './schemas.js';

export function operatorRoutes(service: CertificateService): FastifyPluginAsync {
  return async (app) => {
    app.post(
      '/v1/operators/certificates',
      {
        preHandler: requireRole('admin'),
        schema: {
          tags: ['operators'],
          summary: 'issue an operator certificate with a role, from the operator’s CSR (admin only)',
          description:
            'The CSR must be signed by the operator’s key and name exactly spiffe://<td>/operator/<id> and ' +
            'urn:dmr:role:<role> (or no SANs). The key never travels. A role change is a new certificate; ' +
            'revoke the old one with POST /v1/certificates/{serial}/revoke.',
          body: Type.Object(
            {
              id: Id,
              role: OperatorRole,
              csr: Csr,
              ttl: Type.Optional(Type.String({ description: 'lifetime, e.g. 30d (1m to 365d); default 90d' })),
            },
            { additionalProperties: false },
          ),
          response: { 201: Issued, ...errorResponses(400, 422) },
        },
      },
      async (request, reply) => {
        const body = request.body as { id: string; role: Role; csr: string; ttl?: string };
        const issued = await service.issueOperator(body, request.principal);
        request.log.info({ id: issued.id, role: body.role, serial: issued.serial }, 'operator certificate issued');
        return reply.code(201).send(issued);
      },
    );
  };
}
