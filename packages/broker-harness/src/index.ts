export {
  BrokerHarness,
  type BrokerConnectOptions,
  type HarnessCa,
  type HarnessPhase,
  type HarnessProgress,
  type NodeExitEvent,
  type RestartOptions,
  type RestartReport,
  type StartBrokersOptions,
} from './harness.js';
export { startBrokers, nodeNames } from './start-brokers.js';
export type { BrokerNode } from './node-view.js';
export {
  brokerStatus,
  clearPemCacheInDir,
  installCrlInDir,
  installTrustBundleInDir,
  managementFor,
  pemCacheReloadCommand,
  rabbitmqctlFor,
  stopBrokers,
  type BrokerStatus,
  type NodeStatus,
  type RabbitmqctlRunner,
} from './control.js';
export { harnessPaths, nodePaths, nodeTlsFiles, type HarnessPaths, type NodePaths } from './layout.js';
export { ADMIN_USERNAME, DEFAULT_MAX_MESSAGE_BYTES, HARNESS_PLUGINS, LOGIN_SETTINGS } from './node-config.js';
export type { NodePorts, HarnessPorts } from './ports.js';
export { isRunning, processRef, readProcStat, signalProcess, type ProcStat, type ProcessRef } from './processes.js';
export { locateRabbitmq, type RabbitmqInstall } from './rabbitmq-install.js';
export type { HarnessState, HarnessStatus, Lifetime, NodeState } from './state.js';
export type { StopReport } from './teardown.js';
export type { NodeStopReport } from './node.js';
export {
  TcpProxy,
  type TcpProxyMode,
  type TcpProxyOptions,
  type TcpProxyStats,
  type TcpProxyTarget,
} from './tcp-proxy.js';
export {
  NetnsPartition,
  NETNS_LINK_PREFIX,
  netnsLinksOnHost,
  netnsUnavailable,
  type NetnsEndpoint,
  type NetnsPartitionOptions,
  type NetnsPartitionState,
  type PartitionMode,
} from './netns.js';
