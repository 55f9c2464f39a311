export * from './contract.js';
export {
  messageContext,
  senderFromUserId,
  validateAtOrigin,
  type MessageConfig,
  type MessageContext,
} from './validate.js';
export { ReplayGuard, type ReplayGuardOptions, type ReplayResult } from './replay.js';
export {
  ReplayJournal,
  type DurableReplayMemory,
  type RememberedId,
  type ReplayJournalLoad,
  type ReplayJournalOptions,
  type ReplayMemorySink,
} from './replay-journal.js';
export {
  HOP_SIGNATURE_JWS_TYPE,
  HOP_SIGNATURE_VERSION,
  appendHop,
  canonicalMetadata,
  parseHops,
  type Hop,
  type HopSignerOptions,
  type HopVerifierOptions,
  type OriginEntry,
  type VerifiedOrigin,
} from './hop-signature.js';
export {
  APP_HEADER_PATTERN,
  E2E_CONTENT_TYPE_HEADER,
  MAX_HEADER_DEPTH,
  encodedTableSize,
  forwardedHeaders,
  ownHeader,
  routingHeader,
} from './headers.js';
export { SenderRateLimit, type SenderRateLimitOptions } from './rate-limit.js';
export {
  DEFAULT_MAX_HOPS,
  HOP_CHAIN_VERSION,
  HOP_ENTRY_ALLOWANCE_BYTES,
  HOP_ENTRY_JWS_TYPE,
  HopChainSigner,
  HopChainVerifier,
  hopEntryPayload,
  linkDigest,
  parseHopChain,
  previousHop,
  relayHeaderCap,
  type HopChain,
  type HopChainVerifierOptions,
  type HopEntry,
  type PeerCheckOptions,
  type VerifiedHopChain,
} from './hop-chain.js';
export {
  checkMeshParties,
  mayReportOn,
  meshReport,
  type MeshMessageKind,
  type MeshReportMessage,
  type MeshReportOptions,
} from './mesh-report.js';
