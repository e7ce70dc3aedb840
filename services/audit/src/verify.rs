//! `gradients audit verify`: walks the whole log and every checkpoint through the API and
//! names the first thing that does not match. It trusts nothing the service computed: each
//! leaf is rehashed from the record's fields and payload, the tree is rebuilt, and every
//! checkpoint's signature and root are checked against the rebuilt tree.

use std::collections::HashMap;

use crate::client::{AuditClient, ClientError};
use crate::document::{decode_hash, SignedCheckpoint};
use crate::merkle::Frontier;
use crate::offline::{self, VerifyError};
use crate::protocol::{CheckpointsRequest, RecordsRequest, StoredRecord};

/// The first mismatch `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    /// A record's content does not hash to the leaf stored for it: it was changed.
    #[error("record {leaf_index} ({stream} #{sequence}) does not match its leaf hash: its content was changed")]
    RecordAltered { leaf_index: u64, stream: String, sequence: u64 },
    /// A leaf index is missing or repeated.
    #[error("expected record {expected}, found record {found}: records are missing or reordered")]
    IndexBroken { expected: u64, found: u64 },
    /// A stream's sequence numbers do not follow on (a record was removed or inserted).
    #[error("record {leaf_index} covers {stream} #{first}, but the previous record of {stream} ended at #{previous}")]
    SequenceBroken { leaf_index: u64, stream: String, first: u64, previous: u64 },
    /// A checkpoint's signature does not verify with the key.
    #[error("checkpoint of tree size {tree_size}: {reason}")]
    CheckpointSignature { tree_size: u64, reason: String },
    /// The rebuilt tree's root differs from a signed checkpoint: some record in
    /// `[first_suspect, tree_size)` (after the last matching checkpoint) was changed.
    #[error("the records up to {tree_size} hash to {computed}, not the signed root {signed}: a record in {first_suspect}..{tree_size} was changed")]
    RootMismatch { tree_size: u64, first_suspect: u64, computed: String, signed: String },
    /// A checkpoint signs more records than the log holds: records were removed.
    #[error("a checkpoint signs {tree_size} records but the log holds {held}: records were removed")]
    Truncated { tree_size: u64, held: u64 },
}

/// What a clean run checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Records rehashed.
    pub records: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// Alarm records (gaps, undecodable messages) seen on the way.
    pub alarms: u64,
}

/// Why `verify` could not finish.
#[derive(Debug, thiserror::Error)]
pub enum VerifyRunError {
    /// The API failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The log does not verify.
    #[error(transparent)]
    Finding(#[from] Finding),
}

/// Rebuilds the tree record by record and checks it against the checkpoints.
pub struct Walker {
    frontier: Frontier,
    checkpoints: std::collections::VecDeque<SignedCheckpoint>,
    last_sequence: HashMap<String, u64>,
    last_good: u64,
    report: Report,
}

impl Walker {
    /// A walker checking `checkpoints` (any order) with `public_key`.
    pub fn new(public_key: [u8; 32], mut checkpoints: Vec<SignedCheckpoint>) -> Result<Self, Finding> {
        checkpoints.sort_by_key(|c| c.checkpoint.tree_size);
        for signed in &checkpoints {
            offline::verify_checkpoint(signed, &public_key).map_err(|e: VerifyError| Finding::CheckpointSignature {
                tree_size: signed.checkpoint.tree_size,
                reason: e.to_string(),
            })?;
        }
        let mut walker = Self {
            frontier: Frontier::default(),
            checkpoints: checkpoints.into(),
            last_sequence: HashMap::new(),
            last_good: 0,
            report: Report::default(),
        };
        walker.check_due()?;
        Ok(walker)
    }

    /// Takes the next record.
    pub fn push(&mut self, stored: &StoredRecord) -> Result<(), Finding> {
        let record = &stored.record;
        if record.leaf_index != self.frontier.size() {
            return Err(Finding::IndexBroken { expected: self.frontier.size(), found: record.leaf_index });
        }
        let altered = || Finding::RecordAltered {
            leaf_index: record.leaf_index,
            stream: record.stream.clone(),
            sequence: record.first_sequence,
        };
        let leaf = record.leaf_hash().map_err(|_| altered())?;
        if decode_hash(&stored.stored_leaf_hash, "stored_leaf_hash").ok() != Some(leaf) {
            return Err(altered());
        }
        let previous = self.last_sequence.get(&record.stream).copied().unwrap_or(0);
        if record.first_sequence != previous + 1 || record.last_sequence < record.first_sequence {
            return Err(Finding::SequenceBroken {
                leaf_index: record.leaf_index,
                stream: record.stream.clone(),
                first: record.first_sequence,
                previous,
            });
        }
        self.last_sequence.insert(record.stream.clone(), record.last_sequence);
        if record.kind != crate::document::RecordKind::Message {
            self.report.alarms += 1;
        }
        self.frontier.push(leaf);
        self.report.records += 1;
        self.check_due()
    }

    /// Ends the walk: a checkpoint beyond the log means records were removed.
    pub fn finish(self) -> Result<Report, Finding> {
        if let Some(signed) = self.checkpoints.front() {
            return Err(Finding::Truncated { tree_size: signed.checkpoint.tree_size, held: self.frontier.size() });
        }
        Ok(self.report)
    }

    fn check_due(&mut self) -> Result<(), Finding> {
        while let Some(signed) = self.checkpoints.front() {
            if signed.checkpoint.tree_size != self.frontier.size() {
                break;
            }
            let computed = hex::encode(self.frontier.root());
            if computed != signed.checkpoint.root_hash {
                return Err(Finding::RootMismatch {
                    tree_size: signed.checkpoint.tree_size,
                    first_suspect: self.last_good,
                    computed,
                    signed: signed.checkpoint.root_hash.clone(),
                });
            }
            self.last_good = signed.checkpoint.tree_size;
            self.report.checkpoints += 1;
            self.checkpoints.pop_front();
        }
        Ok(())
    }
}

/// Walks the whole log through `client`.
pub async fn verify_log(client: &AuditClient, public_key: [u8; 32]) -> Result<Report, VerifyRunError> {
    let mut checkpoints = Vec::new();
    let mut from_size = 0;
    loop {
        let page = client.checkpoints(&CheckpointsRequest { from_size, limit: 0 }).await?;
        checkpoints.extend(page.checkpoints);
        match page.next_size {
            Some(next) => from_size = next,
            None => break,
        }
    }
    let mut walker = Walker::new(public_key, checkpoints)?;
    let mut from_leaf = 0;
    loop {
        let page = client.records(&RecordsRequest { from_leaf, since_ms: 0, limit: 0 }).await?;
        for stored in &page.records {
            walker.push(stored)?;
        }
        match page.next_leaf {
            Some(next) => from_leaf = next,
            None => break,
        }
    }
    Ok(walker.finish()?)
}
