//! Offline checks: what `gradients audit verify-proof` runs with nothing but a proof file
//! and the audit service's public key. No connection, no database, no trust in the
//! service: the signature over the tree head, then the Merkle path to its root.

use gradients_miner::identity::{self, Identity};

use crate::document::{
    decode_hash, Checkpoint, ConsistencyProof, DocumentError, InclusionProof, ProofFile, SignedCheckpoint,
    CHECKPOINT_DOMAIN, ORIGIN,
};
use crate::merkle::{self, Hash, ProofError};

/// Why a proof file does not check out.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A field cannot be read.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The checkpoint is not signed by the given key.
    #[error("the checkpoint of tree size {tree_size} is not signed by this public key")]
    BadSignature { tree_size: u64 },
    /// The checkpoint names another log.
    #[error("the checkpoint is for log {0:?}, not {ORIGIN:?}")]
    WrongOrigin(String),
    /// The public key is not an ed25519 key.
    #[error("the public key is not 32 bytes of hex")]
    BadPublicKey,
    /// The Merkle proof does not lead to the signed root.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// What a verified proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Record `leaf_index` is in the signed tree of `tree_size`.
    Inclusion { leaf_index: u64, tree_size: u64 },
    /// The signed tree of `new_size` extends the signed tree of `old_size`.
    Consistency { old_size: u64, new_size: u64 },
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inclusion { leaf_index, tree_size } => {
                write!(f, "record {leaf_index} is in the signed log of {tree_size} records")
            }
            Self::Consistency { old_size, new_size } => {
                write!(f, "the signed log of {new_size} records extends the signed log of {old_size}")
            }
        }
    }
}

/// Signs a tree head with the audit service's key.
pub fn sign(identity: &Identity, checkpoint: Checkpoint) -> SignedCheckpoint {
    let signature = identity.sign(CHECKPOINT_DOMAIN, checkpoint.note().as_bytes());
    SignedCheckpoint { checkpoint, public_key: hex::encode(identity.public_key()), signature: hex::encode(signature) }
}

/// Reads a public key: 64 hex characters (surrounding whitespace allowed).
pub fn parse_public_key(text: &str) -> Result<[u8; 32], VerifyError> {
    hex::decode(text.trim()).ok().and_then(|bytes| bytes.try_into().ok()).ok_or(VerifyError::BadPublicKey)
}

/// Checks a checkpoint's origin and signature by `public_key`; returns its root.
pub fn verify_checkpoint(signed: &SignedCheckpoint, public_key: &[u8; 32]) -> Result<Hash, VerifyError> {
    let checkpoint = &signed.checkpoint;
    if checkpoint.origin != ORIGIN {
        return Err(VerifyError::WrongOrigin(checkpoint.origin.clone()));
    }
    let signature = hex::decode(&signed.signature).map_err(|_| DocumentError::Hex("signature"))?;
    identity::verify(public_key, CHECKPOINT_DOMAIN, checkpoint.note().as_bytes(), &signature)
        .map_err(|_| VerifyError::BadSignature { tree_size: checkpoint.tree_size })?;
    Ok(checkpoint.root()?)
}

/// Checks any proof file.
pub fn verify_file(file: &ProofFile, public_key: &[u8; 32]) -> Result<Verified, VerifyError> {
    match file {
        ProofFile::Inclusion(proof) => verify_inclusion(proof, public_key),
        ProofFile::Consistency(proof) => verify_consistency(proof, public_key),
    }
}

/// Checks that the record is in the signed tree.
pub fn verify_inclusion(proof: &InclusionProof, public_key: &[u8; 32]) -> Result<Verified, VerifyError> {
    let root = verify_checkpoint(&proof.checkpoint, public_key)?;
    let leaf = proof.record.leaf_hash()?;
    let path = hashes(&proof.proof)?;
    let (index, size) = (proof.record.leaf_index, proof.checkpoint.checkpoint.tree_size);
    merkle::verify_inclusion(index, size, &leaf, &path, &root)?;
    Ok(Verified::Inclusion { leaf_index: index, tree_size: size })
}

/// Checks that the newer signed tree extends the older one.
pub fn verify_consistency(proof: &ConsistencyProof, public_key: &[u8; 32]) -> Result<Verified, VerifyError> {
    let old_root = verify_checkpoint(&proof.old, public_key)?;
    let new_root = verify_checkpoint(&proof.new, public_key)?;
    let (old, new) = (proof.old.checkpoint.tree_size, proof.new.checkpoint.tree_size);
    merkle::verify_consistency(old, new, &old_root, &new_root, &hashes(&proof.proof)?)?;
    Ok(Verified::Consistency { old_size: old, new_size: new })
}

fn hashes(hexes: &[String]) -> Result<Vec<Hash>, DocumentError> {
    hexes.iter().map(|h| decode_hash(h, "proof")).collect()
}
