/**
 * Optional end-to-end protection of a message body (docs/contract.md: "the SDK can
 * encrypt and sign them end to end for the recipient"): the body becomes a
 * compact JWE for the recipient's certificate key, whose plaintext is a
 * compact JWS by the sender's key over the payload. DMR nodes route it
 * without being able to read or alter it.
 *
 * The JWS protected header binds the payload to the message: id, sender,
 * recipient and type. A node (or anyone holding an earlier ciphertext) cannot
 * replay it under another message id, to another recipient, or as another
 * type without the receiver noticing.
 *
 * Algorithms follow the key type: signatures ES256 (P-256), ES384 (P-384) or
 * PS256 (RSA); key agreement ECDH-ES+A256KW (EC) or RSA-OAEP-256 (RSA);
 * content A256GCM.
 */
import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { CompactEncrypt, CompactSign, compactDecrypt, compactVerify } from 'jose';
import { DmrError } from '@dmr/core';
import { parseChain } from './certificates.js';
import { listOf } from './list.js';

/** The content type of a protected body: the marker a receiver looks for. */
export const PROTECTED_CONTENT_TYPE = 'application/jose';
const JWS_TYPE = 'dmr-e2e+jws';

/** What the signature binds the payload to. */
export interface MessageBinding {
  id: string;
  from: string;
  to: string;
  type: string;
}

export type PrivateKeyInput = string | KeyObject;

function privateKey(input: PrivateKeyInput): KeyObject {
  return typeof input === 'string' ? createPrivateKey(input) : input;
}

function leafKey(certificatePem: string): KeyObject {
  const [leaf] = parseChain(certificatePem);
  return (leaf as X509Certificate).publicKey;
}

function signatureAlgorithm(key: KeyObject): string {
  if (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') return 'PS256';
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'P-256') return 'ES256';
    if (curve === 'secp384r1' || curve === 'P-384') return 'ES384';
  }
  throw new DmrError('KEY_INVALID', `keys of type ${key.asymmetricKeyType ?? '?'} cannot sign protected messages`);
}

function keyManagementAlgorithm(key: KeyObject): string {
  if (key.asymmetricKeyType === 'ec') return 'ECDH-ES+A256KW';
  if (key.asymmetricKeyType === 'rsa') return 'RSA-OAEP-256';
  throw new DmrError('KEY_INVALID', `keys of type ${key.asymmetricKeyType ?? '?'} cannot receive protected messages`);
}

export interface ProtectKeys {
  /** The sender's private key (PEM or KeyObject): normally the key of its client certificate. */
  signWith: PrivateKeyInput;
  /** The recipient's certificate (PEM, leaf first): its public key encrypts. */
  encryptFor: string;
}

/** The protected body: JWE(JWS(payload)), as UTF-8 bytes of the compact JWE. */
export async function protectPayload(payload: Uint8Array, binding: MessageBinding, keys: ProtectKeys): Promise<Buffer> {
  const signer = privateKey(keys.signWith);
  const jws = await new CompactSign(payload)
    .setProtectedHeader({
      alg: signatureAlgorithm(signer),
      typ: JWS_TYPE,
      'dmr-id': binding.id,
      'dmr-from': binding.from,
      'dmr-to': binding.to,
      'dmr-type': binding.type,
    })
    .sign(signer);
  const recipient = leafKey(keys.encryptFor);
  const jwe = await new CompactEncrypt(new TextEncoder().encode(jws))
    .setProtectedHeader({ alg: keyManagementAlgorithm(recipient), enc: 'A256GCM', cty: JWS_TYPE })
    .encrypt(recipient);
  return Buffer.from(jwe, 'utf8');
}

export interface UnprotectKeys {
  /**
   * The recipient's own private key, or several (tried in order): after a
   * renewal, senders may still encrypt for the previous certificate for a
   * while, so the previous key must still decrypt.
   */
  decryptWith: PrivateKeyInput | readonly PrivateKeyInput[];
  /**
   * The sender's certificate (PEM), found by the authenticated sender id
   * (`dmr-sender`), or several (tried in order): a message signed just
   * before the sender renewed verifies with its previous certificate.
   */
  senderCertificate: string | readonly string[];
  /**
   * Checks a sender certificate just before it is tried (throw to skip it):
   * an earlier certificate is checked only for a message the current one
   * does not verify. If none verifies, a check's refusal is the error when
   * no signature check ran.
   */
  checkSender?: (certificatePem: string) => void | Promise<void>;
}

/** Where a protected body failed: `verify` may succeed with a fresher sender certificate, the others cannot. */
export type ProtectionStage = 'decrypt' | 'verify' | 'binding';

function invalid(message: string, stage: ProtectionStage, cause?: unknown): DmrError {
  return new DmrError('PROTECTION_INVALID', message, { details: { stage }, ...(cause === undefined ? {} : { cause }) });
}

/** The stage a PROTECTION_INVALID error from unprotectPayload failed at. */
export function protectionStage(error: unknown): ProtectionStage | undefined {
  if (!(error instanceof DmrError) || error.code !== 'PROTECTION_INVALID') return undefined;
  const stage = error.details.stage;
  return stage === 'decrypt' || stage === 'verify' || stage === 'binding' ? stage : undefined;
}

/** Decrypts and verifies a protected body; throws PROTECTION_INVALID for anything that does not check out. */
export async function unprotectPayload(
  body: Uint8Array,
  binding: MessageBinding,
  keys: UnprotectKeys,
): Promise<Buffer> {
  const jwe = Buffer.from(body).toString('utf8');
  let jws: string | undefined;
  let decryptError: unknown;
  for (const key of listOf(keys.decryptWith)) {
    try {
      const { plaintext, protectedHeader } = await compactDecrypt(jwe, privateKey(key), {
        contentEncryptionAlgorithms: ['A256GCM'],
        keyManagementAlgorithms: ['ECDH-ES+A256KW', 'RSA-OAEP-256'],
      });
      if (protectedHeader.cty !== JWS_TYPE) throw invalid('the JWE does not carry a DMR signature', 'decrypt');
      jws = new TextDecoder().decode(plaintext);
      break;
    } catch (error) {
      if (error instanceof DmrError) throw error;
      decryptError = error;
    }
  }
  if (jws === undefined) {
    throw invalid(`message ${binding.id}: the body does not decrypt with this client's key`, 'decrypt', decryptError);
  }
  let verified: Awaited<ReturnType<typeof compactVerify>> | undefined;
  let verifyError: unknown;
  let refusal: unknown;
  for (const certificate of listOf(keys.senderCertificate)) {
    try {
      await keys.checkSender?.(certificate);
    } catch (error) {
      refusal ??= error;
      continue;
    }
    try {
      verified = await compactVerify(jws, leafKey(certificate), { algorithms: ['ES256', 'ES384', 'PS256'] });
      break;
    } catch (error) {
      verifyError = error;
    }
  }
  if (verified === undefined) {
    if (verifyError === undefined && refusal !== undefined) throw refusal;
    throw invalid(
      `message ${binding.id}: the signature does not verify with the certificate of ${binding.from}`,
      'verify',
      verifyError,
    );
  }
  const header = verified.protectedHeader as Record<string, unknown>;
  const expected: Record<string, string> = {
    typ: JWS_TYPE,
    'dmr-id': binding.id,
    'dmr-from': binding.from,
    'dmr-to': binding.to,
    'dmr-type': binding.type,
  };
  for (const [name, value] of Object.entries(expected)) {
    if (header[name] !== value) {
      throw invalid(
        `message ${binding.id}: the signed ${name} does not match the message (replayed or redirected?)`,
        'binding',
      );
    }
  }
  return Buffer.from(verified.payload);
}
