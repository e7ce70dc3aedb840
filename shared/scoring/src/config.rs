//! Every number the scoring rules use, as one serde-loadable configuration.
//!
//! Nothing in this crate hard-codes a scoring constant: the ledger and the audit
//! must agree on the exact same values, so they both load one [`ScoringConfig`]
//! (missing fields take the documented default, unknown fields are an error so a
//! typo cannot silently fall back to a default). Each field names the G.O.D.
//! constant it mirrors (rayonlabs/G.O.D, `validator/core/constants.py` unless
//! said otherwise). The defaults are the values this market pays with; G.O.D.
//! has changed several of its own values over time, so they are not guaranteed
//! to equal any one G.O.D. commit.

use serde::{Deserialize, Serialize};

use crate::model::TaskGroup;

/// All scoring parameters; `ScoringConfig::default()` is the production setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Score of the best valid result on a task. Default 3.0 (G.O.D. `FIRST_PLACE_SCORE`).
    pub first_place_score: f64,
    /// Score of penalised results (bad submissions, bottom quarter). Default -1.0 (G.O.D. `SCORE_PENALTY`).
    pub score_penalty: f64,
    /// The bottom of the ranking is only penalised when more valid results than this exist.
    /// Default 8 (G.O.D. `MIN_IDEAL_NUM_MINERS_IN_POOL`).
    pub min_ideal_miners_in_pool: u32,
    /// Share of a full pool, from the bottom, that gets the penalty (at least one, never the winner).
    /// Default 0.25 (the literal `0.25` in G.O.D. `calculate_miner_ranking_and_scores`).
    pub bottom_penalty_fraction: f64,
    /// Weight of the test loss in GRPO and image ranking; the synth loss gets the rest.
    /// Default 0.7 (G.O.D. `TEST_SCORE_WEIGHTING`).
    pub grpo_test_weight: f64,
    /// A synth loss counts as sane when `synth / test` is at most this.
    /// Default 1.5 (the `max_ratio` default of G.O.D. `_is_synth_loss_valid_for_group`).
    pub synth_valid_max_ratio: f64,
    /// Synth losses are used when at least this share of them is sane.
    /// Default 0.4 (the `threshold` default of G.O.D. `_is_synth_loss_valid_for_group`).
    pub synth_valid_threshold: f64,
    /// Synth losses at or above this are placeholders ("not evaluated on synth"), not real values.
    /// Default 999.0 (the literal `999.0` in G.O.D. `_is_synth_loss_valid_for_group`).
    pub synth_loss_ceiling: f64,
    /// Only this many of the best valid results by test loss are scored on the synthetic split
    /// and ranked; the others get 0, unranked ([`crate::ScoreReason::OutsideTopSynth`]).
    /// Default 4 (the `test_losses[:4]` in G.O.D. `_evaluate_submissions`, whose placeholder synth
    /// loss of 1000.0 makes `calculate_miner_ranking_and_scores` skip the rest). 0 ranks every
    /// valid result.
    pub synth_top_n: u32,
    /// Smallest model size, in billions of parameters, a task's work is counted at.
    /// Default 1.0 (the `max(1, ...)` in G.O.D. `get_task_work_score`).
    pub min_model_billions: f64,
    /// Largest model size, in billions of parameters, a task's work is counted at.
    /// Default 40.0 (the `min(40, ...)` in G.O.D. `get_task_work_score`).
    pub max_model_billions: f64,
    /// Largest model size read from a model's name (`...-7B`) when its parameter count is
    /// unknown. Default 8.0 (the `min(8, ...)` in G.O.D. `get_task_work_score`).
    pub max_name_billions: f64,
    /// Multiplier of `sqrt(hours * billions)` in the task work.
    /// Default 2.0 (the `2 *` in G.O.D. `get_task_work_score`).
    pub task_work_scale: f64,
    /// Least work any task counts for, also used when the duration is unusable.
    /// Default 1.0 (the `max(1, ...)` and failsafe `return 1` in G.O.D. `get_task_work_score`).
    pub min_task_work: f64,
    /// Look-back windows and their weights. Default 1 day 0.3, 3 days 0.3, 7 days 0.4
    /// (G.O.D. `ONE_DAY_SCORE_WEIGHT`, `THREE_DAY_SCORE_WEIGHT`, `SEVEN_DAY_SCORE_WEIGHT`).
    pub periods: Vec<Period>,
    /// Share of the weights paid through each task-type group (G.O.D. `*_TASK_SCORE_WEIGHT`).
    pub type_weights: TypeWeights,
    /// Quality scores in `[0, this)` do not enter a miner's period aggregate (neither its sum
    /// nor its mean), so a task that paid a miner nothing does not lower its mean.
    /// Default 1.0 (the filter `quality_score >= 1 OR quality_score < 0` in G.O.D.
    /// `validator/db/sql/submissions_and_scoring.py`, `get_aggregate_scores_since`).
    /// 0 counts every score.
    pub min_counted_positive_score: f64,
    /// Steepness of the normalisation sigmoid. Default 9.0 (G.O.D. `SIGMOID_STEEPNESS`).
    pub sigmoid_steepness: f64,
    /// Centre of the normalisation sigmoid, on the 0..1 scale of score / best score.
    /// Default 0.5 (G.O.D. `SIGMOID_SHIFT`).
    pub sigmoid_shift: f64,
    /// Exponent applied to the sigmoid. Default 0.75 (G.O.D. `SIGMOID_POWER`).
    pub sigmoid_power: f64,
    /// Weight of the sigmoid part of a normalised score. Default 0.7 (G.O.D. `SIGMOID_WEIGHT`).
    pub sigmoid_weight: f64,
    /// Weight of the linear part of a normalised score. Default 0.05 (G.O.D. `LINEAR_WEIGHT`).
    pub linear_weight: f64,
    /// G.O.D.'s tournament rule: first place is shared (its score split equally) among the
    /// winner and every ranked miner the winner does not beat with at least this paired
    /// bootstrap confidence on the test rows ([`crate::share_first_place`]). Default 0: the
    /// classic rule, the lowest ranking loss takes first place alone.
    pub min_winner_confidence: f64,
    /// Resamples of the paired bootstrap ([`crate::paired_bootstrap_confidence`]). Default
    /// 10000: the confidence's standard error is then at most 0.005.
    pub bootstrap_resamples: u32,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            first_place_score: 3.0,
            score_penalty: -1.0,
            min_ideal_miners_in_pool: 8,
            bottom_penalty_fraction: 0.25,
            grpo_test_weight: 0.7,
            synth_valid_max_ratio: 1.5,
            synth_valid_threshold: 0.4,
            synth_loss_ceiling: 999.0,
            synth_top_n: 4,
            min_model_billions: 1.0,
            max_model_billions: 40.0,
            max_name_billions: 8.0,
            task_work_scale: 2.0,
            min_task_work: 1.0,
            periods: vec![
                Period { days: 1.0, weight: 0.3 },
                Period { days: 3.0, weight: 0.3 },
                Period { days: 7.0, weight: 0.4 },
            ],
            type_weights: TypeWeights::default(),
            min_counted_positive_score: 1.0,
            sigmoid_steepness: 9.0,
            sigmoid_shift: 0.5,
            sigmoid_power: 0.75,
            sigmoid_weight: 0.7,
            linear_weight: 0.05,
            min_winner_confidence: 0.0,
            bootstrap_resamples: 10_000,
        }
    }
}

/// One look-back window: tasks finished less than `days` ago count, with `weight`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// Length of the window in days (fractions allowed).
    pub days: f64,
    /// Share of the weights this window pays.
    pub weight: f64,
}

/// Share of the weights each task-type group pays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TypeWeights {
    /// Instruct and chat tasks. Default 0.35 (G.O.D. `INSTRUCT_TEXT_TASK_SCORE_WEIGHT`).
    pub instruct: f64,
    /// GRPO tasks. Default 0.30 (G.O.D. `GRPO_TASK_SCORE_WEIGHT`).
    pub grpo: f64,
    /// Image tasks. Default 0.20 (G.O.D. `IMAGE_TASK_SCORE_WEIGHT`).
    pub image: f64,
    /// DPO tasks. Default 0.15 (G.O.D. `DPO_TASK_SCORE_WEIGHT`).
    pub dpo: f64,
}

impl Default for TypeWeights {
    fn default() -> Self {
        TypeWeights { instruct: 0.35, grpo: 0.30, image: 0.20, dpo: 0.15 }
    }
}

impl TypeWeights {
    /// The weight of one group.
    pub fn get(&self, group: TaskGroup) -> f64 {
        match group {
            TaskGroup::Instruct => self.instruct,
            TaskGroup::Dpo => self.dpo,
            TaskGroup::Grpo => self.grpo,
            TaskGroup::Image => self.image,
        }
    }
}

/// A configuration value the scoring rules cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoringConfigError {
    /// A field holds a value outside its allowed range.
    #[error("scoring config: {field} = {value} is invalid, it must be {expected}")]
    OutOfRange {
        /// The field, as a path such as `periods[1].days`.
        field: String,
        /// The offending value (for sums, the sum).
        value: f64,
        /// The rule it broke, in words.
        expected: &'static str,
    },
    /// A list that needs entries is empty.
    #[error("scoring config: {field} must not be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
}

/// Checks one value against a rule, naming the field when it fails.
fn check(field: &str, value: f64, ok: bool, expected: &'static str) -> Result<(), ScoringConfigError> {
    // `ok` is computed by the caller, but NaN must fail every rule whatever the comparison said.
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(ScoringConfigError::OutOfRange { field: field.to_owned(), value, expected })
    }
}

impl ScoringConfig {
    /// Checks that every value is usable; the first problem found is returned.
    ///
    /// The scoring functions never panic on a bad configuration, but their output
    /// would be meaningless, so services should refuse to start with one.
    pub fn validate(&self) -> Result<(), ScoringConfigError> {
        let c = self;
        check("first_place_score", c.first_place_score, c.first_place_score > 0.0, "> 0")?;
        check("score_penalty", c.score_penalty, c.score_penalty <= 0.0, "<= 0")?;
        // Below 1 so that the winner of a full pool is never also in the penalised bottom.
        let f = c.bottom_penalty_fraction;
        check("bottom_penalty_fraction", f, (0.0..1.0).contains(&f), "in [0, 1)")?;
        let w = c.grpo_test_weight;
        check("grpo_test_weight", w, (0.0..=1.0).contains(&w), "in [0, 1]")?;
        check("synth_valid_max_ratio", c.synth_valid_max_ratio, c.synth_valid_max_ratio > 0.0, "> 0")?;
        let t = c.synth_valid_threshold;
        check("synth_valid_threshold", t, (0.0..=1.0).contains(&t), "in [0, 1]")?;
        check("synth_loss_ceiling", c.synth_loss_ceiling, c.synth_loss_ceiling > 0.0, "> 0")?;
        check("min_model_billions", c.min_model_billions, c.min_model_billions > 0.0, "> 0")?;
        let ok = c.max_model_billions >= c.min_model_billions;
        check("max_model_billions", c.max_model_billions, ok, ">= min_model_billions")?;
        check("max_name_billions", c.max_name_billions, c.max_name_billions >= 0.0, ">= 0")?;
        check("task_work_scale", c.task_work_scale, c.task_work_scale > 0.0, "> 0")?;
        check("min_task_work", c.min_task_work, c.min_task_work > 0.0, "> 0")?;

        if c.periods.is_empty() {
            return Err(ScoringConfigError::Empty { field: "periods" });
        }
        for (i, p) in c.periods.iter().enumerate() {
            check(&format!("periods[{i}].days"), p.days, p.days > 0.0, "> 0")?;
            check(&format!("periods[{i}].weight"), p.weight, p.weight >= 0.0, ">= 0")?;
        }
        let sum: f64 = c.periods.iter().map(|p| p.weight).sum();
        check("periods[*].weight (sum)", sum, sum > 0.0, "> 0")?;

        let tw = &c.type_weights;
        for (name, v) in [
            ("type_weights.instruct", tw.instruct),
            ("type_weights.grpo", tw.grpo),
            ("type_weights.image", tw.image),
            ("type_weights.dpo", tw.dpo),
        ] {
            check(name, v, v >= 0.0, ">= 0")?;
        }
        let sum = tw.instruct + tw.grpo + tw.image + tw.dpo;
        check("type_weights (sum)", sum, sum > 0.0, "> 0")?;

        // Above the first place score, no winner would ever count towards its period weight.
        let m = c.min_counted_positive_score;
        check("min_counted_positive_score", m, m >= 0.0 && m <= c.first_place_score, "in [0, first_place_score]")?;
        check("sigmoid_steepness", c.sigmoid_steepness, c.sigmoid_steepness >= 0.0, ">= 0")?;
        check("sigmoid_shift", c.sigmoid_shift, true, "a finite number")?;
        check("sigmoid_power", c.sigmoid_power, c.sigmoid_power > 0.0, "> 0")?;
        check("sigmoid_weight", c.sigmoid_weight, c.sigmoid_weight >= 0.0, ">= 0")?;
        check("linear_weight", c.linear_weight, c.linear_weight >= 0.0, ">= 0")?;
        // Both zero would make every normalised score zero, so nobody could ever be paid.
        let sum = c.sigmoid_weight + c.linear_weight;
        check("sigmoid_weight + linear_weight", sum, sum > 0.0, "> 0")?;
        let m = c.min_winner_confidence;
        check("min_winner_confidence", m, (0.0..=1.0).contains(&m), "in [0, 1]")?;
        let r = f64::from(c.bootstrap_resamples);
        check("bootstrap_resamples", r, r >= 1.0, ">= 1")?;
        Ok(())
    }
}
