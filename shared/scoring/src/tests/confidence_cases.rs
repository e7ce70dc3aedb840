//! The paired bootstrap and the shared first place on fixed inputs with answers computed by
//! hand (the probabilities below are exact; a seeded bootstrap of many resamples lands
//! within a few standard errors of them, and on exactly the same value every run).

use std::collections::BTreeMap;

use crate::confidence::{paired_bootstrap_confidence, share_first_place, task_seed, PairingError};
use crate::{MinerScore, ScoreReason, ScoringConfig};

const RESAMPLES: u32 = 20_000;

/// Standard error of a share estimated from `RESAMPLES` draws with probability `p`, times 4.
fn tolerance(p: f64) -> f64 {
    4.0 * (p * (1.0 - p) / f64::from(RESAMPLES)).sqrt()
}

/// Better on every row: every resample agrees; worse on every row: none does.
#[test]
fn dominance_is_certain() {
    let winner = [1.0, 2.0, 0.5, 3.0];
    let other = [1.5, 2.5, 0.75, 3.5];
    assert_eq!(paired_bootstrap_confidence(&winner, &other, RESAMPLES, 7), Ok(1.0));
    assert_eq!(paired_bootstrap_confidence(&other, &winner, RESAMPLES, 7), Ok(0.0));
    assert_eq!(paired_bootstrap_confidence(&[2.0], &[3.0], 1, 0), Ok(1.0));
}

/// The same losses on every row: every resample is a tie, so the confidence is one half.
#[test]
fn identical_models_are_a_coin_flip() {
    let losses = [1.0, 2.0, 3.0];
    assert_eq!(paired_bootstrap_confidence(&losses, &losses, RESAMPLES, 1), Ok(0.5));
}

/// Differences (-1, +3): a resample of two rows sums below 0 only when both draws are the
/// first row, probability 1/4, and never to exactly 0.
#[test]
fn two_rows_by_hand() {
    let confidence = paired_bootstrap_confidence(&[1.0, 4.0], &[2.0, 1.0], RESAMPLES, 42).unwrap();
    assert!((confidence - 0.25).abs() < tolerance(0.25), "{confidence}");
}

/// Differences (-2, +1, +1): with k draws of the first row among three, the sum is 3 - 3k:
/// below 0 for k >= 2 (7/27), exactly 0 for k = 1 (12/27, counted half): 13/27.
#[test]
fn three_rows_by_hand() {
    let confidence = paired_bootstrap_confidence(&[0.0, 2.0, 2.0], &[2.0, 1.0, 1.0], RESAMPLES, 9).unwrap();
    let expected = 13.0 / 27.0;
    assert!((confidence - expected).abs() < tolerance(expected), "{confidence} vs {expected}");
}

/// Seeded: the same inputs and seed give the same bits; the seed of a task is fixed by its id.
#[test]
fn reproducible() {
    let winner = [0.9, 1.1, 1.0, 0.7, 1.4, 0.95];
    let other = [1.0, 1.0, 1.05, 0.9, 1.3, 1.0];
    let a = paired_bootstrap_confidence(&winner, &other, 1000, task_seed("task-1")).unwrap();
    let b = paired_bootstrap_confidence(&winner, &other, 1000, task_seed("task-1")).unwrap();
    assert_eq!(a.to_bits(), b.to_bits());
    assert_eq!(task_seed("task-1"), task_seed("task-1"));
    assert_ne!(task_seed("task-1"), task_seed("task-2"));
    // FNV-1a's offset basis for the empty string.
    assert_eq!(task_seed(""), 0xcbf2_9ce4_8422_2325);
}

/// Rows that cannot be paired are an error, never a number.
#[test]
fn unpaired_rows_are_refused() {
    assert_eq!(
        paired_bootstrap_confidence(&[1.0], &[1.0, 2.0], 10, 0),
        Err(PairingError::DifferentRows { winner: 1, other: 2 })
    );
    assert_eq!(paired_bootstrap_confidence(&[], &[], 10, 0), Err(PairingError::NoRows));
    assert_eq!(
        paired_bootstrap_confidence(&[1.0, f64::NAN], &[1.0, 2.0], 10, 0),
        Err(PairingError::NotFinite { row: 1 })
    );
    assert_eq!(paired_bootstrap_confidence(&[1.0], &[2.0], 0, 0), Err(PairingError::NoResamples));
}

fn ranked(id: &str, rank: u32, score: f64, reason: ScoreReason) -> MinerScore {
    MinerScore { miner_id: id.into(), rank: Some(rank), ranking_loss: Some(f64::from(rank)), score, reason }
}

fn scores() -> Vec<MinerScore> {
    vec![
        ranked("a", 1, 3.0, ScoreReason::First),
        ranked("b", 2, 0.0, ScoreReason::Ranked),
        ranked("c", 3, 0.0, ScoreReason::Ranked),
        MinerScore { miner_id: "d".into(), rank: None, ranking_loss: None, score: -1.0, reason: ScoreReason::Invalid },
    ]
}

/// The classic rule (0): the winner takes first place whatever the confidences.
#[test]
fn zero_threshold_changes_nothing() {
    let confidences = BTreeMap::from([("b".to_owned(), 0.5), ("c".to_owned(), 0.6)]);
    assert_eq!(share_first_place(&scores(), &confidences, &ScoringConfig::default()), scores());
}

/// At 0.9: the winner beats c with 0.95 but b only with 0.7, so a and b share 3.0 (1.5
/// each); c keeps 0, the invalid d keeps its penalty.
#[test]
fn first_place_is_shared_below_the_threshold() {
    let config = ScoringConfig { min_winner_confidence: 0.9, ..ScoringConfig::default() };
    let confidences = BTreeMap::from([("b".to_owned(), 0.7), ("c".to_owned(), 0.95)]);
    let shared = share_first_place(&scores(), &confidences, &config);
    assert_eq!(shared[0], ranked("a", 1, 1.5, ScoreReason::First));
    let b = MinerScore { rank: Some(1), score: 1.5, reason: ScoreReason::SharedFirst, ..scores()[1].clone() };
    assert_eq!(shared[1], b);
    assert_eq!(shared[2], scores()[2]);
    assert_eq!(shared[3], scores()[3]);
    // A miner without a measured confidence is not beaten: it shares too (3.0 / 3 each).
    let shared = share_first_place(&scores(), &BTreeMap::from([("b".to_owned(), 0.7)]), &config);
    assert_eq!(shared.iter().map(|s| s.score).collect::<Vec<_>>(), vec![1.0, 1.0, 1.0, -1.0]);
    // Beaten with enough confidence everywhere: unchanged.
    let sure = BTreeMap::from([("b".to_owned(), 0.9), ("c".to_owned(), 0.99)]);
    assert_eq!(share_first_place(&scores(), &sure, &config), scores());
}
