export {
  startBrokers,
  BrokerHarness,
  nodeNames,
  trustBundleFor,
  type BrokerConnectOptions,
  type BrokerNode,
  type HarnessCa,
  type HarnessPhase,
  type HarnessProgress,
  type NodeExitEvent,
  type StartBrokersOptions,
} from './harness.js';
export {
  brokerStatus,
  installCrlInDir,
  managementFor,
  stopBrokers,
  type BrokerStatus,
  type NodeStatus,
} from './control.js';
export { connectWithCertificate, type CertificateConnectOptions } from './connect.js';
export {
  crlFileName,
  crlRefreshDelayMs,
  installCrlFile,
  nameHash,
  parseCrl,
  type CrlInfo,
  type InstalledCrl,
} from './crl.js';
export {
  ManagementClient,
  type ConnectionInfo,
  type ExchangeType,
  type ListenerInfo,
  type ManagementCredentials,
  type Permissions,
} from './management.js';
export { harnessPaths, nodePaths, type HarnessPaths, type NodePaths } from './layout.js';
export { ADMIN_USERNAME, HARNESS_PLUGINS } from './node-config.js';
export type { NodePorts, HarnessPorts } from './ports.js';
export { isRunning, type ProcessRef } from './processes.js';
export { locateRabbitmq, type RabbitmqInstall } from './rabbitmq-install.js';
export type { HarnessState, HarnessStatus, Lifetime, NodeState } from './state.js';
export type { StopReport } from './teardown.js';
export type { NodeStopReport } from './node.js';
export { probeTls, type TlsProbeOptions, type TlsProbeResult } from './tls-probe.js';
