//! Scoring for Gradients as a pure, deterministic function.
//!
//! The ledger service calls it to decide who gets paid; the audit re-runs it on
//! the stored inputs to verify every reward. So it does no I/O, reads no clock
//! (callers pass `now_ms`), uses no randomness, and never depends on the order
//! of its inputs: the same inputs give the same bits.
//!
//! The rules follow rayonlabs/G.O.D at commit 5aef5936 (`validator/evaluation/scoring.py`,
//! `validator/db/sql/submissions_and_scoring.py`, `validator/core/constants.py`,
//! `validator/core/weight_setting.py`) where they are the market's rules, and deviate on
//! purpose where G.O.D. crashes, pays a bug, or applies the economics of its chain. Every
//! constant is a field of [`ScoringConfig`], whose docs name the G.O.D. constant it mirrors.
//! The README's "Scoring rules" section is the same list for readers of the market's contract.
//!
//! # Scoring one task: [`score_task`]
//!
//! * (ours) A valid result whose test loss is NaN **or infinite** counts as failed; G.O.D.
//!   fails only NaN ("Invalid test loss") and would rank a `-inf` loss first. A synth loss
//!   that is not a finite number counts as absent, where G.O.D. asserts.
//! * (ours) Among valid results, a later copy of an earlier one — the same artifact digest,
//!   or exactly equal `(test, synth)` losses (G.O.D. `group_by_losses`; not for GRPO, whose
//!   mean rewards distinct models often share) — is a duplicate; the
//!   earliest submission wins, ties broken by miner id. G.O.D. groups by equal losses only,
//!   breaks ties by model hash and list order, and compares placeholder losses too.
//! * (G.O.D., `_evaluate_submissions`) Only the `synth_top_n` (4) best test losses (highest
//!   rewards for GRPO) are ranked; the other valid results get 0, unranked
//!   ([`ScoreReason::OutsideTopSynth`]). Duplicates are removed first (ours: in G.O.D. a copy
//!   can take one of the four places).
//! * (G.O.D., `calculate_miner_ranking_and_scores`, `calculate_weighted_loss`,
//!   `_is_synth_loss_valid_for_group`) The rest are ranked. Instruct, chat and DPO rank on
//!   `max(test, synth)`, lower is better. GRPO ranks on a reward, higher is better; image on a
//!   loss, lower is better; both rank on `grpo_test_weight * test + (1 - grpo_test_weight) *
//!   synth` when the group's synth losses are sane, else on the test loss alone. (ours) A
//!   result without a synth loss is ranked on its test loss; ties go to the earlier
//!   submission, then the smaller miner id.
//! * (G.O.D.) First place gets `first_place_score`, other ranked results 0. When more than
//!   `min_ideal_miners_in_pool` results are ranked, the bottom
//!   `max(1, floor(n * bottom_penalty_fraction))` get `score_penalty` — with the top-4 rule
//!   this never fires under the defaults, as in G.O.D.
//! * (G.O.D.) Invalid, failed, not-a-fine-tune and duplicate results get `score_penalty`,
//!   unless no result is valid at all: then everyone gets 0. (ours) Late is a failure too.
//!
//! # Confidence: [`paired_bootstrap_confidence`] and [`share_first_place`]
//!
//! (G.O.D.'s tournament) How sure is it that the winner beats another miner on the same
//! hidden rows: a seeded paired bootstrap over the per-row losses. With
//! `min_winner_confidence` above 0 (default 0, the classic rule), first place is shared
//! among the miners the winner does not beat with at least that confidence.
//!
//! # Paying over time: [`task_work`] and [`period_weights`]
//!
//! A task's work grows with its duration and model size in whole billions (G.O.D.
//! `get_task_work_score`). Each miner's quality scores that are `>= 1` or `< 0` (G.O.D.
//! `get_aggregate_scores_since`) are combined, per look-back window and task-type group, into
//! a period score (`Σ quality × work × mean quality`), normalised with a sigmoid (G.O.D.
//! `calculate_node_quality_scores`, `_normalise_scores`), and weighted; the weights of all
//! miners add up to 1. Left out, as the chain's economics rather than the market's: the
//! organic/synthetic split of each type's weight, zeroing "suspicious" miners, burning a
//! share of the weights, re-evaluating tasks where everyone scored 0. (ours) Tasks stamped
//! after `now` are ignored; G.O.D. counts them.

mod confidence;
mod config;
mod model;
mod period;
mod task;
mod work;

pub use confidence::{paired_bootstrap_confidence, share_first_place, task_seed, PairingError};
pub use config::{Period, ScoringConfig, ScoringConfigError, TypeWeights};
pub use model::{MinerResult, MinerScore, Outcome, ScoreReason, TaskGroup, TaskType};
pub use period::{period_weights, MinerWeight, ScoredTask};
pub use task::score_task;
pub use work::task_work;

#[cfg(test)]
mod tests;
