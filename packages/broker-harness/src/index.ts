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
  type RestartOptions,
  type RestartReport,
  type StartBrokersOptions,
} from './harness.js';
export {
  brokerStatus,
  clearPemCacheInDir,
  installCrlInDir,
  installTrustBundleInDir,
  managementFor,
  rabbitmqctlFor,
  stopBrokers,
  type BrokerStatus,
  type NodeStatus,
  type RabbitmqctlRunner,
} from './control.js';
export type { CtlResult } from './rabbitmqctl.js';
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
  USER_LIMIT_NAMES,
  type UserLimitName,
} from './management.js';
export {
  DEFAULT_MESH_INGRESS_EXCHANGE,
  DEFAULT_RECONNECT_DELAY_SECONDS,
  DEFAULT_SHOVEL_PREFETCH,
  linkShovelSpec,
  localDirectUri,
  parseShovelDefinition,
  parseShovelStatuses,
  peerAmqpsUri,
  type LinkShovelInput,
  type LinkShovelSpec,
  type LinkTlsFiles,
  type PeerEndpoint,
  type ShovelDefinition,
  type ShovelState,
  type ShovelStatus,
} from './shovels.js';
export {
  harnessPaths,
  nodePaths,
  nodeTlsFiles,
  type BrokerTlsFiles,
  type HarnessPaths,
  type NodePaths,
} from './layout.js';
export {
  checkServerCertificate,
  checkTrustBundle,
  installBrokerTls,
  type InstallBrokerTlsOptions,
  type InstalledBrokerTls,
  type ServerCertificateInfo,
} from './tls-install.js';
export { ADMIN_USERNAME, DEFAULT_MAX_MESSAGE_BYTES, HARNESS_PLUGINS, LOGIN_SETTINGS } from './node-config.js';
export type { NodePorts, HarnessPorts } from './ports.js';
export { isRunning, processRef, readProcStat, signalProcess, type ProcStat, type ProcessRef } from './processes.js';
export { locateRabbitmq, type RabbitmqInstall } from './rabbitmq-install.js';
export type { HarnessState, HarnessStatus, Lifetime, NodeState } from './state.js';
export type { StopReport } from './teardown.js';
export type { NodeStopReport } from './node.js';
export { probeTls, type TlsProbeOptions, type TlsProbeResult } from './tls-probe.js';
export { TcpProxy, type TcpProxyMode, type TcpProxyOptions, type TcpProxyStats } from './tcp-proxy.js';
