/**
 * Hops: how a message records the nodes it passed (`dmr-hops`) and what a
 * node signs (`dmr-sig` and the hop-chain entries). Only the wire parts live
 * here: names, the parsers, and the exact bytes each signature covers. The
 * signing keys and the verification against certificates are a node's
 * (packages/node/src/message/hop-signature.ts, hop-chain.ts).
 * docs/contract.md "Hops" describes both versions.
 *
 * ## The origin signature (`dmr-sig`)
 *
 * The origin node, after
 * its checks, records the authenticated sender (`dmr-sender`) and itself
 * (`dmr-origin`) and signs the canonical metadata plus a SHA-256 digest of
 * the body with its node key (`dmr-sig`). Every later hop verifies that
 * signature before it trusts any metadata, then appends itself to `dmr-hops`.
 *
 * ### Canonical metadata (version `dmr-hop-sig/2`)
 *
 * The signed bytes are the UTF-8 encoding of `JSON.stringify` of this array
 * of twelve strings (or null), in this order:
 *
 * | #  | value                                                                            |
 * |----|----------------------------------------------------------------------------------|
 * | 0  | the literal `"dmr-hop-sig/2"` (domain separation and format version)             |
 * | 1  | property `message_id`, exactly as carried                                        |
 * | 2  | header `dmr-sender` (= the client id in the `user_id` the origin broker checked) |
 * | 3  | header `dmr-origin` (the origin node id)                                         |
 * | 4  | header `dmr-recipient`                                                           |
 * | 5  | property `type`                                                                  |
 * | 6  | property `timestamp`: POSIX seconds as a decimal integer string                  |
 * | 7  | property `expiration`: decimal ms string, or `null` when absent                  |
 * | 8  | header `dmr-version` as a decimal string (`"1"`)                                 |
 * | 9  | `"sha256:"` + lowercase hex SHA-256 of the body bytes                            |
 * | 10 | `at` of `dmr-hops` entry 0 (the origin's entry)                                  |
 * | 11 | `to` of `dmr-hops` entry 0 (the first link's far node)                           |
 *
 * A JSON array of strings has one serialisation (JSON.stringify escapes
 * deterministically; no keys to order, no whitespace), so both ends derive
 * identical bytes from the message itself. Not signed, because they change
 * per hop: `user_id` (a forwarding node publishes as itself), the entries of
 * `dmr-hops` after the origin's (each signed by its own node), `traceparent`,
 * `tracestate`, delivery properties.
 *
 * ### `dmr-sig`
 *
 * A compact JWS with a detached payload (RFC 7515 appendix F):
 * `base64url(header)..base64url(signature)`; the payload is the canonical
 * metadata above, recomputed by the verifier rather than carried, so the
 * verifier can never check one thing and use another. Header:
 * `{alg, typ: "dmr-hop-sig+jws", kid, x5c}` with `alg` ES256 (P-256 key),
 * ES384 (P-384) or PS256 (RSA), `kid` the sha256 fingerprint of the node
 * certificate and `x5c` its chain (leaf first, no root).
 *
 * ## The hop chain (`dmr-hops` version 3)
 *
 * The hop chain of a relayed message (docs/mesh.md "The hop protocol"):
 * every node that handles a mesh message adds an entry naming the node it
 * forwards to, so that every later hop and the destination can check who
 * handled the message, in which order, and that nobody dropped, forged,
 * reordered or moved an entry.
 *
 * ### Entries
 *
 * `dmr-hops` is a JSON array of entries. Entry 0 is the origin's,
 * `{"node", "at", "to"}`, and has no signature of its own: its `at` and `to`
 * are in `dmr-sig` (fields 10 and 11 above), so the origin signs once and
 * every hop verifies one signature less (docs/decisions/0040-hop-protocol-v3.md).
 * Every later entry is `{"node", "at", "to", "sig"}`: `node` the id of the
 * node that appended it, `at` when (ISO 8601 UTC with milliseconds, as
 * `Date.toISOString` writes it), `to` the node it forwarded to (`null` in a
 * destination's final entry), `sig` a compact JWS with a detached payload,
 * header `{alg, typ: "dmr-hop+jws", kid, x5c}` (the same key, algorithms and
 * certificate chain as `dmr-sig`), over the UTF-8 JSON array
 *
 *     ["dmr-hop/3", <index>, <prev>, <node>, <at>, <to>]
 *
 * with `<index>` a JSON number (≥ 1) and `<prev>`
 * `"sha256:" + hex(sha256(dmr-sig))` for entry 1, else
 * `"sha256:" + hex(sha256(entries[index - 1].sig))`. So entry 0 is bound to
 * the message by `dmr-sig` (which covers the metadata and a digest of the
 * body), and every later entry to `dmr-sig` and all entries before it.
 *
 * Pure: no broker, no router, no clock (`at` and `now` are passed in).
 */
import { createHash } from 'node:crypto';
import { isValidId } from '@dmr/core';
import {
  HOPS_HEADER,
  RECIPIENT_HEADER,
  VERSION_HEADER,
  reject,
  type CheckResult,
  type Rejection,
  type SignableMessage,
} from './message.js';

export const HOP_SIGNATURE_VERSION = 'dmr-hop-sig/2';
export const HOP_SIGNATURE_JWS_TYPE = 'dmr-hop-sig+jws';
/** The JWS algorithms a node signs `dmr-sig` and hop entries with. */
export const HOP_SIGNATURE_ALGORITHMS = ['ES256', 'ES384', 'PS256'] as const;
export type HopSignatureAlgorithm = (typeof HOP_SIGNATURE_ALGORITHMS)[number];

/** One entry of `dmr-hops`. */
export interface Hop {
  node: string;
  /** ISO 8601 UTC time the node handled the message. */
  at: string;
}

function digestOf(body: Uint8Array): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

function asDecimal(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  if (typeof value === 'string' && /^(0|[1-9][0-9]*)$/.test(value)) return value;
  return undefined;
}

/** What `dmr-sig` covers of the origin's `dmr-hops` entry: when it was made and the node it was sent to. */
export interface OriginEntry {
  /** ISO 8601 UTC with milliseconds. */
  at: string;
  to: string;
}

/**
 * The canonical metadata of `message` as signed by `origin` for `sender`,
 * with the origin's hop entry `entry`, or the name of the first field that
 * is missing or malformed.
 */
export function canonicalMetadata(
  message: SignableMessage,
  sender: string,
  origin: string,
  entry: OriginEntry,
): { ok: true; bytes: Buffer } | { ok: false; field: string } {
  const { properties } = message;
  const headers = properties.headers ?? {};
  const messageId = properties.messageId;
  if (typeof messageId !== 'string' || messageId === '') return { ok: false, field: 'message_id' };
  const recipient = headers[RECIPIENT_HEADER];
  if (typeof recipient !== 'string' || recipient === '') return { ok: false, field: RECIPIENT_HEADER };
  const type = properties.type;
  if (typeof type !== 'string' || type === '') return { ok: false, field: 'type' };
  const timestamp = asDecimal(properties.timestamp);
  if (timestamp === undefined) return { ok: false, field: 'timestamp' };
  let expiration: string | null = null;
  if (properties.expiration !== undefined && properties.expiration !== null) {
    const parsed = asDecimal(properties.expiration);
    if (parsed === undefined) return { ok: false, field: 'expiration' };
    expiration = parsed;
  }
  const version = asDecimal(headers[VERSION_HEADER]);
  if (version === undefined) return { ok: false, field: VERSION_HEADER };
  const fields = [
    HOP_SIGNATURE_VERSION,
    messageId,
    sender,
    origin,
    recipient,
    type,
    timestamp,
    expiration,
    version,
    digestOf(message.content),
    entry.at,
    entry.to,
  ];
  return { ok: true, bytes: Buffer.from(JSON.stringify(fields), 'utf8') };
}

/** The two parts of a compact JWS with a detached payload, each base64url. */
export interface DetachedJws {
  encodedHeader: string;
  encodedSignature: string;
}

/** `value` split as `header..signature`, or undefined when it is not a compact JWS with a detached payload. */
export function splitDetachedJws(value: unknown): DetachedJws | undefined {
  if (typeof value !== 'string') return undefined;
  const parts = /^([A-Za-z0-9_-]+)\.\.([A-Za-z0-9_-]+)$/.exec(value);
  if (parts === null) return undefined;
  return { encodedHeader: parts[1] as string, encodedSignature: parts[2] as string };
}

/** Parses `dmr-hops`: a JSON list of {node, at} with valid ids and ISO times. */
export function parseHops(value: unknown): Hop[] | undefined {
  if (typeof value !== 'string') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const hops: Hop[] = [];
  for (const item of parsed as unknown[]) {
    if (typeof item !== 'object' || item === null) return undefined;
    const { node, at } = item as Record<string, unknown>;
    if (typeof node !== 'string' || !isValidId(node) || typeof at !== 'string' || Number.isNaN(Date.parse(at))) {
      return undefined;
    }
    hops.push({ node, at });
  }
  return hops;
}

/** The `dmr-hops` value with `node` appended at `at`: what a later hop forwards. */
export function appendHop(hops: readonly Hop[], node: string, at: Date): string {
  return JSON.stringify([...hops, { node, at: at.toISOString() }]);
}

export const HOP_CHAIN_VERSION = 'dmr-hop/3';
export const HOP_ENTRY_JWS_TYPE = 'dmr-hop+jws';

/** The default of `limits.maxHops`: node-to-node links a message may cross. */
export const DEFAULT_MAX_HOPS = 8;

/**
 * Header bytes one entry may add to `dmr-hops` (and the most `dmr-sig`
 * takes). Measured (docs/mesh.md "Sizes", `npm run bench -- hop-chain`): an entry
 * after the origin's takes 1 943 bytes with a P-256 node certificate and a
 * 2-character id, 2 283 with a 63-character id, 2 902 with RSA-2048 and
 * 3 696 with RSA-4096 (63-character ids, this CA's P-256 intermediate);
 * the rest is room for a longer trust domain.
 */
export const HOP_ENTRY_ALLOWANCE_BYTES = 4096;

/**
 * The header cap of a relayed message: what a client may send
 * (`limits.maxHeaderBytes`) plus `dmr-sig` and `maxHops` entries, one
 * allowance each (the other DMR headers fit in the allowances' slack).
 */
export function relayHeaderCap(maxHeaderBytes: number, maxHops = DEFAULT_MAX_HOPS): number {
  return maxHeaderBytes + (maxHops + 1) * HOP_ENTRY_ALLOWANCE_BYTES;
}

/** One entry of `dmr-hops` (version 3). */
export interface HopEntry {
  node: string;
  /** ISO 8601 UTC with milliseconds. */
  at: string;
  /** The node it was forwarded to; null in the destination's final entry (never in entry 0). */
  to: string | null;
  /** Compact JWS, detached payload; absent in entry 0 only (`dmr-sig` covers it). */
  sig?: string;
}

/** What a new entry links to: the message's `dmr-sig` and the entries so far. */
export interface HopChain {
  signature: string;
  hops: readonly HopEntry[];
}

/** `"sha256:" + hex(sha256(value))`: how an entry names what it follows. */
export function linkDigest(value: string): string {
  return `sha256:${createHash('sha256').update(value, 'utf8').digest('hex')}`;
}

/** The signed bytes of entry `index`. */
export function hopEntryPayload(index: number, prev: string, node: string, at: string, to: string | null): Buffer {
  return Buffer.from(JSON.stringify([HOP_CHAIN_VERSION, index, prev, node, at, to]), 'utf8');
}

/** The `prev` of the entry after `chain` (which holds at least entry 0): `dmr-sig` for entry 1, else the last sig. */
export function nextPrev(chain: HopChain): string {
  const last = chain.hops[chain.hops.length - 1];
  return last?.sig === undefined ? linkDigest(chain.signature) : linkDigest(last.sig);
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ORIGIN_ENTRY_KEYS = ['node', 'at', 'to'];
const ENTRY_KEYS = ['node', 'at', 'to', 'sig'];

/**
 * Why entry `index` is malformed, or undefined when it is well-formed. Names no value from the wire.
 * One form per position, so nothing unsigned rides along: entry 0 exactly node, at, to (a string: the
 * origin forwards); every later entry exactly node, at, to, sig.
 */
function entryProblem(item: unknown, index: number): string | undefined {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return 'is not an object';
  const keys = Object.keys(item);
  const expected = index === 0 ? ORIGIN_ENTRY_KEYS : ENTRY_KEYS;
  if (keys.length !== expected.length || !expected.every((key) => Object.hasOwn(item, key))) {
    return index === 0 ? 'must have exactly node, at and to' : 'must have exactly node, at, to and sig';
  }
  const { node, at, to, sig } = item as Record<string, unknown>;
  if (typeof node !== 'string' || !isValidId(node)) return 'node is not a valid id';
  if (typeof at !== 'string' || !ISO_MS.test(at) || new Date(at).toISOString() !== at) {
    return 'at is not an ISO 8601 UTC time with milliseconds';
  }
  if (to !== null && (typeof to !== 'string' || !isValidId(to))) return 'to is not a valid id or null';
  if (index === 0) return to === null ? "to is null in the origin's entry" : undefined;
  if (splitDetachedJws(sig) === undefined) return 'sig is not a compact JWS with a detached payload';
  return undefined;
}

/**
 * Parses `dmr-hops` version 3 (at most `maxEntries` entries, checked before
 * any entry is looked at): the entries, or a refusal (`HOPS_INVALID` with
 * check `format`, or `origin` when entry 0 carries a sig; `HOP_LIMIT_EXCEEDED`
 * with check `limit`).
 */
export function parseHopChain(value: unknown, maxEntries = DEFAULT_MAX_HOPS): CheckResult<HopEntry[]> {
  if (typeof value !== 'string') return hopsInvalid('format', `${HOPS_HEADER} is missing`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return hopsInvalid('format', `${HOPS_HEADER} is not JSON`);
  }
  if (!Array.isArray(parsed) || parsed.length === 0) {
    return hopsInvalid('format', `${HOPS_HEADER} is not a non-empty JSON list`);
  }
  if (parsed.length > maxEntries) {
    return reject(
      'HOP_LIMIT_EXCEEDED',
      `the message crossed ${parsed.length} links, more than the limit of ${maxEntries} (limit)`,
    );
  }
  const entries: HopEntry[] = [];
  const first: unknown = parsed[0];
  if (typeof first === 'object' && first !== null && Object.hasOwn(first, 'sig')) {
    // What a hop that dropped the origin's entry forwards (or a version 2 chain): named for what it means.
    return hopsInvalid('origin', "entry 0 carries a sig: it is not the origin's entry, which dmr-sig covers");
  }
  for (const [index, item] of (parsed as unknown[]).entries()) {
    const problem = entryProblem(item, index);
    if (problem !== undefined) return hopsInvalid('format', `entry ${index}: ${problem}`);
    const { node, at, to, sig } = item as HopEntry;
    entries.push(sig === undefined ? { node, at, to } : { node, at, to, sig });
  }
  return { ok: true, message: entries };
}

export function hopsInvalid(check: string, message: string): Rejection {
  return reject('HOPS_INVALID', `${message} (${check})`);
}
