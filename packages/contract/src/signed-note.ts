/**
 * C2SP signed notes (https://c2sp.org/signed-note): a UTF-8 text ending in a
 * newline, a blank line, then one line per signature:
 *
 *   — <key name> base64(uint32 key ID || signature)
 *
 * DMR's keys are ECDSA P-256 (node certificates, CentOps' signer), so the
 * signature type is 0x02, "ECDSA as implemented by
 * github.com/transparency-dev/witness": an ASN.1 DER ECDSA signature over
 * SHA-256 of the note text, and the key ID is the first four bytes of
 * SHA-256 of the public key's DER SubjectPublicKeyInfo. Ed25519 (0x01) would
 * need a second key per node outside the PKI; 0x02 lets the certificate the
 * node already has be the audit key, and a verifier trust it through the
 * same trust bundle as everything else.
 *
 * Written by hand: the format is a few lines of text handling, and the npm
 * packages that parse it (sigstore's) do not sign, and pin Ed25519.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { DmrError } from '@dmr/core';

/** Verifiers must accept up to 16 (the spec); DMR's notes carry two. More is refused. */
export const MAX_NOTE_SIGNATURES = 16;
export const MAX_NOTE_BYTES = 16 * 1024;
const EM_DASH = '\u2014';

export interface NoteSignature {
  name: string;
  keyId: number;
  /** The signature bytes after the key ID. */
  signature: Buffer;
}

export interface ParsedNote {
  text: string;
  signatures: NoteSignature[];
}

function invalid(message: string): DmrError {
  return new DmrError('AUDIT_CHECKPOINT_INVALID', message, {
    hint: 'a signed note is text ending in a newline, a blank line, then lines "— <name> <base64(keyid||signature)>"',
  });
}

/** A key name: non-empty, no Unicode spaces, no "+". */
export function isKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name);
}

/** Splits a note into its text and its signature lines, refusing anything the spec forbids. */
export function parseNote(note: string): ParsedNote {
  if (Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES)
    throw invalid(`the note is larger than ${MAX_NOTE_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) throw invalid('the note holds a control character');
  if (!note.endsWith('\n')) throw invalid('the note does not end with a newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw invalid('the note has no blank line before its signatures');
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw invalid(`the note has more than ${MAX_NOTE_SIGNATURES} signatures`);
  const signatures = lines.map((line) => {
    const match = /^\u2014 (\S+) ([A-Za-z0-9+/]+={0,2})$/.exec(line);
    if (match === null) throw invalid(`"${line.slice(0, 80)}" is not a signature line`);
    const [, name, encoded] = match as unknown as [string, string, string];
    const bytes = Buffer.from(encoded, 'base64');
    if (!isKeyName(name) || bytes.length < 5 || bytes.toString('base64') !== encoded) {
      throw invalid(`"${line.slice(0, 80)}" is not a signature line`);
    }
    return { name, keyId: bytes.readUInt32BE(0), signature: bytes.subarray(4) };
  });
  return { text, signatures };
}

export function formatNote(text: string, signatures: readonly NoteSignature[]): string {
  const lines = signatures.map((entry) => {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(entry.keyId >>> 0);
    return `${EM_DASH} ${entry.name} ${Buffer.concat([id, entry.signature]).toString('base64')}\n`;
  });
  return `${text}\n${lines.join('')}`;
}

/** The type-0x02 key ID: SHA-256 of the DER SubjectPublicKeyInfo, first four bytes, big-endian. */
export function ecdsaKeyId(publicKey: KeyObject): number {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest()
    .readUInt32BE(0);
}

/** Signs notes with an ECDSA key under one key name. */
export class NoteSigner {
  readonly name: string;
  readonly keyId: number;
  readonly #key: KeyObject;

  constructor(name: string, privateKey: KeyObject) {
    if (!isKeyName(name)) throw new DmrError('INVALID_ARGUMENT', `"${name}" is not a signed-note key name`);
    if (privateKey.asymmetricKeyType !== 'ec') {
      throw new DmrError('KEY_INVALID', `the key for ${name} is ${String(privateKey.asymmetricKeyType)}, not ECDSA`, {
        hint: 'audit checkpoints are signed with the ECDSA P-256 key of the node or CentOps signer certificate',
      });
    }
    this.name = name;
    this.#key = privateKey;
    this.keyId = ecdsaKeyId(createPublicKey(privateKey));
  }

  signature(text: string): NoteSignature {
    return { name: this.name, keyId: this.keyId, signature: sign('sha256', Buffer.from(text, 'utf8'), this.#key) };
  }

  /** A new note of `text` signed by this key. */
  sign(text: string): string {
    return formatNote(text, [this.signature(text)]);
  }

  /** `note` with this key's signature added (a witness countersigning). */
  cosign(note: string): string {
    const parsed = parseNote(note);
    return formatNote(parsed.text, [...parsed.signatures, this.signature(parsed.text)]);
  }
}

/** A key a note may be verified with. */
export interface NoteVerifier {
  name: string;
  keyId: number;
  publicKey: KeyObject;
}

export function noteVerifier(name: string, publicKey: KeyObject): NoteVerifier {
  return { name, keyId: ecdsaKeyId(publicKey), publicKey };
}

/**
 * The spec's rule: signatures by unknown keys are ignored; a known key's
 * signature must verify (else the whole note is refused); at least one known
 * key must have signed. Returns the text and the verifiers that signed it.
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): { text: string; signedBy: NoteVerifier[] } {
  const parsed = parseNote(note);
  const signedBy: NoteVerifier[] = [];
  for (const entry of parsed.signatures) {
    const known = verifiers.find((key) => key.name === entry.name && key.keyId === entry.keyId);
    if (known === undefined) continue;
    if (!verify('sha256', Buffer.from(parsed.text, 'utf8'), known.publicKey, entry.signature)) {
      throw new DmrError('AUDIT_CHECKPOINT_INVALID', `the signature of ${entry.name} on the note does not verify`, {
        hint: 'the note was changed after signing, or signed by another key under that name',
      });
    }
    if (!signedBy.includes(known)) signedBy.push(known);
  }
  if (signedBy.length === 0) {
    throw new DmrError('AUDIT_CHECKPOINT_INVALID', 'no known key signed the note', {
      details: { signers: parsed.signatures.map((entry) => entry.name) },
      hint: 'check the trust bundle: the note must be signed by a key it vouches for',
    });
  }
  return { text: parsed.text, signedBy };
}
