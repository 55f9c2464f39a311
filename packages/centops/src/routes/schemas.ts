/**
 * Request and response schemas (TypeBox → JSON Schema): fastify validates
 * every request against them and @fastify/swagger turns them into the
 * OpenAPI document. They describe shapes only; the registry rules (id
 * syntax, references, lifetimes) are the store's validate.ts, which reports
 * every problem in the same `details.problems` form.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { CLIENT_STATUSES, RESOURCE_KINDS } from '../model.js';
import { AUDIT_ACTIONS } from '../store/types.js';
import { KEY_ALGORITHMS, OPERATOR_ROLES, REVOCATION_REASONS, SERVICE_KINDS } from '@dmr/pki';
import { ID_PATTERN_SOURCE } from '@dmr/core';

const strict = { additionalProperties: false } as const;

function literals<T extends string>(values: readonly T[], description?: string): TSchema {
  return Type.Union(
    values.map((value) => Type.Literal(value)),
    description === undefined ? {} : { description },
  );
}

export const Id = Type.String({
  minLength: 2,
  maxLength: 63,
  pattern: ID_PATTERN_SOURCE,
  description: 'a DMR id: a-z, 0-9 and "-", not starting or ending with "-"',
});
export const Labels = Type.Record(Type.String(), Type.String(), { description: 'free key/value labels' });

export const CertificateProfile = Type.Object(
  {
    keyAlgorithm: literals(KEY_ALGORITHMS),
    lifetime: Type.String({ description: 'certificate lifetime, e.g. 24h or 7d' }),
    extraDns: Type.Array(Type.String()),
    extraIps: Type.Array(Type.String()),
  },
  strict,
);

export const Organisation = Type.Object({ id: Id, name: Type.String({ minLength: 1 }), labels: Labels }, strict);

export const Client = Type.Object(
  {
    id: Id,
    organisation: Id,
    homeNode: Id,
    roles: Type.Array(Type.String()),
    labels: Labels,
    status: literals(CLIENT_STATUSES),
    // Left out, the store fills in DEFAULT_CLIENT_CERTIFICATE_PROFILE (ecdsa-p256, 7d, no extra names).
    certificateProfile: Type.Optional(CertificateProfile),
  },
  strict,
);

export const Node = Type.Object(
  {
    id: Id,
    amqpsEndpoint: Type.String({ description: 'amqps://host:port' }),
    managementEndpoint: Type.String({ description: 'https://host:port of the RabbitMQ management API' }),
    labels: Labels,
    certificateProfile: CertificateProfile,
  },
  strict,
);

export const Link = Type.Object(
  {
    id: Type.String({ description: '<node-a>--<node-b>, node ids in sorted order' }),
    nodes: Type.Tuple([Id, Id]),
    cost: Type.Integer({ minimum: 1 }),
  },
  strict,
);

export const SPEC_SCHEMAS = { Organisation, Client, Node, Link } as const;

export function storedSchema(kind: keyof typeof SPEC_SCHEMAS): TSchema {
  return Type.Object({
    kind: Type.Literal(kind),
    spec: SPEC_SCHEMAS[kind],
    version: Type.Integer({ description: 'increments on every change; the ETag' }),
    revision: Type.Integer({ description: 'registry revision of the last change' }),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  });
}

export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    details: Type.Record(Type.String(), Type.Unknown()),
    hint: Type.Optional(Type.String()),
  }),
});

/** The error responses every route can give (documentation; serialisation goes through the error handler). */
export function errorResponses(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries([401, 403, ...statuses].map((status) => [status, ErrorBody]));
}

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: Type.Optional(Type.String({ description: 'the `next` of the previous page' })),
};

export function pageOf(item: TSchema): TSchema {
  return Type.Object({
    items: Type.Array(item),
    next: Type.Union([Type.String(), Type.Null()], { description: 'cursor of the next page; null on the last' }),
  });
}

export const IdParams = Type.Object({ id: Type.String() });

export const PreconditionHeaders = Type.Object({
  'if-match': Type.Optional(Type.String({ description: 'the ETag last read; a different version answers 412' })),
});

export const ApplyItem = Type.Object(
  {
    op: Type.Optional(literals(['create', 'update', 'upsert', 'delete'] as const, 'default upsert')),
    kind: literals(RESOURCE_KINDS),
    // The spec is checked per kind by the store, which reports paths as changes[i].spec.field.
    spec: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    id: Type.Optional(Type.String({ description: 'delete: the id (or give spec.id)' })),
    expectedVersion: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  strict,
);

export const AuditQuery = Type.Object(
  {
    ...PageQuery,
    since: Type.Optional(Type.String({ format: 'date-time' })),
    kind: Type.Optional(Type.String()),
    id: Type.Optional(Type.String()),
    action: Type.Optional(literals(AUDIT_ACTIONS)),
  },
  strict,
);

export const OperatorRole = literals(OPERATOR_ROLES);
export const RevocationReason = literals(REVOCATION_REASONS);
export const PrincipalKind = literals(['client', 'node'] as const);
export const CertificateKind = literals(['client', 'node', ...SERVICE_KINDS] as const);
