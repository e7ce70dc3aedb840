//! The RFC 6962 (Certificate Transparency) Merkle tree: hashes, the incremental root, and
//! inclusion and consistency proofs, both made and checked. Pure functions; the service
//! feeds them node hashes from its store, the CLI checks proofs with nothing but these.
//!
//! Hashes are sha256 with domain separation: a leaf is `H(0x00 ‖ data)`, an interior node
//! `H(0x01 ‖ left ‖ right)`, so a leaf can never pass for a node. The tree over `n` leaves
//! splits at the largest power of two below `n` (RFC 6962 §2.1).

use sha2::{Digest, Sha256};

/// A sha256 digest.
pub type Hash = [u8; 32];

/// The hash of an empty tree: `H()`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The leaf hash of `data`: `H(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// An interior node: `H(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// A complete, aligned subtree: the `index`-th run of `2^level` leaves. Its hash never
/// changes once its last leaf is appended, so the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height: 0 for a leaf.
    pub level: u32,
    /// Position among the subtrees of that height, from the left.
    pub index: u64,
}

/// The right edge of a tree: the roots of its complete subtrees, largest (leftmost) first,
/// one per set bit of its size. Appending a leaf is amortised O(1) and the root is
/// O(log n), so the log never rehashes its history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), strictly decreasing levels.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    /// Restores a frontier from its size and peak hashes (largest first), as stored.
    pub fn from_parts(size: u64, hashes: &[Hash]) -> Option<Self> {
        let levels: Vec<u32> = (0..64).rev().filter(|bit| size & (1u64 << bit) != 0).collect();
        if levels.len() != hashes.len() {
            return None;
        }
        Some(Self { size, peaks: levels.into_iter().zip(hashes.iter().copied()).collect() })
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The peak hashes, largest subtree first (what [`Frontier::from_parts`] takes).
    pub fn peak_hashes(&self) -> Vec<Hash> {
        self.peaks.iter().map(|(_, h)| *h).collect()
    }

    /// Appends a leaf hash; returns every complete subtree this append finished (the leaf
    /// itself first, then each merged parent), for the store.
    pub fn push(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut finished = vec![(NodeId { level: 0, index: self.size }, leaf)];
        let mut carry = (0u32, leaf);
        while let Some(&(level, left)) = self.peaks.last() {
            if level != carry.0 {
                break;
            }
            self.peaks.pop();
            let parent = node_hash(&left, &carry.1);
            let level = level + 1;
            finished.push((NodeId { level, index: self.size >> level }, parent));
            carry = (level, parent);
        }
        self.peaks.push(carry);
        self.size += 1;
        finished
    }

    /// The RFC 6962 root of the tree (`MTH`).
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, mut root)) = peaks.next() else { return empty_root() };
        for (_, left) in peaks {
            root = node_hash(left, &root);
        }
        root
    }
}

/// Where proofs read complete subtree hashes from.
pub trait Nodes {
    /// The hash of a complete subtree; `None` when it is not (yet) known.
    fn node(&self, id: NodeId) -> Option<Hash>;
}

impl Nodes for std::collections::HashMap<NodeId, Hash> {
    fn node(&self, id: NodeId) -> Option<Hash> {
        self.get(&id).copied()
    }
}

/// A missing node: the store does not hold what the tree needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the tree has no node at level {} index {}", .0.level, .0.index)]
pub struct MissingNode(pub NodeId);

/// `MTH(D[start..end])` from complete subtrees: one lookup when the range is one aligned
/// complete subtree, else split as RFC 6962 does. Every range a proof asks for starts at a
/// multiple of a power of two at least as large as itself, so this takes O(log n) lookups.
pub fn subtree_hash(nodes: &impl Nodes, start: u64, end: u64) -> Result<Hash, MissingNode> {
    let width = end - start;
    if width.is_power_of_two() && start.is_multiple_of(width) {
        let id = NodeId { level: width.trailing_zeros(), index: start / width };
        return nodes.node(id).ok_or(MissingNode(id));
    }
    let k = split_point(width);
    Ok(node_hash(&subtree_hash(nodes, start, start + k)?, &subtree_hash(nodes, start + k, end)?))
}

/// Which complete subtrees [`subtree_hash`] reads for the range: a store fetches them in
/// one query before building a proof.
pub fn subtree_nodes(start: u64, end: u64, out: &mut Vec<NodeId>) {
    let width = end - start;
    if width.is_power_of_two() && start.is_multiple_of(width) {
        out.push(NodeId { level: width.trailing_zeros(), index: start / width });
        return;
    }
    let k = split_point(width);
    subtree_nodes(start, start + k, out);
    subtree_nodes(start + k, end, out);
}

/// The subtree ranges an inclusion proof of leaf `index` in a tree of `size` is made of,
/// bottom-up (RFC 6962 §2.1.1 `PATH`).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    fn path(m: u64, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            path(m, start, start + k, out);
            out.push((start + k, end));
        } else {
            path(m - k, start + k, end, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

/// The subtree ranges of a consistency proof from `old` to `new` leaves (RFC 6962 §2.1.2
/// `SUBPROOF`), in proof order.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    fn subproof(m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push((start, end));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            subproof(m, start, start + k, complete, out);
            out.push((start + k, end));
        } else {
            subproof(m - k, start + k, end, false, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if 0 < old && old < new {
        subproof(old, 0, new, true, &mut out);
    }
    out
}

/// Hashes the given ranges from `nodes`, in order.
pub fn hash_ranges(nodes: &impl Nodes, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, MissingNode> {
    ranges.iter().map(|&(start, end)| subtree_hash(nodes, start, end)).collect()
}

/// Why a proof does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has {got} hashes; a proof for these sizes has {want}")]
    WrongLength { got: usize, want: usize },
    /// The sizes cannot be compared (old larger than new, or zero).
    #[error("no consistency proof exists from {old} to {new} leaves")]
    BadSizes { old: u64, new: u64 },
    /// The hashes do not lead to the expected root.
    #[error("the proof leads to root {computed}, not the signed root {expected}")]
    RootMismatch { computed: String, expected: String },
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_ranges(index, size).len();
    if proof.len() != want {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength { got: proof.len(), want });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    compare(&r, root)
}

/// Checks that the tree of `new` leaves with `new_root` extends the tree of `old` leaves
/// with `old_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new || old == 0 {
        if old == 0 && proof.is_empty() {
            return Ok(()); // Every tree extends the empty one.
        }
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { got: proof.len(), want: 0 });
        }
        return compare(new_root, old_root);
    }
    let want = consistency_ranges(old, new).len();
    if proof.len() != want {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    // When the old tree is a complete left subtree, its root is the first hash implicitly.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength { got: proof.len(), want });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { got: proof.len(), want });
    }
    compare(&fr, old_root)?;
    compare(&sr, new_root)
}

fn compare(computed: &Hash, expected: &Hash) -> Result<(), ProofError> {
    if computed == expected {
        Ok(())
    } else {
        Err(ProofError::RootMismatch { computed: hex::encode(computed), expected: hex::encode(expected) })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// `MTH` straight from RFC 6962 §2.1, recursive over the leaves: the reference.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn build(leaves: &[Hash]) -> (Frontier, HashMap<NodeId, Hash>) {
        let mut frontier = Frontier::default();
        let mut nodes = HashMap::new();
        for leaf in leaves {
            nodes.extend(frontier.push(*leaf));
        }
        (frontier, nodes)
    }

    /// The empty tree and a one-leaf tree, as RFC 6962 defines them (the sha256 of the
    /// empty string; the leaf's hash itself).
    #[test]
    fn empty_and_single_leaf_roots() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        // H(0x00) = sha256 of the single byte 0: the leaf hash of empty data.
        assert_eq!(hex::encode(leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
        let (frontier, _) = build(&leaves(1));
        assert_eq!(frontier.root(), leaf_hash(&0u64.to_be_bytes()));
    }

    /// A tree of three leaves written out by hand: root = H(1 ‖ H(1 ‖ a ‖ b) ‖ c), and the
    /// proofs for each leaf are exactly the sibling hashes a person would pick.
    #[test]
    fn three_leaves_by_hand() {
        let [a, b, c] = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")];
        let ab = node_hash(&a, &b);
        let root = node_hash(&ab, &c);
        let (frontier, nodes) = build(&[a, b, c]);
        assert_eq!(frontier.root(), root);
        let proof = |i| hash_ranges(&nodes, &inclusion_ranges(i, 3)).unwrap();
        assert_eq!(proof(0), vec![b, c]);
        assert_eq!(proof(1), vec![a, c]);
        assert_eq!(proof(2), vec![ab]);
        for (i, leaf) in [a, b, c].iter().enumerate() {
            verify_inclusion(i as u64, 3, leaf, &proof(i as u64), &root).unwrap();
        }
        // From two leaves to three: the old root is a complete subtree, the proof is [c].
        assert_eq!(hash_ranges(&nodes, &consistency_ranges(2, 3)).unwrap(), vec![c]);
        verify_consistency(2, 3, &ab, &root, &[c]).unwrap();
        // From one leaf to three: [b, c].
        assert_eq!(hash_ranges(&nodes, &consistency_ranges(1, 3)).unwrap(), vec![b, c]);
        verify_consistency(1, 3, &a, &root, &[b, c]).unwrap();
    }

    /// RFC 6962 §2.1.3's example tree of seven leaves: the inclusion proof of d0 is
    /// [b, h, l]; the consistency proof from 3 to 7 is [c, d, g, l]; from 4 to 7 is [l].
    #[test]
    fn rfc6962_seven_leaf_examples() {
        let l = leaves(7);
        let (frontier, nodes) = build(&l);
        let (a, b, c, d) = (l[0], l[1], l[2], l[3]);
        let (e, f, j) = (l[4], l[5], l[6]);
        let g = node_hash(&a, &b);
        let h = node_hash(&c, &d);
        let i = node_hash(&e, &f);
        let k = node_hash(&g, &h);
        let lnode = node_hash(&i, &j);
        let root = node_hash(&k, &lnode);
        assert_eq!(frontier.root(), root);
        assert_eq!(hash_ranges(&nodes, &inclusion_ranges(0, 7)).unwrap(), vec![b, h, lnode]);
        assert_eq!(hash_ranges(&nodes, &inclusion_ranges(3, 7)).unwrap(), vec![c, g, lnode]);
        assert_eq!(hash_ranges(&nodes, &inclusion_ranges(4, 7)).unwrap(), vec![f, j, k]);
        assert_eq!(hash_ranges(&nodes, &inclusion_ranges(6, 7)).unwrap(), vec![i, k]);
        assert_eq!(hash_ranges(&nodes, &consistency_ranges(3, 7)).unwrap(), vec![c, d, g, lnode]);
        assert_eq!(hash_ranges(&nodes, &consistency_ranges(4, 7)).unwrap(), vec![lnode]);
        assert_eq!(hash_ranges(&nodes, &consistency_ranges(6, 7)).unwrap(), vec![i, j, k]);
        let old3 = node_hash(&g, &c);
        verify_consistency(3, 7, &old3, &root, &[c, d, g, lnode]).unwrap();
    }

    /// A wrong leaf, a wrong index, a changed sibling or a short proof is refused.
    #[test]
    fn bad_inclusion_proofs_fail() {
        let l = leaves(7);
        let (frontier, nodes) = build(&l);
        let root = frontier.root();
        let proof = hash_ranges(&nodes, &inclusion_ranges(2, 7)).unwrap();
        verify_inclusion(2, 7, &l[2], &proof, &root).unwrap();
        assert!(verify_inclusion(2, 7, &l[3], &proof, &root).is_err());
        assert!(verify_inclusion(3, 7, &l[2], &proof, &root).is_err());
        assert!(verify_inclusion(7, 7, &l[2], &proof, &root).is_err());
        assert!(verify_inclusion(2, 7, &l[2], &proof[..2], &root).is_err());
        let mut bent = proof.clone();
        bent[1][0] ^= 1;
        assert!(verify_inclusion(2, 7, &l[2], &bent, &root).is_err());
    }

    /// A frontier saved as (size, peaks) and restored gives the same root and keeps growing
    /// the same way.
    #[test]
    fn frontier_round_trips() {
        let l = leaves(13);
        let (mut frontier, _) = build(&l[..11]);
        let mut restored = Frontier::from_parts(frontier.size(), &frontier.peak_hashes()).unwrap();
        assert!(Frontier::from_parts(11, &frontier.peak_hashes()[..2]).is_none());
        for leaf in &l[11..] {
            frontier.push(*leaf);
            restored.push(*leaf);
        }
        assert_eq!(frontier, restored);
        assert_eq!(frontier.root(), reference_root(&l));
    }

    proptest! {
        /// For any size, the incremental root equals the recursive definition, and every
        /// leaf's inclusion proof (built from stored complete subtrees) verifies.
        #[test]
        fn incremental_root_and_inclusion(n in 1u64..300, pick in any::<u64>()) {
            let l = leaves(n);
            let (frontier, nodes) = build(&l);
            prop_assert_eq!(frontier.root(), reference_root(&l));
            let index = pick % n;
            let proof = hash_ranges(&nodes, &inclusion_ranges(index, n)).unwrap();
            prop_assert!(verify_inclusion(index, n, &l[index as usize], &proof, &frontier.root()).is_ok());
            let other = (index + 1) % n;
            if n > 1 {
                prop_assert!(verify_inclusion(other, n, &l[index as usize], &proof, &frontier.root()).is_err());
            }
        }

        /// For any two sizes, the consistency proof from the smaller to the larger verifies
        /// against both roots, and fails against a root of a different history.
        #[test]
        fn consistency_between_any_sizes(new in 1u64..300, pick in any::<u64>()) {
            let old = 1 + pick % new;
            let l = leaves(new);
            let (frontier, nodes) = build(&l);
            let old_root = reference_root(&l[..old as usize]);
            let proof = hash_ranges(&nodes, &consistency_ranges(old, new)).unwrap();
            prop_assert!(verify_consistency(old, new, &old_root, &frontier.root(), &proof).is_ok());
            let forged = leaf_hash(b"another history");
            if old < new {
                prop_assert!(verify_consistency(old, new, &forged, &frontier.root(), &proof).is_err());
            }
        }
    }
}
