export { parseLocation, type Dialect, type StoreLocation } from './location.js';
export { databaseOf, openStore, type OpenStoreOptions } from './store.js';
export { TOKEN_PREFIX } from './tokens.js';
export * from './types.js';
export {
  validateChange,
  validateRegistry,
  validateSpec,
  type CheckedChange,
  type Problem,
  type RegistryContents,
} from './validate.js';
export type { AuditWriter, CheckpointProposal, StoredCheckpoint } from './audit-checkpoints.js';
export { MAX_AUDIT_WRITERS_PER_NODE } from './audit-checkpoints.js';
