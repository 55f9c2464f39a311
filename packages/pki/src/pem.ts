import { DmrError, type ErrorCode } from '@dmr/core';
import { PemConverter } from './x509.js';

export interface PemBlock {
  type: string;
  der: Buffer;
}

/** Every `-----BEGIN X-----` block in `text`, in order; text outside the blocks is ignored. */
export function pemBlocks(text: string): PemBlock[] {
  if (!text.includes('-----BEGIN ')) return [];
  // PemConverter throws on a block whose base64 body is broken; the callers
  // turn that into their own catalogue code.
  return PemConverter.decodeWithHeaders(text).map((block) => ({
    type: block.type,
    der: Buffer.from(block.rawData),
  }));
}

/**
 * The DER bodies of the blocks with one of `types`. Throws `code` when the
 * text holds none (or holds only blocks of other types), so a private key
 * passed where a certificate belongs is refused with a message naming both.
 */
export function pemBodies(
  text: string,
  types: readonly string[],
  code: ErrorCode,
  what: string,
  hint?: string,
): Buffer[] {
  let blocks: PemBlock[];
  try {
    blocks = pemBlocks(text);
  } catch (error) {
    throw new DmrError(code, `${what} is not valid PEM: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
      ...(hint === undefined ? {} : { hint }),
    });
  }
  const wanted = blocks.filter((block) => types.includes(block.type));
  if (wanted.length === 0) {
    const found = blocks.map((block) => block.type);
    throw new DmrError(
      code,
      found.length === 0
        ? `${what} holds no PEM block (expected ${types[0]})`
        : `${what} holds ${found.join(', ')} instead of ${types[0]}`,
      { details: { found }, ...(hint === undefined ? {} : { hint }) },
    );
  }
  return wanted.map((block) => block.der);
}

export function toPem(der: ArrayBuffer | Uint8Array, type: string): string {
  // PemConverter wraps at 64 columns like OpenSSL; we add the final newline
  // it leaves off so files concatenate into valid bundles.
  return `${PemConverter.encode(der instanceof Uint8Array ? Uint8Array.from(der).buffer : der, type)}\n`;
}

/** Hex without separators, lowercase: how serials and fingerprints are shown everywhere in DMR. */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  return Buffer.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)).toString('hex');
}
