/**
 * Signing node configurations (verifying them is @dmr/contract's
 * node-config-signature.ts): a compact JWS over the
 * canonical JSON of the document, with the signer's certificate chain in
 * `x5c` (leaf first, up to but not including the root) and the leaf's sha256
 * fingerprint as `kid`. A node trusts the document because the chain ends at
 * a root of its trust bundle and the leaf names CentOps' config signer — the
 * same trust it already has for TLS, so no extra key distribution is needed.
 */
import { constants, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { DmrError } from '@dmr/core';
import { NODE_CONFIG_JWS_TYPE, type NodeConfig, type SigningAlgorithm } from '@dmr/contract';
import { loadSigningIdentity } from '@dmr/pki';
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

function algorithmFor(key: KeyObject, rsaAlgorithm: 'PS256' | 'RS256'): SigningAlgorithm {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    throw new DmrError('KEY_INVALID', `the signing key's curve ${String(curve)} is not P-256 or P-384`);
  }
  if (type === 'rsa' || type === 'rsa-pss') return type === 'rsa-pss' ? 'PS256' : rsaAlgorithm;
  throw new DmrError('KEY_INVALID', `a ${String(type)} key cannot sign node configurations (ECDSA or RSA)`);
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

/** node:crypto's parameters for each JWS algorithm (RFC 7518 §3): ECDSA as r‖s, PSS with a 32-byte salt. */
function signingKey(algorithm: SigningAlgorithm, key: KeyObject) {
  if (algorithm === 'ES256' || algorithm === 'ES384') return { key, dsaEncoding: 'ieee-p1363' as const };
  if (algorithm === 'PS256') return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
  return { key, padding: constants.RSA_PKCS1_PADDING };
}

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
  readonly #key: KeyObject;
  readonly #x5c: string[];

  constructor(options: ConfigSignerOptions) {
    const identity = loadSigningIdentity(options.certificateChainPem, options.privateKeyPem, 'the config signer');
    this.algorithm = algorithmFor(identity.key, options.rsaAlgorithm ?? 'PS256');
    this.keyId = identity.keyId;
    this.#key = identity.key;
    this.#x5c = identity.x5c;
  }

  /**
   * The compact JWS of the canonical JSON of `config`. Signed with node:crypto
   * rather than jose's CompactSign, which goes through WebCrypto and costs
   * ~7 ms per 30 kB document (100 nodes per change); verification uses jose,
   * so every test also cross-checks this against an independent implementation.
   */
  sign(config: NodeConfig): Promise<string> {
    const header = { alg: this.algorithm, typ: NODE_CONFIG_JWS_TYPE, kid: this.keyId, x5c: this.#x5c };
    const input = `${base64url(JSON.stringify(header))}.${base64url(canonicalDocument(config))}`;
    const signature = cryptoSign(
      this.algorithm === 'ES384' ? 'sha384' : 'sha256',
      Buffer.from(input),
      signingKey(this.algorithm, this.#key),
    );
    return Promise.resolve(`${input}.${signature.toString('base64url')}`);
  }
}
