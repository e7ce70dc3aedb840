//! Scoring for Gradients as a pure, deterministic function.
//!
//! The ledger service calls it to decide who gets paid; the audit re-runs it on
//! the stored inputs to verify every reward. So it does no I/O, reads no clock
//! (callers pass `now_ms`), uses no randomness, and never depends on the order
//! of its inputs: the same inputs give the same bits.
//!
//! The rules follow rayonlabs/G.O.D: `validator/evaluation/scoring.py`
//! (`calculate_miner_ranking_and_scores`, `calculate_weighted_loss`,
//! `_is_synth_loss_valid_for_group`, `get_task_work_score`,
//! `calculate_node_quality_scores`, `_normalise_scores`),
//! `validator/core/constants.py` and `validator/core/weight_setting.py`.
//! Every constant is a field of [`ScoringConfig`], whose docs name the G.O.D.
//! constant it mirrors.
//!
//! # Scoring one task: [`score_task`]
//!
//! * A valid result whose test loss is NaN or infinite counts as failed. A synth
//!   loss that is not a finite number counts as absent.
//! * Among valid results, a later copy of an earlier one (same artifact digest,
//!   or exactly equal `(test, synth)` losses) is a duplicate; the earliest
//!   submission wins, ties broken by miner id.
//! * The rest are ranked. Instruct, chat and DPO rank on `max(test, synth)`, lower
//!   is better. GRPO ranks on a reward, higher is better; image on a loss, lower
//!   is better; both rank on `grpo_test_weight * test + (1 - grpo_test_weight) * synth`
//!   when the group's synth losses are sane, else on the test loss alone. Ties go
//!   to the earlier submission, then the smaller miner id.
//! * First place gets `first_place_score`, other ranked results 0. When more than
//!   `min_ideal_miners_in_pool` results are ranked, the bottom
//!   `max(1, floor(n * bottom_penalty_fraction))` get `score_penalty`.
//! * Invalid, failed, late, not-a-fine-tune and duplicate results get
//!   `score_penalty`, unless no result is valid at all: then everyone gets 0.
//!
//! # Paying over time: [`task_work`] and [`period_weights`]
//!
//! A task's work grows with its duration and model size. Each miner's quality
//! scores are combined, per look-back window and task-type group, into a period
//! score (`Σ quality × work × mean quality`), normalised with a sigmoid, and
//! weighted; the weights of all miners add up to 1.

mod config;
mod model;
mod period;
mod task;
mod work;

pub use config::{Period, ScoringConfig, ScoringConfigError, TypeWeights};
pub use model::{MinerResult, MinerScore, Outcome, ScoreReason, TaskGroup, TaskType};
pub use period::{period_weights, MinerWeight, ScoredTask};
pub use task::score_task;
pub use work::task_work;

#[cfg(test)]
mod tests;
