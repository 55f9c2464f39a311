/**
 * The hop chain of a relayed message (`dmr-hops` version 2; docs/mesh.md
 * "The hop protocol"): every node that handles a mesh message appends an
 * entry signed with its node key, naming the node it forwards to, so that
 * every later hop and the destination can check who handled the message, in
 * which order, and that nobody dropped, forged, reordered or moved an entry.
 *
 * ## Entries
 *
 * `dmr-hops` is the JSON array of entries `{"node", "at", "to", "sig"}`:
 * `node` the id of the node that appended it, `at` when (ISO 8601 UTC with
 * milliseconds, as `Date.toISOString` writes it), `to` the node it forwarded
 * to (`null` in a destination's final entry), `sig` a compact JWS with a
 * detached payload, header `{alg, typ: "dmr-hop+jws", kid, x5c}` (the same
 * key, algorithms and certificate chain as `dmr-sig`; entry 0 leaves `x5c`
 * out, because it is the origin's and `dmr-sig` carries that chain), over
 * the UTF-8 JSON array
 *
 *     ["dmr-hop/2", <index>, <prev>, <node>, <at>, <to>]
 *
 * with `<index>` a JSON number (0 for the origin's entry) and `<prev>`
 * `"sha256:" + hex(sha256(dmr-sig))` for entry 0, else
 * `"sha256:" + hex(sha256(entries[index - 1].sig))`. So entry 0 is bound to
 * the message through `dmr-sig` (which covers the metadata and a digest of
 * the body), and every entry to all entries before it.
 *
 * Pure: no broker, no router, no clock (`at` and `now` are passed in).
 */
import { createHash, type X509Certificate } from 'node:crypto';
import { isValidId, parseSpiffeId } from '@dmr/core';
import {
  HOPS_HEADER,
  ORIGIN_HEADER,
  SENDER_HEADER,
  SIGNATURE_HEADER,
  DELIVERY_REPORT_TYPE,
  reject,
  type CheckResult,
  type Rejection,
  type SignableMessage,
} from './contract.js';
import {
  HopVerifier,
  NodeSignerCache,
  NodeSigningKey,
  decodeJwsHeader,
  originSignature,
  splitDetachedJws,
  verifyDetached,
  type HopSignerOptions,
  type HopVerifierOptions,
} from './hop-signature.js';

export const HOP_CHAIN_VERSION = 'dmr-hop/2';
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

/** One entry of `dmr-hops` (version 2). */
export interface HopEntry {
  node: string;
  /** ISO 8601 UTC with milliseconds. */
  at: string;
  /** The node it was forwarded to; null in the destination's final entry. */
  to: string | null;
  /** Compact JWS, detached payload. */
  sig: string;
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

/** The `prev` of the entry after `chain`. */
function nextPrev(chain: HopChain): string {
  const last = chain.hops[chain.hops.length - 1];
  return last === undefined ? linkDigest(chain.signature) : linkDigest(last.sig);
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ENTRY_KEYS = ['node', 'at', 'to', 'sig'];

/** Why one entry is malformed, or undefined when it is well-formed. Names no value from the wire. */
function entryProblem(item: unknown): string | undefined {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return 'is not an object';
  const keys = Object.keys(item);
  if (keys.length !== ENTRY_KEYS.length || !ENTRY_KEYS.every((key) => Object.hasOwn(item, key))) {
    return 'must have exactly node, at, to and sig';
  }
  const { node, at, to, sig } = item as Record<string, unknown>;
  if (typeof node !== 'string' || !isValidId(node)) return 'node is not a valid id';
  if (typeof at !== 'string' || !ISO_MS.test(at) || new Date(at).toISOString() !== at) {
    return 'at is not an ISO 8601 UTC time with milliseconds';
  }
  if (to !== null && (typeof to !== 'string' || !isValidId(to))) return 'to is not a valid id or null';
  if (splitDetachedJws(sig) === undefined) return 'sig is not a compact JWS with a detached payload';
  return undefined;
}

/**
 * Parses `dmr-hops` version 2 (at most `maxEntries` entries, checked before
 * any entry is looked at): the entries, or a refusal (`HOPS_INVALID` with
 * check `format`, `HOP_LIMIT_EXCEEDED` with check `limit`).
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
  for (const [index, item] of (parsed as unknown[]).entries()) {
    const problem = entryProblem(item);
    if (problem !== undefined) return hopsInvalid('format', `entry ${index}: ${problem}`);
    const { node, at, to, sig } = item as HopEntry;
    entries.push({ node, at, to, sig });
  }
  return { ok: true, message: entries };
}

function hopsInvalid(check: string, message: string): Rejection {
  return reject('HOPS_INVALID', `${message} (${check})`);
}

function entryInvalid(index: number, check: string, message: string): Rejection {
  return reject('HOP_SIGNATURE_INVALID', `entry ${index}: ${message} (${check})`);
}

function assertTo(to: string | null, nodeId: string): void {
  if (to !== null && (!isValidId(to) || to === nodeId)) {
    throw new RangeError('a hop entry must name another node (a valid id) or null');
  }
}

/**
 * A node's side of the chain: signs `dmr-sig` and entry 0 at the origin,
 * and appends this node's entry at every later hop.
 */
export class HopChainSigner {
  readonly nodeId: string;
  readonly #key: NodeSigningKey;

  constructor(options: HopSignerOptions) {
    if (!isValidId(options.nodeId)) throw new RangeError('nodeId is not a valid id');
    this.nodeId = options.nodeId;
    this.#key = new NodeSigningKey(options.certificateChainPem, options.privateKeyPem);
  }

  /**
   * At the origin: the DMR headers of `message` sent by `sender` and
   * forwarded to node `to` — `dmr-sender`, `dmr-origin` (this node),
   * `dmr-sig`, and `dmr-hops` holding entry 0. A node sends in its own name
   * (`sender` = this node) only delivery reports, and a report only in its
   * own name; anything else throws, like a message the signature cannot
   * cover (a missing or malformed signed field).
   */
  originate(message: SignableMessage, sender: string, to: string, at: Date): Record<string, string> {
    assertTo(to, this.nodeId);
    const isReport = message.properties.type === DELIVERY_REPORT_TYPE;
    if (isReport !== (sender === this.nodeId)) {
      throw new RangeError('a node sends delivery reports, and only those, in its own name');
    }
    const signature = originSignature(this.#key, message, sender, this.nodeId);
    return {
      [SENDER_HEADER]: sender,
      [ORIGIN_HEADER]: this.nodeId,
      [SIGNATURE_HEADER]: signature,
      [HOPS_HEADER]: this.append({ signature, hops: [] }, to, at),
    };
  }

  /**
   * The `dmr-hops` value with this node's entry appended after `chain`
   * (a VerifiedHopChain, or the chain a router re-routes after dropping its
   * own last entry), forwarded to `to`, or `null` at the destination.
   */
  append(chain: HopChain, to: string | null, at: Date): string {
    assertTo(to, this.nodeId);
    const index = chain.hops.length;
    const when = at.toISOString();
    // Entry 0 is the origin's, whose chain dmr-sig carries: not again (docs/mesh.md "Entries").
    const sig = this.#key.signDetached(
      HOP_ENTRY_JWS_TYPE,
      hopEntryPayload(index, nextPrev(chain), this.nodeId, when, to),
      index > 0,
    );
    const entry: HopEntry = { node: this.nodeId, at: when, to, sig };
    return JSON.stringify([...chain.hops, entry]);
  }
}

export interface PeerCheckOptions {
  trustDomain: string;
  /** This node's configured link peers. */
  peers: ReadonlySet<string>;
  denied: ReadonlySet<string>;
}

/**
 * Step 1 at a hop: the previous hop P from `user_id`, which the broker
 * checked against the publishing connection's certificate (the peer's shovel
 * logs in with its node certificate). `PEER_UNKNOWN` unless it is
 * `spiffe://<td>/node/<P>` with P a configured, not denylisted link peer.
 */
export function previousHop(userId: unknown, options: PeerCheckOptions): CheckResult<string> {
  const parsed = typeof userId === 'string' ? parseSpiffeId(userId) : undefined;
  if (parsed === undefined || parsed.trustDomain !== options.trustDomain || parsed.kind !== 'node') {
    return reject(
      'PEER_UNKNOWN',
      `user_id is not the SPIFFE id of a node of trust domain ${options.trustDomain} (user-id)`,
    );
  }
  if (options.denied.has(parsed.id))
    return reject('PEER_UNKNOWN', `previous hop ${parsed.id} is on the denylist (denied)`);
  if (!options.peers.has(parsed.id))
    return reject('PEER_UNKNOWN', `node ${parsed.id} is not a link peer of this node (peer)`);
  return { ok: true, message: parsed.id };
}

export interface HopChainVerifierOptions extends HopVerifierOptions {
  /** This node's id: the last entry must be addressed to it, and no entry may be by it. */
  nodeId: string;
  /** This node's configured link peers: who may be the previous hop. */
  peers: ReadonlySet<string>;
  /** `limits.maxHops` (default 8): links a message may cross to reach its destination. */
  maxHops?: number;
}

/** What a hop may trust about a mesh message once it verified. */
export interface VerifiedHopChain {
  /** The authenticated sender (`dmr-sender`): a client of the origin, or the origin itself for a report. */
  sender: string;
  /** `dmr-origin`. */
  origin: string;
  /** The verified entries, origin first. */
  hops: HopEntry[];
  /** The node this message came from (broker-checked `user_id`, = the last entry's node). */
  previous: string;
  /** Entries on arrival: the links the message crossed to get here (policy input `hop.count`). */
  count: number;
  /** `dmr-sig`: with `hops`, what this node's own entry links to (HopChainSigner.append). */
  signature: string;
}

/**
 * A hop's check of a mesh message (steps 1–3 of docs/mesh.md "What each hop
 * checks"): the previous hop, the origin signature, the hop chain. Replay,
 * policy and routing are the router's. The trust bundle, denylist, peers
 * and CRLs are fixed per verifier: build a new one when any of them changes.
 */
export class HopChainVerifier {
  readonly #options: HopChainVerifierOptions;
  readonly #maxHops: number;
  readonly #signers: NodeSignerCache;
  readonly #origin: HopVerifier;

  constructor(options: HopChainVerifierOptions) {
    const maxHops = options.maxHops ?? DEFAULT_MAX_HOPS;
    if (!Number.isSafeInteger(maxHops) || maxHops < 1) throw new RangeError('maxHops must be a positive integer');
    this.#options = options;
    this.#maxHops = maxHops;
    // One cache for both: the origin signs dmr-sig and entry 0 with the same certificate.
    this.#signers = new NodeSignerCache(options);
    this.#origin = new HopVerifier(options, this.#signers);
  }

  get maxHops(): number {
    return this.#maxHops;
  }

  /**
   * Verifies a mesh message arriving at this node at `now`. The first
   * failed check decides; its name ends the refusal's detail in parentheses.
   */
  async verify(message: SignableMessage, now: Date): Promise<CheckResult<VerifiedHopChain>> {
    const { nodeId, denied } = this.#options;
    const previous = previousHop(message.properties.userId, this.#options);
    if (!previous.ok) return previous;
    const from = previous.message;

    const origin = await this.#origin.verify(message, now);
    if (!origin.ok) return origin;
    const { sender } = origin.message;
    const headers = message.properties.headers ?? {};
    const signature = headers[SIGNATURE_HEADER] as string;

    const parsed = parseHopChain(headers[HOPS_HEADER], this.#maxHops);
    if (!parsed.ok) return parsed;
    const hops = parsed.message;
    const last = hops[hops.length - 1] as HopEntry;

    // Structure first: it costs nothing, and a legitimate loop or misroute gets its own code, not a signature's.
    if ((hops[0] as HopEntry).node !== origin.message.origin) {
      return hopsInvalid('origin', `entry 0 is not by the origin node ${origin.message.origin}`);
    }
    for (let index = 0; index + 1 < hops.length; index += 1) {
      if ((hops[index] as HopEntry).to !== (hops[index + 1] as HopEntry).node) {
        return hopsInvalid('linkage', `entry ${index} is not addressed to the node of entry ${index + 1}`);
      }
    }
    if (last.node !== from) return hopsInvalid('previous', `the last entry is not by the previous hop ${from}`);
    if (last.to !== nodeId) return hopsInvalid('to', `the last entry is not addressed to this node ${nodeId}`);
    const seen = new Set<string>();
    for (const entry of hops) {
      if (entry.node === nodeId) return reject('HOP_LOOP', `this node ${nodeId} already handled the message (loop)`);
      if (seen.has(entry.node)) return reject('HOP_LOOP', `node ${entry.node} handled the message twice (loop)`);
      seen.add(entry.node);
    }
    for (const entry of hops.slice(1)) {
      if (denied.has(entry.node))
        return reject('HOP_NODE_DENIED', `node ${entry.node} on the path is on the denylist (denied)`);
    }

    let prev = linkDigest(signature);
    const originSigner = { fingerprint: origin.message.signerFingerprint, leaf: origin.message.certificate };
    for (const [index, entry] of hops.entries()) {
      const failure = await this.#verifyEntry(index, entry, prev, now, originSigner);
      if (failure !== undefined) return failure;
      prev = linkDigest(entry.sig);
    }
    return {
      ok: true,
      message: { sender, origin: origin.message.origin, hops, previous: from, count: hops.length, signature },
    };
  }

  /**
   * `HOP_LIMIT_EXCEEDED` when forwarding `verified` to another node would
   * take it over `maxHops` links, else undefined: the router asks before it
   * forwards (a destination delivers what arrived within the limit).
   */
  checkForward(verified: Pick<VerifiedHopChain, 'count'>): Rejection | undefined {
    if (verified.count + 1 <= this.#maxHops) return undefined;
    return reject(
      'HOP_LIMIT_EXCEEDED',
      `forwarding would make ${verified.count + 1} links, more than the limit of ${this.#maxHops} (limit)`,
    );
  }

  /** Entry `index`, whose `prev` must be `prev`; entry 0 is by the origin, whose certificate dmr-sig proved. */
  async #verifyEntry(
    index: number,
    entry: HopEntry,
    prev: string,
    now: Date,
    origin: { fingerprint: string; leaf: X509Certificate },
  ): Promise<Rejection | undefined> {
    const jws = splitDetachedJws(entry.sig);
    if (jws === undefined) return entryInvalid(index, 'format', 'sig is not a compact JWS with a detached payload');
    const decoded = decodeJwsHeader(jws.encodedHeader, HOP_ENTRY_JWS_TYPE);
    if (!decoded.ok) return entryInvalid(index, decoded.check, decoded.message);
    let signer = origin;
    if (index === 0) {
      if (decoded.header.x5c !== undefined) {
        return entryInvalid(index, 'header', "the origin's entry carries no x5c (dmr-sig has its chain)");
      }
    } else {
      const trusted = await this.#signers.signer(entry.node, decoded.header.x5c, now);
      if (!trusted.ok) return entryInvalid(index, trusted.check, trusted.message);
      signer = trusted.signer;
    }
    if (decoded.header.kid !== signer.fingerprint) {
      return entryInvalid(
        index,
        'kid',
        index === 0
          ? 'kid is not the fingerprint of the origin certificate'
          : 'kid is not the fingerprint of the x5c signer',
      );
    }
    const payload = hopEntryPayload(index, prev, entry.node, entry.at, entry.to);
    if (!verifyDetached(jws, decoded.header.alg, signer.leaf, payload)) {
      return entryInvalid(
        index,
        'signature',
        `the signature of ${entry.node} does not verify for this entry, the entries before it and the message`,
      );
    }
    return undefined;
  }
}
