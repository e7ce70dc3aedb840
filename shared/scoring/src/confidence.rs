//! Confidence in a ranking: how sure the market is that the winner beats another model on
//! the same hidden rows, by a seeded paired bootstrap, and G.O.D.'s tournament rule built on
//! it (first place shared among the miners the winner does not beat with enough confidence).
//!
//! Pure and deterministic like the rest of the crate: the resampling uses its own seeded
//! generator (SplitMix64), so the ledger, the audit and a reader with the evidence objects
//! reach the same bits. The evaluator's per-row evidence gives, for each row of the test
//! split, the summed answer-token loss; both models are scored on the same rows with the same
//! tokens, so the token-weighted means compare exactly as the sums of the per-row
//! differences do, which is what each resample compares.

use std::collections::BTreeMap;

use crate::config::ScoringConfig;
use crate::model::{MinerScore, ScoreReason};

/// Why two models' per-row losses cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// The two models were not scored on the same number of rows.
    #[error("the models were scored on {winner} and {other} rows: not the same rows")]
    DifferentRows {
        /// Rows of the first model.
        winner: usize,
        /// Rows of the second.
        other: usize,
    },
    /// Nothing to resample.
    #[error("no rows to compare")]
    NoRows,
    /// A per-row loss is NaN or infinite.
    #[error("row {row} has a loss that is not a finite number")]
    NotFinite {
        /// The row's index.
        row: usize,
    },
    /// Zero resamples were asked for.
    #[error("at least one resample is needed")]
    NoResamples,
}

/// The share of `resamples` bootstrap resamples of the rows (drawn with replacement, seeded
/// by `seed`) on which `winner` has the lower total loss than `other`, ties counting half.
///
/// `winner[i]` and `other[i]` are the two models' losses on row `i` (paired). 1.0: the winner
/// is better on every resample; 0.5: no evidence either way; 0.0: the other is better.
pub fn paired_bootstrap_confidence(
    winner: &[f64],
    other: &[f64],
    resamples: u32,
    seed: u64,
) -> Result<f64, PairingError> {
    if winner.len() != other.len() {
        return Err(PairingError::DifferentRows { winner: winner.len(), other: other.len() });
    }
    if winner.is_empty() {
        return Err(PairingError::NoRows);
    }
    if resamples == 0 {
        return Err(PairingError::NoResamples);
    }
    let differences: Vec<f64> = winner.iter().zip(other).map(|(w, o)| w - o).collect();
    if let Some(row) = differences.iter().position(|d| !d.is_finite()) {
        return Err(PairingError::NotFinite { row });
    }
    let mut random = SplitMix64(seed);
    let rows = differences.len();
    // Counted in halves so that a tie adds one and a win two, in integers.
    let mut halves: u64 = 0;
    for _ in 0..resamples {
        let total: f64 = (0..rows).map(|_| differences[random.below(rows)]).sum();
        halves += match total.partial_cmp(&0.0) {
            Some(std::cmp::Ordering::Less) => 2,
            Some(std::cmp::Ordering::Equal) => 1,
            _ => 0,
        };
    }
    Ok(halves as f64 / (2.0 * f64::from(resamples)))
}

/// A seed for a task's bootstrap from its id (FNV-1a, 64 bits): every party that knows the
/// task derives the same one, and no party chooses it.
pub fn task_seed(task_id: &str) -> u64 {
    task_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// G.O.D.'s tournament rule on top of [`crate::score_task`]: with
/// `config.min_winner_confidence` above 0, every ranked miner that the winner does not beat
/// with at least that confidence (`confidence_over[miner]`; a miner without a measured
/// confidence is not beaten) shares first place with it. The first place score is split
/// equally among them (the task pays no more than with one winner); the winner keeps
/// [`ScoreReason::First`], the others get [`ScoreReason::SharedFirst`]. With the default 0,
/// the scores come back unchanged (the classic rule: the lowest loss takes it all).
pub fn share_first_place(
    scores: &[MinerScore],
    confidence_over: &BTreeMap<String, f64>,
    config: &ScoringConfig,
) -> Vec<MinerScore> {
    let mut shared = scores.to_vec();
    let Some(winner) = scores.iter().position(|s| s.reason == ScoreReason::First) else { return shared };
    if config.min_winner_confidence <= 0.0 {
        return shared;
    }
    let not_beaten: Vec<usize> = scores
        .iter()
        .enumerate()
        .filter(|(i, s)| *i != winner && s.rank.is_some())
        .filter(|(_, s)| confidence_over.get(&s.miner_id).is_none_or(|c| *c < config.min_winner_confidence))
        .map(|(i, _)| i)
        .collect();
    if not_beaten.is_empty() {
        return shared;
    }
    let share = config.first_place_score / (not_beaten.len() + 1) as f64;
    shared[winner].score = share;
    for i in not_beaten {
        shared[i].score = share;
        shared[i].rank = Some(1);
        shared[i].reason = ScoreReason::SharedFirst;
    }
    shared
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed generator whose stream is fixed
/// by its seed on every platform, so a bootstrap is reproducible bit for bit.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (multiply-shift: the bias is below n / 2^64).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}
