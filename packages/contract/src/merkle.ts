/**
 * RFC 6962 (Certificate Transparency) Merkle tree hashing, written here by
 * hand: no maintained npm library builds RFC 6962 logs with inclusion AND
 * consistency proofs (the Sigstore packages only verify Rekor inclusion
 * proofs internally; the rest are Ethereum/Bitcoin-style trees with other
 * hashing rules). The algorithms are RFC 6962 §2.1 (proof generation) and
 * RFC 9162 §2.1.3.2 / §2.1.4.2 (verification); the tests check them against
 * the RFC's definition computed naively, and against CT's published roots.
 *
 *   leaf hash = SHA-256(0x00 || leaf bytes)
 *   node hash = SHA-256(0x01 || left || right)
 *   MTH({})   = SHA-256("")
 *
 * Hashes are 32-byte Buffers. Leaves are numbered from 0.
 */
import { createHash } from 'node:crypto';

export const HASH_SIZE = 32;
/**
 * The most hashes a proof may hold. For any tree below 2^53 leaves an
 * inclusion proof has at most 53 and a consistency proof at most 54
 * (one per level, plus the old root); a longer "proof" is refused before any
 * hashing, so a hostile one costs nothing.
 */
export const MAX_PROOF_HASHES = 64;
const LEAF_PREFIX = Buffer.from([0]);
const NODE_PREFIX = Buffer.from([1]);

export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

export function leafHash(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(bytes).digest();
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

/** The largest power of two strictly below `n` (n ≥ 2): where RFC 6962 splits a tree of n leaves. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** The hash of the subtree of leaves [start, end); the source decides how (from leaves, from stored nodes). */
export type RangeHash = (start: number, end: number) => Buffer;

/** RFC 6962 MTH over leaf hashes held in memory (tests, verifiers, small logs). */
export function rangeHasher(leaves: readonly Uint8Array[]): RangeHash {
  const hash = (start: number, end: number): Buffer => {
    if (end - start === 1) return Buffer.from(leaves[start] as Uint8Array);
    if (end <= start) return EMPTY_ROOT;
    const k = splitPoint(end - start);
    return nodeHash(hash(start, start + k), hash(start + k, end));
  };
  return hash;
}

/** The root of the tree of `leaves` (leaf hashes). */
export function rootOf(leaves: readonly Uint8Array[]): Buffer {
  return leaves.length === 0 ? EMPTY_ROOT : rangeHasher(leaves)(0, leaves.length);
}

/** RFC 6962 §2.1.1 PATH(index, D[0:size]): the audit path of leaf `index` in the tree of `size` leaves. */
export function inclusionProof(index: number, size: number, hash: RangeHash): Buffer[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
    throw new RangeError(`leaf ${index} is not in a tree of ${size}`);
  }
  const path = (m: number, start: number, n: number): Buffer[] => {
    if (n === 1) return [];
    const k = splitPoint(n);
    return m < k
      ? [...path(m, start, k), hash(start + k, start + n)]
      : [...path(m - k, start + k, n - k), hash(start, start + k)];
  };
  return path(index, 0, size);
}

/** RFC 6962 §2.1.2 PROOF(m, D[0:n]): that the tree of `m` leaves is a prefix of the tree of `n`. */
export function consistencyProof(m: number, n: number, hash: RangeHash): Buffer[] {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m > n) {
    throw new RangeError(`no consistency proof from ${m} to ${n}`);
  }
  if (m === 0 || m === n) return [];
  const subproof = (m: number, start: number, n: number, whole: boolean): Buffer[] => {
    if (m === n) return whole ? [] : [hash(start, start + n)];
    const k = splitPoint(n);
    return m <= k
      ? [...subproof(m, start, k, whole), hash(start + k, start + n)]
      : [...subproof(m - k, start + k, n - k, false), hash(start, start + k)];
  };
  return subproof(m, 0, n, true);
}

/** RFC 9162 §2.1.3.2: whether `proof` shows leaf `index` with hash `leaf` in the tree of `size` with `root`. */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  if (proof.length > MAX_PROOF_HASHES) return false;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 §2.1.4.2: whether `proof` shows the tree (m, `first`) is a prefix of the tree (n, `second`). */
export function verifyConsistency(
  m: number,
  n: number,
  first: Uint8Array,
  second: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 0 || m > n) return false;
  if (proof.length > MAX_PROOF_HASHES) return false;
  if (m === n) return proof.length === 0 && Buffer.from(first).equals(second);
  if (m === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(m) ? [first, ...proof] : [...proof];
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0] as Uint8Array);
  let sr: Buffer = Buffer.from(path[0] as Uint8Array);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(first) && sr.equals(second);
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/**
 * The right edge of a log: the roots of the perfect subtrees that make up
 * its first `size` leaves, largest first (one per bit of `size`). Appending
 * a leaf costs one hash amortised, the root ≤ log₂(size) hashes, so a writer
 * keeps this instead of its leaves. It is also what a restarted writer
 * continues from (CentOps keeps it beside the last checkpoint).
 */
export class LogEdge {
  #size: number;
  readonly #nodes: Buffer[];

  constructor(size = 0, nodes: readonly Uint8Array[] = []) {
    if (!Number.isSafeInteger(size) || size < 0 || popCount(size) !== nodes.length) {
      throw new RangeError(`a log of ${size} leaves has ${popCount(size)} edge nodes, not ${nodes.length}`);
    }
    this.#size = size;
    this.#nodes = nodes.map((node) => Buffer.from(node));
  }

  get size(): number {
    return this.#size;
  }

  /** The edge's nodes, largest subtree first. */
  get nodes(): readonly Buffer[] {
    return this.#nodes;
  }

  append(leaf: Buffer): void {
    let node = leaf;
    // Each trailing 1-bit of the old size is a subtree of the new leaf's size: merge them, right to left.
    for (let size = this.#size; size % 2 === 1; size = Math.floor(size / 2)) {
      node = nodeHash(this.#nodes.pop() as Buffer, node);
    }
    this.#nodes.push(node);
    this.#size += 1;
  }

  root(): Buffer {
    if (this.#nodes.length === 0) return EMPTY_ROOT;
    let root = this.#nodes[this.#nodes.length - 1] as Buffer;
    for (let i = this.#nodes.length - 2; i >= 0; i -= 1) root = nodeHash(this.#nodes[i] as Buffer, root);
    return root;
  }

  clone(): LogEdge {
    return new LogEdge(this.#size, this.#nodes);
  }

  /**
   * The hash of any tree node inside [0, size) that a proof asks for: an
   * edge node, or a run of edge nodes that ends at `size` (the ragged right
   * side of a tree). Anything else is not kept and throws.
   */
  hashWithin(start: number, end: number): Buffer {
    let offset = 0;
    for (const [i, node] of this.#nodes.entries()) {
      const width = highestPowerOfTwo(this.#size - offset);
      if (offset === start) {
        if (offset + width === end) return node;
        if (end === this.#size) {
          let root = this.#nodes[this.#nodes.length - 1] as Buffer;
          for (let j = this.#nodes.length - 2; j >= i; j -= 1) root = nodeHash(this.#nodes[j] as Buffer, root);
          return root;
        }
      }
      offset += width;
    }
    throw new RangeError(`the edge of a log of ${this.#size} does not hold the subtree [${start}, ${end})`);
  }
}

/** The largest power of two ≤ n (n ≥ 1). */
function highestPowerOfTwo(n: number): number {
  let k = 1;
  while (k * 2 <= n) k *= 2;
  return k;
}

function popCount(n: number): number {
  let count = 0;
  for (let rest = n; rest > 0; rest = Math.floor(rest / 2)) count += rest % 2;
  return count;
}

/**
 * The subtree hashes a writer can answer for: its edge at the last
 * checkpoint CentOps accepted (`base`) and the leaf hashes appended since.
 * Enough for a consistency proof from `base.size` to any later size, which
 * is all CentOps asks for.
 */
export function edgeAndLeavesHasher(base: LogEdge, leaves: readonly Uint8Array[]): RangeHash {
  const m = base.size;
  const hash = (start: number, end: number): Buffer => {
    if (end <= m) return base.hashWithin(start, end);
    if (start >= m && end - start === 1) return Buffer.from(leaves[start - m] as Uint8Array);
    const k = splitPoint(end - start);
    return nodeHash(hash(start, start + k), hash(start + k, end));
  };
  return hash;
}
