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
  HOP_SIGNATURE_JWS_TYPE,
  HOP_SIGNATURE_VERSION,
  HopSigner,
  HopVerifier,
  appendHop,
  canonicalMetadata,
  parseHops,
  type Hop,
  type HopSignerOptions,
  type HopVerifierOptions,
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
