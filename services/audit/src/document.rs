//! The documents an auditor holds: a captured record, a signed checkpoint (tree head), and
//! proof files. Each one is plain JSON and is checked offline by [`crate::offline`] with
//! nothing but the audit service's public key. The bytes that are hashed and signed are
//! defined here, once, so the service and every verifier agree on them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, Hash};

/// Names the log in every checkpoint, so a signature over another log never passes here.
pub const ORIGIN: &str = "gradients-audit/v1";
/// The signature domain of checkpoints (see `gradients_miner::identity::signed_bytes`).
pub const CHECKPOINT_DOMAIN: &str = "gradients.audit.checkpoint.v1";
/// The first bytes of every leaf's input: the format of the record.
const LEAF_FORMAT: &[u8] = b"gradients-audit-record-v1";

/// What a record says about its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A message, captured as it was stored.
    Message,
    /// A message whose payload is not the type its subject carries: kept, and an alarm.
    Undecodable,
    /// Sequence numbers the stream no longer holds and the log never saw: an alarm.
    Gap,
}

impl RecordKind {
    /// The label stored in the database.
    pub fn label(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Undecodable => "undecodable",
            Self::Gap => "gap",
        }
    }

    /// The kind a stored label names; an unknown label is an error, never a default.
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "message" => Some(Self::Message),
            "undecodable" => Some(Self::Undecodable),
            "gap" => Some(Self::Gap),
            _ => None,
        }
    }
}

/// One record of the audit log: leaf `leaf_index` of the Merkle tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the log (0-based), the leaf index.
    pub leaf_index: u64,
    /// The JetStream stream it was captured from.
    pub stream: String,
    /// Its sequence in that stream (the first missing one, for a gap).
    pub first_sequence: u64,
    /// The same as `first_sequence` but for a gap, where it is the last missing one.
    pub last_sequence: u64,
    /// Message, undecodable message or gap.
    pub kind: RecordKind,
    /// The subject it was published on (empty for a gap).
    pub subject: String,
    /// Its `Nats-Msg-Id` header: the event's id (entry id, submission id, ...).
    pub msg_id: String,
    /// Its W3C `traceparent` header.
    pub traceparent: String,
    /// When JetStream stored it (Unix ms).
    pub published_at_ms: i64,
    /// When the audit captured it (Unix ms).
    pub captured_at_ms: i64,
    /// For alarms, what is wrong; for a dead letter, its reason and origin (headers).
    pub note: String,
    /// The payload byte for byte, in hex (empty for a gap).
    pub payload_hex: String,
}

impl Record {
    /// The leaf input: every field but the index, length-prefixed, with the payload's
    /// sha256 in place of the payload.
    pub fn leaf_input(&self, payload_sha256: &Hash) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(LEAF_FORMAT);
        field(self.stream.as_bytes());
        field(&self.first_sequence.to_be_bytes());
        field(&self.last_sequence.to_be_bytes());
        field(self.kind.label().as_bytes());
        field(self.subject.as_bytes());
        field(self.msg_id.as_bytes());
        field(self.traceparent.as_bytes());
        field(&self.published_at_ms.to_be_bytes());
        field(&self.captured_at_ms.to_be_bytes());
        field(self.note.as_bytes());
        field(payload_sha256);
        out
    }

    /// The record's leaf hash, from its fields and the payload it carries.
    pub fn leaf_hash(&self) -> Result<Hash, DocumentError> {
        let payload = hex::decode(&self.payload_hex).map_err(|_| DocumentError::Hex("payload_hex"))?;
        Ok(leaf_hash_of(self, &payload))
    }
}

/// The leaf hash of `record` carrying `payload` (the stored form keeps them apart).
pub fn leaf_hash_of(record: &Record, payload: &[u8]) -> Hash {
    let digest: Hash = Sha256::digest(payload).into();
    merkle::leaf_hash(&record.leaf_input(&digest))
}

/// A tree head: the log's size and root at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`ORIGIN`].
    pub origin: String,
    /// How many records the tree holds.
    pub tree_size: u64,
    /// Its RFC 6962 root, hex.
    pub root_hash: String,
    /// When it was signed (Unix ms).
    pub timestamp_ms: i64,
}

impl Checkpoint {
    /// The signed text: one field a line, as a transparency-log checkpoint note.
    pub fn note(&self) -> String {
        format!("{}\n{}\n{}\n{}\n", self.origin, self.tree_size, self.root_hash, self.timestamp_ms)
    }

    /// The root as bytes.
    pub fn root(&self) -> Result<Hash, DocumentError> {
        decode_hash(&self.root_hash, "root_hash")
    }
}

/// A checkpoint with the audit service's ed25519 signature over its [`Checkpoint::note`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The tree head.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// The signer's public key, hex (informative: verifiers use the key they trust).
    pub public_key: String,
    /// The signature, hex.
    pub signature: String,
}

/// A record, the checkpoint it is proven against, and the inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The record (its leaf is recomputed from these fields).
    pub record: Record,
    /// A signed checkpoint whose tree holds the record.
    pub checkpoint: SignedCheckpoint,
    /// Sibling subtree hashes, bottom-up, hex.
    pub proof: Vec<String>,
}

/// Two signed checkpoints and the proof that the newer tree extends the older.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older checkpoint.
    pub old: SignedCheckpoint,
    /// The newer checkpoint.
    pub new: SignedCheckpoint,
    /// RFC 6962 consistency proof hashes, hex.
    pub proof: Vec<String>,
}

/// Any proof file `gradients audit verify-proof` accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProofFile {
    /// A record is in the log.
    Inclusion(InclusionProof),
    /// A later log extends an earlier one.
    Consistency(ConsistencyProof),
}

/// A document that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// A hex field is not hex.
    #[error("field {0} is not valid hex")]
    Hex(&'static str),
    /// A hash field is not 32 bytes.
    #[error("field {0} is not a 32-byte sha256")]
    HashLength(&'static str),
}

/// Reads a hex sha256.
pub fn decode_hash(text: &str, field: &'static str) -> Result<Hash, DocumentError> {
    hex::decode(text).map_err(|_| DocumentError::Hex(field))?.try_into().map_err(|_| DocumentError::HashLength(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            leaf_index: 4,
            stream: "GRADIENTS_LEDGER".into(),
            first_sequence: 9,
            last_sequence: 9,
            kind: RecordKind::Message,
            subject: "gradients.ledger.entries".into(),
            msg_id: "e1".into(),
            traceparent: String::new(),
            published_at_ms: 1,
            captured_at_ms: 2,
            note: String::new(),
            payload_hex: hex::encode(b"payload"),
        }
    }

    /// Every field and every payload byte is under the leaf hash; the index is not (it is
    /// the leaf's position, proven by the path).
    #[test]
    fn every_field_changes_the_leaf() {
        let base = record().leaf_hash().unwrap();
        type Change = Box<dyn Fn(&mut Record)>;
        let changes: Vec<Change> = vec![
            Box::new(|r| r.stream.push('x')),
            Box::new(|r| r.first_sequence += 1),
            Box::new(|r| r.last_sequence += 1),
            Box::new(|r| r.kind = RecordKind::Undecodable),
            Box::new(|r| r.subject.push('x')),
            Box::new(|r| r.msg_id.push('x')),
            Box::new(|r| r.traceparent.push('x')),
            Box::new(|r| r.published_at_ms += 1),
            Box::new(|r| r.captured_at_ms += 1),
            Box::new(|r| r.note.push('x')),
            Box::new(|r| r.payload_hex = hex::encode(b"paylOad")),
        ];
        for change in changes {
            let mut changed = record();
            change(&mut changed);
            assert_ne!(changed.leaf_hash().unwrap(), base, "{changed:?}");
        }
        let mut moved = record();
        moved.leaf_index = 5;
        assert_eq!(moved.leaf_hash().unwrap(), base);
    }

    /// Length prefixes keep field boundaries: moving a byte between fields changes the leaf.
    #[test]
    fn fields_cannot_shift() {
        let mut a = record();
        a.subject = "ab".into();
        a.msg_id = "c".into();
        let mut b = record();
        b.subject = "a".into();
        b.msg_id = "bc".into();
        assert_ne!(a.leaf_hash().unwrap(), b.leaf_hash().unwrap());
    }

    /// Proof files round-trip through JSON with their type tag.
    #[test]
    fn proof_files_round_trip() {
        let signed = SignedCheckpoint {
            checkpoint: Checkpoint { origin: ORIGIN.into(), tree_size: 5, root_hash: "00".repeat(32), timestamp_ms: 3 },
            public_key: "11".repeat(32),
            signature: "22".repeat(64),
        };
        let file = ProofFile::Inclusion(InclusionProof { record: record(), checkpoint: signed, proof: vec![] });
        let text = serde_json::to_string(&file).unwrap();
        assert!(text.contains("\"type\":\"inclusion\""), "{text}");
        assert_eq!(serde_json::from_str::<ProofFile>(&text).unwrap(), file);
    }
}
