export { checkPolicyFiles, policyDigest, readPolicyDir, type PolicyFiles } from './files.js';
export { initPolicy, type InitPolicyOptions } from './init.js';
export {
  PolicyService,
  defaultPackDir,
  seedDefaultPolicy,
  type PolicyApplyOptions,
  type PolicyApplyResult,
  type PolicyBundleDocument,
  type PolicyServiceOptions,
} from './service.js';
export { POLICY_SIGNER_TTL_MS, ensurePolicySigner, policySignerPaths, type PolicySignerPaths } from './signer.js';
export type { PolicyVersion, PolicyVersionWithFiles } from './versions.js';
