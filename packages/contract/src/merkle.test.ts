import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  EMPTY_ROOT,
  LogEdge,
  MAX_PROOF_HASHES,
  consistencyProof,
  edgeAndLeavesHasher,
  inclusionProof,
  leafHash,
  rangeHasher,
  rootOf,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js';

// The leaves and roots of Certificate Transparency's reference test (merkle_tree_test.cc, RFC 6962 vectors).
const CT_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'];
const CT_ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

const leaves = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`record ${i}`)));

describe('RFC 6962 Merkle tree', () => {
  it("matches Certificate Transparency's reference roots, and the empty tree is SHA-256 of nothing", () => {
    const hashes = CT_LEAVES.map((hex) => leafHash(Buffer.from(hex, 'hex')));
    CT_ROOTS.forEach((root, i) => assert.equal(rootOf(hashes.slice(0, i + 1)).toString('hex'), root, `size ${i + 1}`));
    assert.equal(EMPTY_ROOT.toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('the log edge gives the same root as the whole tree at every size, and can be restarted from its nodes', () => {
    const all = leaves(300);
    let edge = new LogEdge();
    for (const [i, leaf] of all.entries()) {
      edge.append(leaf);
      assert.ok(edge.root().equals(rootOf(all.slice(0, i + 1))), `size ${i + 1}`);
      if (i % 37 === 0) edge = new LogEdge(edge.size, edge.nodes);
    }
    assert.throws(() => new LogEdge(3, [all[0] as Buffer]), RangeError);
  });

  it('inclusion proofs verify for every leaf of every size up to 70, and fail for the wrong leaf, index or root', () => {
    for (let size = 1; size <= 70; size += 1) {
      const tree = leaves(size);
      const root = rootOf(tree);
      for (let index = 0; index < size; index += 1) {
        const proof = inclusionProof(index, size, rangeHasher(tree));
        assert.ok(verifyInclusion(index, size, tree[index] as Buffer, proof, root), `${index} in ${size}`);
        if (size > 1) {
          assert.ok(!verifyInclusion((index + 1) % size, size, tree[index] as Buffer, proof, root));
          assert.ok(!verifyInclusion(index, size, leafHash(Buffer.from('other')), proof, root));
          assert.ok(!verifyInclusion(index, size, tree[index] as Buffer, proof.slice(1), root));
        }
        assert.ok(!verifyInclusion(index, size, tree[index] as Buffer, proof, EMPTY_ROOT));
      }
    }
  });

  it('consistency proofs verify for every m ≤ n ≤ 40, and fail against a forked tree', () => {
    for (let n = 1; n <= 40; n += 1) {
      const tree = leaves(n);
      const second = rootOf(tree);
      for (let m = 0; m <= n; m += 1) {
        const first = rootOf(tree.slice(0, m));
        const proof = consistencyProof(m, n, rangeHasher(tree));
        assert.ok(verifyConsistency(m, n, first, second, proof), `${m} → ${n}`);
        if (m > 0 && m < n) {
          const forked = [...tree.slice(0, m - 1), leafHash(Buffer.from('forged')), ...tree.slice(m)];
          assert.ok(!verifyConsistency(m, n, rootOf(forked.slice(0, m)), second, proof), `forked ${m} → ${n}`);
          assert.ok(!verifyConsistency(m, n, first, rootOf(forked), proof), `forked tail ${m} → ${n}`);
        }
      }
    }
  });

  it('a writer proves consistency from its edge at the last checkpoint plus the leaves since (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 300 }), (m, extra) => {
        const tree = leaves(m + extra);
        const base = new LogEdge();
        for (const leaf of tree.slice(0, m)) base.append(leaf);
        const proof = consistencyProof(m, m + extra, edgeAndLeavesHasher(base, tree.slice(m)));
        assert.deepEqual(proof, consistencyProof(m, m + extra, rangeHasher(tree)));
        assert.ok(verifyConsistency(m, m + extra, base.root(), rootOf(tree), proof));
      }),
      { numRuns: 60 },
    );
  });

  it('a proof longer than MAX_PROOF_HASHES is refused before any hashing, and the largest trees need fewer', () => {
    const tree = leaves(5);
    const root = rootOf(tree);
    const proof = inclusionProof(2, 5, rangeHasher(tree));
    assert.ok(verifyInclusion(2, 5, tree[2] as Buffer, proof, root));
    const long = Array.from({ length: MAX_PROOF_HASHES + 1 }, () => tree[0] as Buffer);
    assert.equal(verifyInclusion(2, 5, tree[2] as Buffer, long, root), false);
    assert.equal(verifyConsistency(3, 5, rootOf(tree.slice(0, 3)), root, long), false);
    // A tree of 2^53 − 1 leaves: 53 levels, so at most 53 (inclusion) and 54 (consistency) hashes.
    assert.ok(Math.ceil(Math.log2(Number.MAX_SAFE_INTEGER)) + 1 <= MAX_PROOF_HASHES);
  });
});
