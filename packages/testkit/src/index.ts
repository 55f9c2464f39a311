/**
 * @dmr/testkit: the one import for test helpers in every package above the
 * node (sdk, bridge, mesh, cli, bench). Test and development use only: a
 * production package may list it as a devDependency, never as a dependency.
 *
 * Each helper lives on the lowest floor that needs it, so the packages below
 * can test with it too, and is re-exported here:
 * - `waitFor`, `channelCloseOf`, `channelRoundTrip`, `connectionError`,
 *   `freePort`: `@dmr/core/testing` (core, pki, broker-harness and policy
 *   test with them);
 * - the test CentOps (`startTestCentOps`, on `startEmptyCentOps`), its HTTPS
 *   client (`call`) and a sample decision input (`samplePolicyInput`):
 *   `@dmr/centops/testing` (the node agent's tests use it);
 * - `NodeFixture`: `@dmr/node/testing` (the router's tests use it).
 */
export * from '@dmr/core/testing';
export * from '@dmr/centops/testing';
export * from '@dmr/node/testing';
