/**
 * `@dmr/centops/testing`: test material other packages may use (never from
 * the package index). Above the node, take it from `@dmr/testkit`.
 */
export * from './server/test-support/empty-centops.js';
export * from './server/test-support/https.js';
export * from './server/test-support/test-centops.js';
export { samplePolicyInput } from './policy/test-support.js';
