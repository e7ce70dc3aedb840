//! Tests: scripted cases with exact expected scores, and properties the
//! ledger and the audit rely on (order independence, monotonicity, determinism).

mod confidence_cases;
mod config_cases;
mod period_cases;
mod properties;
mod task_cases;

use crate::{MinerResult, MinerScore, Outcome, ScoreReason};

/// A valid result with a digest of its own.
fn valid(id: &str, test: f64, synth: Option<f64>, at: i64) -> MinerResult {
    MinerResult {
        miner_id: id.to_owned(),
        outcome: Outcome::Valid { test_loss: test, synth_loss: synth },
        artifact_sha256: format!("sha-{id}"),
        submitted_at_ms: at,
    }
}

/// A result with the given outcome and a digest of its own.
fn other(id: &str, outcome: Outcome) -> MinerResult {
    MinerResult { miner_id: id.to_owned(), outcome, artifact_sha256: format!("sha-{id}"), submitted_at_ms: 0 }
}

/// The same result with another artifact digest.
fn hashed(mut r: MinerResult, sha: &str) -> MinerResult {
    sha.clone_into(&mut r.artifact_sha256);
    r
}

/// Scores in a form that compares floats bit for bit.
type Bits = (String, Option<u32>, Option<u64>, u64, ScoreReason);

/// The bit-exact view of a scoring output.
fn bits(scores: &[MinerScore]) -> Vec<Bits> {
    scores
        .iter()
        .map(|s| (s.miner_id.clone(), s.rank, s.ranking_loss.map(f64::to_bits), s.score.to_bits(), s.reason))
        .collect()
}
