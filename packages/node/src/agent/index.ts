// Selective: the package index re-exports the agent and the router side by side, so names must not clash.
export { NodeAgent, type AgentOptions, type DocumentOutcome } from './agent.js';
export { refusalReason } from './refusal.js';
export { Backoff, renewalDelayMs } from './backoff.js';
export { brokerCaFile, installBrokerCrl, installNodeBrokerTls, type BrokerTlsPaths } from './broker-tls.js';
export {
  CentOpsClient,
  errorFromAnswer,
  type IssuedCertificateResponse,
  type NodeStatusReport,
  type TlsIdentity,
} from './centops-client.js';
export { FeedFollower, type FeedDocument, type FeedOptions } from './feed.js';
export { enrol, loadIdentity, renew, type NodeIdentity } from './identity.js';
export { AgentMetrics, serveMetrics } from './metrics.js';
export { routerMain } from './router-main.js';
export {
  TrustFollowingPolicy,
  startRouterProcess,
  type RouterProcessOptions,
  type RunningRouter,
} from './router-process.js';
export { runNode, startNode, type RunningNode } from './run.js';
export {
  RUN_CONFIG_SCHEMA,
  loadRunConfig,
  openManagement,
  parseRunConfig,
  runConfigProblems,
  type RawRunConfig,
  type RunConfig,
} from './run-config.js';
export {
  checkBundleDigest,
  dataPaths,
  readLastGood,
  readLocalStatus,
  verifyDocument,
  verifySigned,
  writeLastGood,
  type DataPaths,
  type LastGood,
  type LocalStatus,
} from './state-dir.js';
export { ROUTER_ENTRY, RouterSupervisor, type SupervisorOptions } from './supervisor.js';
