//! The audit API's requests and answers (`gradients.api.audit.*`). JSON, because what it
//! hands out are the documents an auditor archives and checks by hand (see
//! [`crate::document`]); errors travel in the standard micro service headers.

use serde::{Deserialize, Serialize};

use crate::document::{Record, SignedCheckpoint};

/// `checkpoint`: the latest signed tree head, the one of `tree_size`, or (`fresh`) one
/// signed now over the whole log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointRequest {
    /// A stored checkpoint of exactly this size.
    pub tree_size: Option<u64>,
    /// Sign the log as it is now (returns the stored one when nothing was added since).
    pub fresh: bool,
}

/// `proof`: a record, by leaf index or by event id (`Nats-Msg-Id`), with its inclusion
/// proof against the checkpoint of `tree_size` (default: the latest that holds it, signed
/// now when none does yet).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProofRequest {
    /// The record's leaf index.
    pub leaf_index: Option<u64>,
    /// The event id: an entry id, a submission id, a task id...
    pub msg_id: Option<String>,
    /// Prove against this stored checkpoint.
    pub tree_size: Option<u64>,
}

/// `consistency`: the proof that the checkpoint of `new_size` extends that of `old_size`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsistencyRequest {
    /// The older stored checkpoint's size.
    pub old_size: u64,
    /// The newer stored checkpoint's size.
    pub new_size: u64,
}

/// `records`: records in log order from `from_leaf`, captured at or after `since_ms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsRequest {
    /// The first leaf index to return.
    pub from_leaf: u64,
    /// Only records captured at or after this time (Unix ms); 0 for all.
    pub since_ms: i64,
    /// At most this many (default 500, at most 5000).
    pub limit: u32,
}

/// One stored record with the leaf hash the store holds for it (`verify` recomputes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The record.
    pub record: Record,
    /// The leaf hash stored beside it, hex.
    pub stored_leaf_hash: String,
}

/// A page of records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecordsPage {
    /// Records in leaf order.
    pub records: Vec<StoredRecord>,
    /// Where the next page starts; `None` at the end of the log.
    pub next_leaf: Option<u64>,
}

/// `checkpoints`: stored checkpoints from `from_size` up, smallest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointsRequest {
    /// The smallest tree size to return.
    pub from_size: u64,
    /// At most this many (default 500, at most 5000).
    pub limit: u32,
}

/// A page of checkpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckpointsPage {
    /// Checkpoints by increasing size.
    pub checkpoints: Vec<SignedCheckpoint>,
    /// Where the next page starts; `None` after the last.
    pub next_size: Option<u64>,
}

/// Default and largest page.
pub const DEFAULT_PAGE: u32 = 500;
/// The largest page a request may ask for.
pub const MAX_PAGE: u32 = 5000;

/// A page size from a request's `limit`.
pub fn page(limit: u32) -> u64 {
    (match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }) as u64
}
