export * from './bundle.js';
// OPA's canonical form, only for bundle digests; DMR's own is @dmr/core's canonicalJson (RFC 8785).
export { bundleFileDigest, opaCanonicalJson } from './bundle-hash.js';
export * from './decision.js';
export * from './engine.js';
export * from './factory.js';
export * from './input.js';
export * from './opa.js';
export * from './rest-engine.js';
export * from './signing.js';
export { readTarGz, writeTarGz, type TarFile } from './tar.js';
