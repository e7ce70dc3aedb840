//! Deterministic train / synth / test split of a validated data set.
//!
//! Follows the Gradients (G.O.D.) validator: a seed-driven held-out test set
//! of a fraction of the rows, capped at a maximum, plus a similar slice kept
//! back for synthetic-data generation. The result depends only on the seed
//! (the task id) and the rows' contents, never on their order in the file,
//! so anyone holding the same data and task id can reproduce it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::parse::Dataset;
use crate::row::{canonical_bytes, Row};

/// How large the test and synth parts should be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitPlan {
    /// Share of the rows for the test part (e.g. 0.1).
    pub test_fraction: f64,
    /// Most rows in the test part (e.g. 1000).
    pub test_max_rows: u64,
    /// Share of the rows for the synth part.
    pub synth_fraction: f64,
    /// Most rows in the synth part (e.g. 500).
    pub synth_max_rows: u64,
}

/// How many rows each part of a split gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSizes {
    /// Rows for training.
    pub train: u64,
    /// Rows kept back for synthetic-data generation.
    pub synth: u64,
    /// Rows held out for evaluation.
    pub test: u64,
}

/// The three parts of a data set, each in rank order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Splits {
    /// Rows for training.
    pub train: Vec<Row>,
    /// Rows kept back for synthetic-data generation.
    pub synth: Vec<Row>,
    /// Rows held out for evaluation.
    pub test: Vec<Row>,
}

/// Part sizes for `n` rows under `plan`.
///
/// `test = min(test_max_rows, max(1, floor(n * test_fraction)))`, and the same
/// for synth. The floor uses f64 arithmetic, like the Python validator's
/// `int(n * fraction)`. The caller guarantees `n >= 3` (intake enforces
/// `min_rows >= 3`); below that, or with fractions summing past 1, parts are
/// filled test first, then synth, then train, so no part is ever negative
/// and train is what runs short. A NaN or negative fraction counts as 0.
pub fn split_sizes(n: u64, plan: &SplitPlan) -> SplitSizes {
    let test = part(n, plan.test_fraction, plan.test_max_rows).min(n);
    let synth = part(n, plan.synth_fraction, plan.synth_max_rows).min(n - test);
    SplitSizes { train: n - test - synth, synth, test }
}

/// `min(max_rows, max(1, floor(n * fraction)))`.
fn part(n: u64, fraction: f64, max_rows: u64) -> u64 {
    // `as` saturates: NaN and negatives become 0, huge values u64::MAX.
    let share = (n as f64 * fraction).floor() as u64;
    share.max(1).min(max_rows)
}

/// Splits a data set into train, synth and test parts, deterministically from `seed`.
///
/// Every row is ranked by `sha256(seed || canonical_bytes(row))` ascending;
/// the first rows go to test, the next to synth and the rest to train, with
/// sizes from [`split_sizes`].
pub fn split(dataset: &Dataset, seed: &[u8], plan: &SplitPlan) -> Splits {
    let mut ranked: Vec<([u8; 32], &Row)> = dataset.rows().iter().map(|row| (rank(seed, row), row)).collect();
    // Equal keys only come from identical rows, whose order cannot change the
    // output, so sorting by the hash alone is fully deterministic.
    ranked.sort_unstable_by_key(|(key, _)| *key);

    let sizes = split_sizes(ranked.len() as u64, plan);
    // Sizes never exceed the row count, which is a usize, so these fit.
    let test_end = sizes.test as usize;
    let synth_end = test_end + sizes.synth as usize;
    let mut rows = ranked.into_iter().map(|(_, row)| row.clone());
    Splits {
        test: rows.by_ref().take(test_end).collect(),
        synth: rows.by_ref().take(synth_end - test_end).collect(),
        train: rows.collect(),
    }
}

/// The ranking key of a row under a seed.
fn rank(seed: &[u8], row: &Row) -> [u8; 32] {
    Sha256::new().chain_update(seed).chain_update(canonical_bytes(row)).finalize().into()
}
