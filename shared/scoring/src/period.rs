//! Turning a history of scored tasks into each miner's share of the rewards
//! (rayonlabs/G.O.D, `validator/evaluation/scoring.py`,
//! `calculate_node_quality_scores` and `_normalise_scores`, combined over
//! windows and task types as in `validator/core/weight_setting.py`).
//!
//! For every look-back window and task-type group, each miner's record is
//! condensed into one period score, normalised across miners, and weighted by
//! `group weight * window weight`. The result is renormalised so the shares
//! always add up to one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ScoringConfig;
use crate::model::{TaskGroup, TaskType};

/// Milliseconds in a day, to compare task ages with window lengths given in days.
const MS_PER_DAY: f64 = 86_400_000.0;

/// One finished task as the ledger stored it: its work and every miner's quality score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredTask {
    /// The task's id, used only to put the history in a canonical order.
    pub task_id: String,
    /// The task's type; it decides the weight group.
    pub task_type: TaskType,
    /// When scoring finished, in Unix milliseconds.
    pub finished_at_ms: i64,
    /// The task's work score (see [`crate::task_work`]).
    pub work: f64,
    /// `(miner_id, quality score)` for every miner scored on the task (see [`crate::score_task`]).
    pub scores: Vec<(String, f64)>,
}

/// One miner's share of the rewards; the shares of a period add up to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerWeight {
    /// The miner (hotkey).
    pub miner_id: String,
    /// Its share, in `(0, 1]`.
    pub weight: f64,
}

/// A miner's running totals within one window and group (G.O.D. `NodeAggregationResult`).
#[derive(Debug, Default, Clone, Copy)]
struct Aggregate {
    /// Σ quality × work.
    summed_adjusted: f64,
    /// Σ quality, for the mean.
    raw_sum: f64,
    /// Number of quality scores seen.
    count: u32,
}

/// Whether a task that finished at `finished_at_ms` lies inside a window of `days`.
fn in_window(finished_at_ms: i64, now_ms: i64, days: f64) -> bool {
    // i128 so that extreme timestamps cannot overflow the subtraction.
    let age_ms = i128::from(now_ms) - i128::from(finished_at_ms);
    age_ms >= 0 && (age_ms as f64) < days * MS_PER_DAY
}

/// Whether a quality score enters a miner's period aggregate: G.O.D. keeps only scores
/// `>= 1` or `< 0` (`get_aggregate_scores_since`), so a 0 neither adds nor lowers the mean;
/// the bound is `min_counted_positive_score`. A score that is not a finite number never counts:
/// a corrupt row must not poison everyone's share with a NaN.
fn counts(quality: f64, config: &ScoringConfig) -> bool {
    quality.is_finite() && (quality < 0.0 || quality >= config.min_counted_positive_score)
}

/// Period score of every miner in `tasks` (G.O.D. `calculate_node_quality_scores`):
/// `Σ quality × work × mean(quality)` over the scores that [`counts`], or 0 when the mean is
/// negative, so a miner cannot gain from a negative record times negative work sums.
fn period_scores<'a>(tasks: &[&'a ScoredTask], config: &ScoringConfig) -> BTreeMap<&'a str, f64> {
    let mut aggregates: BTreeMap<&str, Aggregate> = BTreeMap::new();
    for task in tasks {
        for (miner, quality) in &task.scores {
            if !counts(*quality, config) {
                continue;
            }
            let a = aggregates.entry(miner.as_str()).or_default();
            a.summed_adjusted += quality * task.work;
            a.raw_sum += quality;
            a.count += 1;
        }
    }
    aggregates
        .into_iter()
        .map(|(miner, a)| {
            let mean = a.raw_sum / f64::from(a.count.max(1));
            let score = if mean < 0.0 { 0.0 } else { a.summed_adjusted * mean };
            // Saturate instead of overflowing, so the normalisation below stays finite.
            let score = if score.is_nan() { 0.0 } else { score.clamp(-f64::MAX, f64::MAX) };
            (miner, score)
        })
        .collect()
}

/// G.O.D. `_normalise_scores`: spread period scores on a sigmoid of `score / best`
/// plus a small linear part, then scale them to sum to 1.
///
/// Returns nothing when no score is positive (the window and group then pay nobody).
fn normalise<'a>(scores: &BTreeMap<&'a str, f64>, config: &ScoringConfig) -> Vec<(&'a str, f64)> {
    let max = scores.values().copied().fold(f64::NEG_INFINITY, f64::max);
    if max.is_nan() || max <= 0.0 {
        return Vec::new();
    }
    let shaped: Vec<(&str, f64)> = scores
        .iter()
        .map(|(&miner, &score)| {
            if score <= 0.0 {
                return (miner, 0.0);
            }
            let x = score / max;
            let sigmoid = 1.0 / (1.0 + (-config.sigmoid_steepness * (x - config.sigmoid_shift)).exp());
            (miner, config.sigmoid_weight * sigmoid.powf(config.sigmoid_power) + config.linear_weight * x)
        })
        .collect();
    let total: f64 = shaped.iter().map(|(_, s)| s).sum();
    if total.is_nan() || total <= 0.0 || total.is_infinite() {
        return Vec::new();
    }
    shaped.into_iter().map(|(miner, s)| (miner, s / total)).collect()
}

/// Each miner's share of the rewards at `now_ms`; see the crate docs for the rules.
///
/// A window holds the tasks with `0 <= now_ms - finished_at_ms < days`; tasks from
/// the future and tasks whose work is not a finite number are ignored, as are
/// quality scores that are not finite numbers and those in `[0, min_counted_positive_score)`. A miner's weight is
/// `Σ group_weight × window_weight × normalised score` over the windows and groups
/// in which somebody scored above zero, divided by the sum of those
/// `group_weight × window_weight`. That last division is why the shares always
/// add up to 1: a market that ran no image tasks this week must still pay out
/// everything, not hold back the image share. Chat tasks count in the instruct group.
///
/// Returns the miners with a positive weight, by miner id; empty when nobody scored above zero.
/// The order of `history` does not matter (tasks are summed in `finished_at_ms`, `task_id` order).
pub fn period_weights(history: &[ScoredTask], now_ms: i64, config: &ScoringConfig) -> Vec<MinerWeight> {
    let mut tasks: Vec<&ScoredTask> = history.iter().filter(|t| t.work.is_finite()).collect();
    // A fixed summation order, so that the floats do not depend on how the caller listed the history.
    tasks.sort_by(|a, b| {
        a.finished_at_ms
            .cmp(&b.finished_at_ms)
            .then_with(|| a.task_id.cmp(&b.task_id))
            .then_with(|| a.task_type.cmp(&b.task_type))
            .then_with(|| a.work.total_cmp(&b.work))
    });

    let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
    let mut paid_share = 0.0;
    for period in &config.periods {
        for group in TaskGroup::ALL {
            let share = config.type_weights.get(group) * period.weight;
            if share.is_nan() || share <= 0.0 || share.is_infinite() {
                continue;
            }
            let selected: Vec<&ScoredTask> = tasks
                .iter()
                .copied()
                .filter(|t| t.task_type.group() == group && in_window(t.finished_at_ms, now_ms, period.days))
                .collect();
            let normalised = normalise(&period_scores(&selected, config), config);
            if normalised.is_empty() {
                continue;
            }
            paid_share += share;
            for (miner, s) in normalised {
                *totals.entry(miner).or_default() += share * s;
            }
        }
    }

    if paid_share.is_nan() || paid_share <= 0.0 {
        return Vec::new();
    }
    totals
        .into_iter()
        .map(|(miner, total)| MinerWeight { miner_id: miner.to_owned(), weight: total / paid_share })
        .filter(|w| w.weight > 0.0)
        .collect()
}
