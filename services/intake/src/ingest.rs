//! The CPU side of a submit, kept off the async runtime.
//!
//! A data set of up to `intake.limits.max_bytes` must be hashed, parsed, validated row by
//! row, split and serialised again; done on a Tokio worker, a few large submits would hold
//! every worker for seconds and no other request (a small submit, `get`, `/readyz`) would
//! be answered meanwhile. Here the upload is streamed from the object store chunk by chunk
//! into a blocking thread, which hashes and gathers it as it arrives and then does the
//! rest; the async side only moves chunks and writes the finished splits.
//!
//! How many bytes are in this pipeline at once is bounded by [`DataBudget`]: each submit
//! holds its data set's declared size until its splits are written, waits (in arrival
//! order) for its share when the budget is spent, and is refused outright when it is
//! larger than the whole budget, which it could never get.

use std::sync::Arc;

use bytes::Bytes;
use gradients_bus::objects::{self, ObjectError};
use gradients_bus::subjects::buckets;
use gradients_data::{ColumnMap, Dataset, DatasetError, Limits, SplitPlan, TaskType};
use gradients_proto::v1::ObjectRef;
use gradients_reward::{ColumnError, RewardSet};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::error::RequestError;
use crate::{upload, Context};

/// Bytes one permit of the budget stands for. A semaphore takes at most `u32::MAX`
/// permits at once; counting KiB keeps a 4 TiB budget expressible.
const PERMIT_BYTES: u64 = 1024;
/// Chunks read ahead of the blocking thread: enough to keep it busy, little memory.
const CHUNKS_AHEAD: usize = 16;

/// The bytes of data sets one intake process handles at once.
pub struct DataBudget {
    permits: Arc<Semaphore>,
    total_bytes: u64,
}

/// A share of the budget, given back when dropped.
pub struct BudgetShare {
    _permits: OwnedSemaphorePermit,
}

impl DataBudget {
    /// A budget of `total_bytes` (validated by the settings: positive, at most 4 TiB).
    pub fn new(total_bytes: u64) -> Self {
        let permits = total_bytes.div_ceil(PERMIT_BYTES) as usize;
        Self { permits: Arc::new(Semaphore::new(permits)), total_bytes }
    }

    /// Waits for `bytes` of the budget. Waiters are served in arrival order, so a large
    /// data set is not starved by a stream of small ones. A request for more than the
    /// whole budget is refused at once: waiting would never end.
    pub async fn reserve(&self, bytes: u64) -> Result<BudgetShare, RequestError> {
        if bytes > self.total_bytes {
            return Err(RequestError::OverBudget { size: bytes, budget: self.total_bytes });
        }
        // Never more than the semaphore holds: bytes <= total rounds up to at most its permits.
        let permits = bytes.div_ceil(PERMIT_BYTES).max(1) as u32;
        let permits = self.permits.clone().acquire_many_owned(permits).await.expect("the budget is never closed");
        Ok(BudgetShare { _permits: permits })
    }
}

/// What the blocking thread needs to turn an upload into splits.
pub struct Recipe {
    pub task_type: TaskType,
    pub columns: ColumnMap,
    pub limits: Limits,
    pub plan: SplitPlan,
    /// Seeds the split (the task id), so a retry splits the same way.
    pub seed: String,
    /// A GRPO task's reward functions: every row must have the columns they read.
    pub rewards: Option<RewardSet>,
}

/// A data set validated and split, ready to be written.
pub struct Prepared {
    /// Rows in the whole data set.
    pub rows: usize,
    /// Train, synthetic and test, in that order.
    pub splits: [PreparedSplit; 3],
}

/// One split as canonical JSONL, with where it goes.
pub struct PreparedSplit {
    /// `train`, `synth` or `test`: part of the object's name.
    pub part: &'static str,
    pub bucket: &'static str,
    pub jsonl: Vec<u8>,
    pub sha256: String,
    pub rows: usize,
}

/// Streams the upload `dataset` names into a blocking thread that checks its sha256 and
/// parses, validates, splits and serialises it by `recipe`. The caller holds a
/// [`BudgetShare`] of the data set's size.
pub async fn prepare(ctx: &Context, dataset: &ObjectRef, recipe: Recipe) -> Result<Prepared, RequestError> {
    let (mut chunks, received) = mpsc::channel(CHUNKS_AHEAD);
    let expected = dataset.clone();
    let worker = tokio::task::spawn_blocking(move || gather_and_split(received, &expected, recipe));
    let streamed = upload::stream(ctx, dataset, &mut chunks).await;
    // The end of the stream: the worker finishes what it has.
    drop(chunks);
    let prepared = worker.await.map_err(RequestError::Worker);
    // A failed read explains a short stream better than the worker can.
    streamed?;
    prepared?
}

/// The blocking thread's part: gathers and hashes the chunks as they arrive, then checks,
/// parses, splits and serialises.
fn gather_and_split(
    mut chunks: mpsc::Receiver<Bytes>,
    expected: &ObjectRef,
    recipe: Recipe,
) -> Result<Prepared, RequestError> {
    let mut hasher = Sha256::new();
    let mut data = Vec::with_capacity(expected.size as usize);
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
        data.extend_from_slice(&chunk);
    }
    if data.len() as u64 != expected.size {
        // The reader stopped early and returns why; this is only the worker's view of it.
        return Err(ObjectError::Incomplete { expected: expected.size, actual: data.len() as u64 }.into());
    }
    let actual = hex::encode(hasher.finalize());
    if !actual.eq_ignore_ascii_case(&expected.sha256) {
        return Err(ObjectError::ChecksumMismatch { expected: expected.sha256.clone(), actual }.into());
    }
    let dataset = gradients_data::parse(recipe.task_type, &recipe.columns, &data, &recipe.limits)?;
    drop(data);
    if let Some(rewards) = &recipe.rewards {
        check_reward_columns(&dataset, rewards)?;
    }
    let splits = gradients_data::split(&dataset, recipe.seed.as_bytes(), &recipe.plan);
    let serialise = |part, bucket, rows: &[gradients_data::Row]| {
        let jsonl = gradients_data::to_jsonl(rows);
        PreparedSplit { part, bucket, sha256: objects::sha256_hex(&jsonl), jsonl, rows: rows.len() }
    };
    Ok(Prepared {
        rows: dataset.len(),
        splits: [
            serialise("train", buckets::TRAIN, &splits.train),
            serialise("synth", buckets::VALIDATOR, &splits.synth),
            serialise("test", buckets::VALIDATOR, &splits.test),
        ],
    })
}

/// Refuses the first row that lacks a column a reward function reads, or holds a value it
/// cannot use, naming the row (its line in the customer's file), the column and the function.
fn check_reward_columns(dataset: &Dataset, rewards: &RewardSet) -> Result<(), DatasetError> {
    for (row, &line) in dataset.rows().iter().zip(dataset.source_rows()) {
        if let Err(e) = rewards.check_row(row.as_map()) {
            let (missing, reason) = match &e {
                ColumnError::Missing { function, .. } => {
                    (true, format!("missing; reward function {function:?} reads it"))
                }
                ColumnError::WrongType { function, expected, found, .. } => {
                    (false, format!("reward function {function:?} needs {expected}, found {found}"))
                }
            };
            return Err(DatasetError::RewardColumn { row: line, column: e.column().to_owned(), missing, reason });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_budget_bounds_the_bytes_at_once_and_refuses_what_can_never_fit() {
        let budget = DataBudget::new(10 * 1024 + 1);
        let first = budget.reserve(6 * 1024).await.expect("fits");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), budget.reserve(6 * 1024)).await.is_err(),
            "a second share waits while the first is held"
        );
        drop(first);
        let whole = budget.reserve(10 * 1024 + 1).await.expect("the whole budget, odd size and all");
        drop(whole);
        assert!(matches!(
            budget.reserve(10 * 1024 + 2).await,
            Err(RequestError::OverBudget { size, budget }) if size == 10 * 1024 + 2 && budget == 10 * 1024 + 1
        ));
    }
}
