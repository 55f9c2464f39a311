/**
 * Every error leaves the API as `{ error: { code, message, details } }`
 * with the catalogue's HTTP status, whatever threw it: a DmrError from the
 * store or the CA, fastify's schema validation (VALIDATION_FAILED with
 * every field problem, the same `details.problems` shape the store uses),
 * or fastify itself (bad JSON, body too large, unknown route).
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { DmrError, isDmrError, type ErrorCode } from '@dmr/core';

interface ValidationIssue {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}

/** `/spec/certificateProfile/lifetime` in the body → `body.spec.certificateProfile.lifetime`. */
function problemPath(context: string, issue: ValidationIssue): string {
  const segments = (issue.instancePath ?? '')
    .split('/')
    .slice(1)
    .map((segment) => segment.replace(/~1/g, '/').replace(/~0/g, '~'));
  // A missing or unexpected property is reported at its parent; name it.
  const property = issue.params?.missingProperty ?? issue.params?.additionalProperty;
  if (typeof property === 'string') segments.push(property);
  return [context, ...segments]
    .map((part, index) => (/^\d+$/.test(part) && index > 0 ? `[${part}]` : part))
    .join('.')
    .replace(/\.\[/g, '[');
}

function problemMessage(issue: ValidationIssue): string {
  if (issue.keyword === 'additionalProperties') return 'is not a known field';
  if (issue.keyword === 'required') return 'is required';
  return issue.message ?? 'is invalid';
}

export function toDmrError(error: FastifyError | Error): DmrError {
  if (isDmrError(error)) return error;
  const fastifyError = error as FastifyError;
  if (Array.isArray(fastifyError.validation)) {
    const context = fastifyError.validationContext ?? 'body';
    const problems = (fastifyError.validation as ValidationIssue[]).map((issue) => ({
      path: problemPath(context, issue),
      message: problemMessage(issue),
    }));
    return new DmrError('VALIDATION_FAILED', `the request is invalid: ${problems.length} problem(s)`, {
      details: { problems },
    });
  }
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code: ErrorCode = status === 404 ? 'NOT_FOUND' : status === 413 ? 'REQUEST_TOO_LARGE' : 'INVALID_ARGUMENT';
    return new DmrError(code, fastifyError.message, { details: { fastifyCode: fastifyError.code ?? null } });
  }
  return new DmrError('INTERNAL', 'an unexpected error occurred; see the server log', { cause: error });
}

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const dmrError = toDmrError(error);
    // Client mistakes are routine; only server faults deserve an error line with the stack.
    if (dmrError.httpStatus >= 500) request.log.error({ err: error }, dmrError.message);
    else request.log.info({ code: dmrError.code }, dmrError.message);
    return reply.code(dmrError.httpStatus).type('application/json').send(dmrError.toJSON());
  });
  app.setNotFoundHandler((request, reply) => {
    const error = new DmrError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0] ?? ''}`, {
      hint: 'the API is described at /v1/openapi.json',
    });
    return reply.code(404).send(error.toJSON());
  });
}
