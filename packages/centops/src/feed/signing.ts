/**
 * Signing node configurations (verifying them is @dmr/contract's
 * node-config-signature.ts): a compact JWS over the
 * canonical JSON of the document, with the signer's certificate chain in
 * `x5c` (leaf first, up to but not including the root) and the leaf's sha256
 * fingerprint as `kid`. A node trusts the document because the chain ends at
 * a root of its trust bundle and the leaf names CentOps' config signer — the
 * same trust it already has for TLS, so no extra key distribution is needed.
 */
import { DmrError } from '@dmr/core';
import { NODE_CONFIG_JWS_TYPE, type NodeConfig, type SigningAlgorithm } from '@dmr/contract';
import { X5cJwsSigner, jwsAlgorithmFor, loadSigningIdentity } from '@dmr/pki';
import { canonicalDocument } from './canonical.js';

// What a node checks is the wire contract's; re-exported so CentOps' API stays as it was.
export {
  NODE_CONFIG_JWS_TYPE,
  SIGNING_ALGORITHMS,
  configSignerSpiffeId,
  verifyNodeConfig,
  type SigningAlgorithm,
  type VerifiedNodeConfig,
  type VerifyOptions,
} from '@dmr/contract';

export interface ConfigSignerOptions {
  /** The signer's certificate followed by its issuing intermediate(s); the root is not needed. */
  certificateChainPem: string;
  privateKeyPem: string;
  /** For RSA keys: PS256 (default) or RS256 for verifiers that lack PSS. */
  rsaAlgorithm?: 'PS256' | 'RS256';
}

/** Holds CentOps' configuration-signing key and certificate chain. */
export class ConfigSigner {
  readonly algorithm: SigningAlgorithm;
  /** sha256 fingerprint of the signer certificate (hex): the JWS `kid`. */
  readonly keyId: string;
  readonly #signer: X5cJwsSigner;
  /** `{alg, typ, kid, x5c}`: the same for every document, so encoded once. */
  readonly #header: string;

  constructor(options: ConfigSignerOptions) {
    const identity = loadSigningIdentity(options.certificateChainPem, options.privateKeyPem, 'the config signer');
    const algorithm = jwsAlgorithmFor(identity.key, options.rsaAlgorithm ?? 'PS256');
    if (algorithm === undefined) {
      throw new DmrError('KEY_INVALID', 'the config signing key must be ECDSA P-256 or P-384, or RSA');
    }
    this.algorithm = algorithm;
    this.keyId = identity.keyId;
    this.#signer = new X5cJwsSigner(identity, algorithm);
    this.#header = this.#signer.header(NODE_CONFIG_JWS_TYPE);
  }

  /** The compact JWS of the canonical JSON of `config`. */
  sign(config: NodeConfig): Promise<string> {
    return Promise.resolve(this.#signer.compact(this.#header, canonicalDocument(config)));
  }
}
