/**
 * CentOps' audit-log API as seen on the wire (docs/audit.md): what a
 * router writer sends, and what CentOps answers. CentOps validates the
 * request with its own route schema; clients validate answers with these.
 */
import { Type, type Static } from '@sinclair/typebox';
import { MAX_PROOF_HASHES } from './merkle.js';

const Hash = Type.String({ minLength: 44, maxLength: 44, pattern: '^[A-Za-z0-9+/]{43}=$' });
const Chain = Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 8 });

/**
 * POST /v1/audit/checkpoints, CentOps' route schema. A consistency proof and
 * a log edge are O(log n) hashes: a tree size below 2^53 needs at most 54
 * and 53 of them (merkle.ts MAX_PROOF_HASHES).
 */
export const CHECKPOINT_SUBMISSION_SCHEMA = Type.Object(
  {
    checkpoint: Type.String({ minLength: 1, maxLength: 8192 }),
    proof: Type.Array(Hash, { maxItems: MAX_PROOF_HASHES }),
    edge: Type.Array(Hash, { maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type CheckpointSubmissionBody = Static<typeof CHECKPOINT_SUBMISSION_SCHEMA>;

/** POST /v1/audit/checkpoints: the note countersigned by CentOps, and CentOps' witness chain (x5c). */
export const WITNESSED_CHECKPOINT_SCHEMA = Type.Object({
  checkpoint: Type.String({ minLength: 1, maxLength: 8192 }),
  size: Type.Integer({ minimum: 0 }),
  witness: Chain,
});
export type WitnessedCheckpointBody = Static<typeof WITNESSED_CHECKPOINT_SCHEMA>;

/**
 * GET /v1/audit/writers/:node/:name/checkpoint: where a restarted writer
 * continues. `at`: when CentOps witnessed it (ISO 8601; absent from older
 * CentOps): the restarted writer reads its own records after it from there.
 */
export const WRITER_CHECKPOINT_SCHEMA = Type.Object({
  checkpoint: Type.String({ minLength: 1, maxLength: 8192 }),
  size: Type.Integer({ minimum: 0 }),
  edge: Type.Array(Hash, { maxItems: 64 }),
  witness: Chain,
  at: Type.Optional(Type.String({ maxLength: 64 })),
});
export type WriterCheckpointBody = Static<typeof WRITER_CHECKPOINT_SCHEMA>;

/** GET /v1/audit/checkpoints?origin=…: a log's checkpoints, smallest first. */
export const CHECKPOINT_LIST_SCHEMA = Type.Object({
  items: Type.Array(
    Type.Object({
      checkpoint: Type.String({ minLength: 1, maxLength: 8192 }),
      size: Type.Integer({ minimum: 0 }),
      at: Type.String(),
    }),
  ),
  witness: Chain,
});
export type CheckpointListBody = Static<typeof CHECKPOINT_LIST_SCHEMA>;

/** GET /v1/audit/writers */
export const AUDIT_WRITERS_SCHEMA = Type.Object({
  items: Type.Array(
    Type.Object({ writer: Type.String(), nodeId: Type.String(), origin: Type.String(), registeredAt: Type.String() }),
  ),
  centops: Type.String(),
});
export type AuditWritersBody = Static<typeof AUDIT_WRITERS_SCHEMA>;
