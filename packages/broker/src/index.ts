export { connectWithCertificate, LOOPBACK, NODE_HOST, type CertificateConnectOptions } from './connect.js';
export {
  crlFileName,
  crlRefreshDelayMs,
  installCrlFile,
  nameHash,
  parseCrl,
  type CrlInfo,
  type InstalledCrl,
} from './crl.js';
export { CrlKeeper, type CrlKeeperOptions, type CrlSource } from './crl-keeper.js';
export {
  ManagementClient,
  type ConnectionInfo,
  type ExchangeType,
  type ListenerInfo,
  type ManagementCredentials,
  type PeekedMessage,
  type Permissions,
  type QueueDepth,
  USER_LIMIT_NAMES,
  type UserLimitName,
} from './management.js';
export { rabbitmqctl, type CtlResult } from './rabbitmqctl.js';
export {
  DEFAULT_MESH_INGRESS_EXCHANGE,
  DEFAULT_RECONNECT_DELAY_SECONDS,
  DEFAULT_SHOVEL_PREFETCH,
  linkShovelSpec,
  localDirectUri,
  moveShovelSpec,
  parseShovelDefinition,
  parseShovelStatuses,
  peerAmqpsUri,
  type LinkShovelInput,
  type LinkShovelSpec,
  type LinkTlsFiles,
  type MoveShovelInput,
  type MoveShovelSpec,
  type PeerEndpoint,
  type ShovelDefinition,
  type ShovelState,
  type ShovelStatus,
} from './shovels.js';
export {
  checkServerCertificate,
  checkTrustBundle,
  installBrokerTls,
  trustBundleFor,
  writeFileAtomic,
  type BrokerTlsFiles,
  type InstallBrokerTlsOptions,
  type InstalledBrokerTls,
  type ServerCertificateInfo,
  type TrustAnchorSource,
} from './tls-install.js';
export { AMQP_091_HEADER, probeTls, type TlsProbeOptions, type TlsProbeResult } from './tls-probe.js';
