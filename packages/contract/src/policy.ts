/**
 * The policy set as CentOps' API answers it (`GET /v1/policy`,
 * `GET /v1/policy/versions`): what `dmr policy … --centops` and
 * `dmr ctl policy …` read. TypeBox schemas, so a reader validates what it is
 * given at the edge.
 */
import { Type, type Static } from '@sinclair/typebox';

/** The Rego and data files of a policy set, by path. */
export const POLICY_FILES_SCHEMA = Type.Record(Type.String(), Type.String());
export type PolicyFiles = Static<typeof POLICY_FILES_SCHEMA>;

const VERSION_FIELDS = {
  /** The policy set's version: its ETag and the bundle's revision. */
  version: Type.Integer({ minimum: 0 }),
  /** The registry revision this change produced (0 for the set seeded at init). */
  registryRevision: Type.Integer({ minimum: 0 }),
  /** sha256 (hex) of the canonical JSON of the files. */
  digest: Type.String(),
  bundle: Type.Object({ revision: Type.String(), digest: Type.String(), size: Type.Integer({ minimum: 0 }) }),
  testsPassed: Type.Integer({ minimum: 0 }),
  createdAt: Type.String(),
  createdBy: Type.String(),
};

export const POLICY_VERSION_SCHEMA = Type.Object(VERSION_FIELDS);
/** One accepted version of the policy set (the bundle left out). */
export type PolicyVersion = Static<typeof POLICY_VERSION_SCHEMA>;

export const POLICY_VERSION_WITH_FILES_SCHEMA = Type.Object({ ...VERSION_FIELDS, files: POLICY_FILES_SCHEMA });
/** What `GET /v1/policy` answers: a version with its files. */
export type PolicyVersionWithFiles = Static<typeof POLICY_VERSION_WITH_FILES_SCHEMA>;
