/**
 * The per-node configuration document: what one node needs to run. CentOps
 * builds it from its registry (packages/centops/src/feed/node-config.ts) and
 * signs it; the node verifies it (node-config-signature.ts), validates it
 * against NODE_CONFIG_SCHEMA and applies it. docs/node-config.md documents
 * every field, docs/contract.md "NodeConfig" its place in the contract.
 *
 * Validated with TypeBox's compiled checker: the same library CentOps' API
 * schemas use, and small enough for a router process to load.
 */
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { TRUST_DOMAIN_PATTERN_SOURCE } from '@dmr/core';

/** amqplib encodes a header table into a 64 KiB buffer; leave room for the headers DMR adds. */
export const MAX_HEADER_BYTES = 60 * 1024;

export const NODE_CONFIG_API_VERSION = 'dmr.ee/v1';
export const NODE_CONFIG_KIND = 'NodeConfig';
/** Where a node fetches the policy bundle the document names (mTLS API, ETag = "<digest>"). */
export const POLICY_BUNDLE_PATH = '/v1/policy/bundle';

// The id rule of @dmr/core (2–63 of a-z, 0-9, "-", no leading/trailing "-"); lowercase UUIDs fit it.
const Id = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$' });
// No `format`: TypeBox's own checker knows no formats, and the node validates with it.
const Time = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z$' });
const Revision = Type.Integer({ minimum: 0 });
const Labels = Type.Record(Type.String(), Type.String());
const strict = { additionalProperties: false } as const;

const CertificateRef = Type.Object(
  {
    /** sha256 of the DER certificate, 64 lowercase hex digits. */
    fingerprint: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    serial: Type.String({ pattern: '^[0-9a-f]+$' }),
    notBefore: Time,
    notAfter: Time,
  },
  strict,
);

/** A client's status in the registry; only `active` clients may send or receive. */
export const CLIENT_STATUSES = ['active', 'suspended', 'revoked'] as const;
export type ClientStatus = (typeof CLIENT_STATUSES)[number];

const Status = Type.Union(CLIENT_STATUSES.map((status) => Type.Literal(status)));

export const NODE_CONFIG_SCHEMA = Type.Object(
  {
    apiVersion: Type.Literal(NODE_CONFIG_API_VERSION),
    kind: Type.Literal(NODE_CONFIG_KIND),
    // Names the node's broker users (spiffe://<trustDomain>/client/<id>) and the user_id its clients send.
    trustDomain: Type.String({ pattern: TRUST_DOMAIN_PATTERN_SOURCE }),
    node: Type.Object({ id: Id, amqpsEndpoint: Type.String(), managementEndpoint: Type.String() }, strict),
    revision: Revision,
    issuedAt: Time,
    clients: Type.Array(
      Type.Object(
        { id: Id, organisation: Id, roles: Type.Array(Type.String()), labels: Labels, status: Status },
        strict,
      ),
    ),
    directory: Type.Array(
      Type.Object(
        {
          id: Id,
          homeNode: Id,
          organisation: Id,
          roles: Type.Array(Type.String()),
          status: Status,
          certificates: Type.Array(CertificateRef),
        },
        strict,
      ),
    ),
    links: Type.Array(
      Type.Object(
        {
          peer: Id,
          amqpsEndpoint: Type.String(),
          cost: Type.Integer({ minimum: 1 }),
          peerCertificates: Type.Array(CertificateRef),
        },
        strict,
      ),
    ),
    routes: Type.Array(
      Type.Union([
        Type.Object(
          { destination: Id, reachable: Type.Literal(true), nextHop: Id, cost: Type.Integer({ minimum: 1 }) },
          strict,
        ),
        Type.Object({ destination: Id, reachable: Type.Literal(false) }, strict),
      ]),
    ),
    denylist: Type.Array(
      Type.Object(
        {
          id: Id,
          kind: Type.Union([Type.Literal('client'), Type.Literal('node')]),
          reason: Type.String(),
          since: Time,
        },
        strict,
      ),
    ),
    // Which policy bundle to run: absent only before CentOps has a policy set.
    policy: Type.Optional(
      Type.Object(
        {
          revision: Type.String({ pattern: '^(0|[1-9][0-9]{0,30})$' }),
          digest: Type.String({ pattern: '^sha256:[0-9a-f]{64}$' }),
          bundle: Type.String(),
        },
        strict,
      ),
    ),
    limits: Type.Object(
      {
        maxMessageBytes: Type.Integer({ minimum: 1 }),
        maxTtlMs: Type.Integer({ minimum: 1 }),
        queueMaxLength: Type.Integer({ minimum: 1 }),
        deliveryLimit: Type.Integer({ minimum: 1 }),
        timestampSkewMs: Type.Integer({ minimum: 1 }),
        dedupWindowMs: Type.Integer({ minimum: 1 }),
        maxHeaderBytes: Type.Integer({ minimum: 1, maximum: MAX_HEADER_BYTES }),
        queueMaxBytes: Type.Integer({ minimum: 1 }),
        ingressDeliveryLimit: Type.Integer({ minimum: 1 }),
        senderRatePerSecond: Type.Integer({ minimum: 1 }),
        senderBurst: Type.Integer({ minimum: 1 }),
        maxIdsPerSender: Type.Integer({ minimum: 1 }),
        maxConnectionsPerUser: Type.Integer({ minimum: 1 }),
        maxChannelsPerUser: Type.Integer({ minimum: 1 }),
        // Links a message may cross to its recipient (default DEFAULT_MAX_HOPS, 8); optional so documents
        // signed before the mesh still verify.
        maxHops: Type.Optional(Type.Integer({ minimum: 1, maximum: 32 })),
      },
      strict,
    ),
  },
  strict,
);

export type NodeConfig = Static<typeof NODE_CONFIG_SCHEMA>;
export type CertificateRef = Static<typeof CertificateRef>;

const checker = TypeCompiler.Compile(NODE_CONFIG_SCHEMA);

/** Every schema problem of `value` as `path: message`; empty when it is a valid NodeConfig. */
export function nodeConfigProblems(value: unknown, max = 20): string[] {
  const problems: string[] = [];
  for (const error of checker.Errors(value)) {
    problems.push(`${error.path || '/'}: ${error.message}`);
    if (problems.length >= max) break;
  }
  return problems;
}

export function isNodeConfig(value: unknown): value is NodeConfig {
  return checker.Check(value);
}
