export { DEFAULT_MESH_DIR, meshPaths, type MeshNodePaths, type MeshPaths } from './paths.js';
export {
  DEFAULT_NODES,
  DEFAULT_TOPOLOGY,
  MAX_NODES,
  TOPOLOGIES,
  followRoutes,
  linkIdOf,
  meshShape,
  nodeIdAt,
  parseNodeCount,
  parseTopology,
  type MeshShape,
  type Topology,
} from './topology.js';
export {
  MESH_STATE_VERSION,
  readMeshState,
  readStats,
  type DemoStats,
  type MeshClientState,
  type MeshLinkState,
  type MeshNodeState,
  type MeshState,
  type MeshPrometheusState,
  type MeshJaegerState,
  type MeshStatus,
  type PathStats,
} from './state.js';
export {
  JAEGER_INSTALL_HINT,
  JAEGER_VERSION,
  jaegerConfig,
  locateJaeger,
  tracingEnv,
  type JaegerPorts,
} from './jaeger.js';
export {
  PROMETHEUS_DEPLOY_DIR,
  locatePrometheus,
  meshTargets,
  prometheusArgs,
  writePrometheusFiles,
  type MeshTargets,
  type PrometheusInstall,
  type TargetGroup,
} from './prometheus.js';
export { TerminalProgress, type MeshProgress, type StepHandle, type TerminalProgressOptions } from './progress.js';
export { DEMO_CLIENTS, demoHomes, registryDocuments, ensureGrants, type DemoClient } from './registry.js';
export {
  DemoExchange,
  enrolClient,
  type DemoEvent,
  type DemoOptions,
  type DemoParty,
  type EnrolledClient,
} from './demo.js';
export { spawnLogged, stopProcess, signalGroup, type LoggedChild } from './processes.js';
export { LocalMesh, preflight, startMesh, type DmrCommand, type StartMeshOptions } from './up.js';
export type { AppliedConfig, LinkReport } from './inspect.js';
export {
  meshDown,
  meshStatus,
  startDetached,
  type ComponentStatus,
  type DetachedStartOptions,
  type DownReport,
  type MeshStatusReport,
  type NodeReport,
  type PathReport,
} from './control.js';
