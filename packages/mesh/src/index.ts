export { DEFAULT_MESH_DIR, NODE_ID, meshPaths, type MeshPaths } from './paths.js';
export { readMeshState, readStats, type DemoStats, type MeshState, type MeshStatus } from './state.js';
export { TerminalProgress, type MeshProgress, type StepHandle, type TerminalProgressOptions } from './progress.js';
export { DEMO_CLIENTS, registryDocuments, ensureGrants, type DemoClient } from './registry.js';
export { DemoExchange, enrolClient, type DemoEvent, type DemoOptions, type EnrolledClient } from './demo.js';
export { LocalMesh, preflight, startMesh, type DmrCommand, type StartMeshOptions } from './up.js';
export {
  meshDown,
  meshStatus,
  startDetached,
  type ComponentStatus,
  type DetachedStartOptions,
  type DownReport,
  type MeshStatusReport,
} from './control.js';
