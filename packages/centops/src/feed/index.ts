export { DEFAULT_LIMITS, MAX_HEADER_BYTES, resolveLimits, type Limits } from './limits.js';
export {
  NODE_CONFIG_API_VERSION,
  NODE_CONFIG_KIND,
  NODE_CONFIG_SCHEMA,
  buildNodeConfig,
  isNodeConfig,
  nodeConfigProblems,
  prepareNodeConfigs,
  type BuildOptions,
  type CertificateRef,
  type NodeConfig,
  type PreparedRegistry,
} from './node-config.js';
export { computeRoutes, type GraphLink, type Route } from './routing.js';
export {
  ConfigSigner,
  NODE_CONFIG_JWS_TYPE,
  SIGNING_ALGORITHMS,
  configSignerSpiffeId,
  verifyNodeConfig,
  type ConfigSignerOptions,
  type SigningAlgorithm,
  type VerifiedNodeConfig,
  type VerifyOptions,
} from './signing.js';
export { RevisionHub, type RevisionHubOptions, type RevisionListener, type RevisionSource } from './hub.js';
export { ConfigSource, loadCertificates, type SignedConfig } from './source.js';
export { asPrincipal, type FeedPrincipal } from './principal.js';
export {
  DEFAULT_WAIT_SECONDS,
  JWS_MEDIA_TYPE,
  MAX_WAIT_SECONDS,
  feedRoutes,
  matchesRevision,
  type FeedOptions,
} from './routes.js';
