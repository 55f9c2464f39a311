/**
 * The hop chain of a relayed message (`dmr-hops` version 3; docs/mesh.md
 * "The hop protocol"): every node that handles a mesh message appends an
 * entry naming the node it forwards to, signed with its node key (the
 * origin's entry is covered by its `dmr-sig` instead), so that
 * every later hop and the destination can check who handled the message, in
 * which order, and that nobody dropped, forged, reordered or moved an entry.
 *
 * The entry formats (`{node, at, to}` at 0, `{node, at, to, sig}` after), the bytes each entry signs and
 * how entries link are wire contract: @dmr/contract hops.ts and
 * docs/contract.md "Hops".
 *
 * Pure: no broker, no router, no clock (`at` and `now` are passed in).
 * Signing and verifying with node keys is here.
 */
import { isValidId, parseSpiffeId } from '@dmr/core';
import {
  DEFAULT_MAX_HOPS,
  HOP_ENTRY_JWS_TYPE,
  hopEntryPayload,
  hopsInvalid,
  linkDigest,
  nextPrev,
  parseHopChain,
  splitDetachedJws,
  type HopChain,
  type HopEntry,
  HOPS_HEADER,
  ORIGIN_HEADER,
  SENDER_HEADER,
  SIGNATURE_HEADER,
  DELIVERY_REPORT_TYPE,
  reject,
  type CheckResult,
  type Rejection,
  type SignableMessage,
} from '@dmr/contract';
import {
  HopVerifier,
  NodeSignerCache,
  NodeSigningKey,
  decodeJwsHeader,
  originSignature,
  verifyDetached,
  type HopSignerOptions,
  type HopVerifierOptions,
} from './hop-signature.js';

// The wire parts (entry format, signed bytes, parser) are the contract's; re-exported for the node's API.
export {
  DEFAULT_MAX_HOPS,
  HOP_CHAIN_VERSION,
  HOP_ENTRY_ALLOWANCE_BYTES,
  HOP_ENTRY_JWS_TYPE,
  hopEntryPayload,
  linkDigest,
  parseHopChain,
  relayHeaderCap,
  type HopChain,
  type HopEntry,
} from '@dmr/contract';

function entryInvalid(index: number, check: string, message: string): Rejection {
  return reject('HOP_SIGNATURE_INVALID', `entry ${index}: ${message} (${check})`);
}

function assertTo(to: string | null, nodeId: string): void {
  if (to !== null && (!isValidId(to) || to === nodeId)) {
    throw new RangeError('a hop entry must name another node (a valid id) or null');
  }
}

/**
 * A node's side of the chain: signs `dmr-sig` over the message and entry 0
 * at the origin (one signature), and appends this node's signed entry at
 * every later hop.
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
   * `dmr-sig`, and `dmr-hops` holding entry 0, which `dmr-sig` covers. A node sends in its own name
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
    const entry: HopEntry = { node: this.nodeId, at: at.toISOString(), to };
    return {
      [SENDER_HEADER]: sender,
      [ORIGIN_HEADER]: this.nodeId,
      [SIGNATURE_HEADER]: originSignature(this.#key, message, sender, this.nodeId, { at: entry.at, to }),
      [HOPS_HEADER]: JSON.stringify([entry]),
    };
  }

  /**
   * The `dmr-hops` value with this node's entry appended after `chain`
   * (a VerifiedHopChain: it holds at least the origin's entry), forwarded
   * to `to`, or `null` at the destination.
   */
  append(chain: HopChain, to: string | null, at: Date): string {
    assertTo(to, this.nodeId);
    const index = chain.hops.length;
    // Entry 0 is dmr-sig's to cover: an origin (re-)routing its own message originates it again.
    if (index === 0) throw new RangeError("entry 0 is the origin's: originate the message instead");
    const when = at.toISOString();
    const sig = this.#key.signDetached(
      HOP_ENTRY_JWS_TYPE,
      hopEntryPayload(index, nextPrev(chain), this.nodeId, when, to),
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
    // One cache for both: dmr-sig and the entries are signed by node certificates alike.
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

    // The chain's form before the origin signature: dmr-sig covers entry 0, so it needs entry 0 parsed.
    const headers = message.properties.headers ?? {};
    const parsed = parseHopChain(headers[HOPS_HEADER], this.#maxHops);
    if (!parsed.ok) return parsed;
    const hops = parsed.message;
    const first = hops[0] as HopEntry;
    const last = hops[hops.length - 1] as HopEntry;

    // entry 0's `to` is a string: parseHopChain refuses a null there.
    const origin = await this.#origin.verify(message, { at: first.at, to: first.to as string }, now);
    if (!origin.ok) return origin;
    const { sender } = origin.message;
    const signature = headers[SIGNATURE_HEADER] as string;

    // Structure before the entries' signatures: it costs nothing, and a legitimate loop or misroute gets its own
    // code, not a signature's.
    if (first.node !== origin.message.origin) {
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

    // Entry 0 verified with dmr-sig; entry 1 links to dmr-sig, every later one to the sig before it.
    let prev = linkDigest(signature);
    for (let index = 1; index < hops.length; index += 1) {
      const entry = hops[index] as HopEntry;
      const failure = await this.#verifyEntry(index, entry, prev, now);
      if (failure !== undefined) return failure;
      prev = linkDigest(entry.sig as string);
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

  /** Entry `index` (≥ 1, so it has a sig: parseHopChain), whose `prev` must be `prev`. */
  async #verifyEntry(index: number, entry: HopEntry, prev: string, now: Date): Promise<Rejection | undefined> {
    const jws = splitDetachedJws(entry.sig);
    if (jws === undefined) return entryInvalid(index, 'format', 'sig is not a compact JWS with a detached payload');
    const decoded = decodeJwsHeader(jws.encodedHeader, HOP_ENTRY_JWS_TYPE);
    if (!decoded.ok) return entryInvalid(index, decoded.check, decoded.message);
    const trusted = await this.#signers.signer(entry.node, decoded.header.x5c, now);
    if (!trusted.ok) return entryInvalid(index, trusted.check, trusted.message);
    const signer = trusted.signer;
    if (decoded.header.kid !== signer.fingerprint) {
      return entryInvalid(index, 'kid', 'kid is not the fingerprint of the x5c signer');
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
