/**
 * Status wire types: what a node's agent writes to `state/status.json` (read
 * by `dmr node status`), what a node reports to CentOps, and CentOps'
 * `GET /v1/status` answer (read by `dmr ctl status`). TypeBox schemas, so a
 * reader validates what it is given at the edge.
 */
import { Type, type Static } from '@sinclair/typebox';

const Refused = Type.Object({ revision: Type.Integer(), reason: Type.String() });

/**
 * `running`, `starting`, `terminated`: the link's shovel worker as RabbitMQ
 * reports it (`starting` also while it cannot reach or log in to the peer);
 * `draining`: the link left the configuration (or its peer was denylisted)
 * and its outbound queue still holds messages; `absent`: configured, but no
 * shovel runs for it.
 */
export const LINK_STATES = ['running', 'starting', 'terminated', 'draining', 'absent'] as const;
export type LinkState = (typeof LINK_STATES)[number];

export const LINK_STATUS_SCHEMA = Type.Object({
  peer: Type.String(),
  state: Type.Union(LINK_STATES.map((state) => Type.Literal(state))),
  /** Messages waiting in `dmr.outbound.<peer>` (the broker's statistics: up to a few seconds old). */
  messages: Type.Integer({ minimum: 0 }),
});
/** One link of a node, as its agent sees it on its broker. */
export type LinkStatus = Static<typeof LINK_STATUS_SCHEMA>;

export const LOCAL_STATUS_SCHEMA = Type.Object({
  node: Type.String(),
  appliedRevision: Type.Union([Type.Integer(), Type.Null()]),
  policyRevision: Type.Union([Type.String(), Type.Null()]),
  refused: Type.Union([
    Type.Object({ revision: Type.Integer(), reason: Type.String(), at: Type.String() }),
    Type.Null(),
  ]),
  centopsConnected: Type.Boolean(),
  certificate: Type.Union([Type.Object({ serial: Type.String(), notAfter: Type.String() }), Type.Null()]),
  /** Each link to a peer; absent when the agent has not looked at its broker's links yet. */
  links: Type.Optional(Type.Array(LINK_STATUS_SCHEMA)),
  updatedAt: Type.String(),
});
/** What status.json holds: the agent's view, for operators and `dmr node status`-like tools. */
export type LocalStatus = Static<typeof LOCAL_STATUS_SCHEMA>;

export const NODE_STATUS_REPORT_SCHEMA = Type.Object(
  {
    /** The revision it runs, null before it has applied any. */
    appliedRevision: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    /** The last revision it refused and why; absent or null when it refused none since. */
    refused: Type.Optional(
      Type.Union([
        Type.Object(
          { revision: Type.Integer({ minimum: 0 }), reason: Type.String({ minLength: 1, maxLength: 1000 }) },
          { additionalProperties: false },
        ),
        Type.Null(),
      ]),
    ),
    /** The policy bundle revision it evaluates with. */
    policyRevision: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Null()])),
  },
  { additionalProperties: false },
);
/** What a node reports to CentOps (`PUT /v1/nodes/<id>/status`); each report replaces the previous one. */
export type NodeStatusReport = Static<typeof NODE_STATUS_REPORT_SCHEMA>;

export const MESH_NODE_STATUS_SCHEMA = Type.Object({
  id: Type.String(),
  appliedRevision: Type.Union([Type.Integer(), Type.Null()]),
  /** Whether the node runs the registry's current revision. */
  upToDate: Type.Boolean(),
  refused: Type.Union([Refused, Type.Null()]),
  policyRevision: Type.Union([Type.String(), Type.Null()]),
  reportedAt: Type.Union([Type.String(), Type.Null()]),
});
/** One node in CentOps' `GET /v1/status` answer. */
export type MeshNodeStatus = Static<typeof MESH_NODE_STATUS_SCHEMA>;

export const MESH_STATUS_SCHEMA = Type.Object({
  revision: Type.Integer({ minimum: 0 }),
  schemaVersion: Type.Optional(Type.Unknown()),
  nodes: Type.Array(MESH_NODE_STATUS_SCHEMA),
});
/** CentOps' `GET /v1/status` answer: the registry revision and what each node runs. */
export type MeshStatus = Static<typeof MESH_STATUS_SCHEMA>;
