//! The values scoring reads and writes: task types, one miner's evaluation
//! result, and the score it earned with the reason why.
//!
//! These are plain data (serde, `PartialEq`) so that the ledger can store them
//! and the audit can compare its re-run against the stored output field by field.

use serde::{Deserialize, Serialize};

/// The kind of fine-tuning a task asked for; it decides how losses are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Instruction tuning on text: lower loss is better, ranked on `max(test, synth)`.
    Instruct,
    /// Chat-template tuning on text: ranked like [`TaskType::Instruct`].
    Chat,
    /// Preference (DPO) tuning: ranked like [`TaskType::Instruct`].
    Dpo,
    /// Reward-based (GRPO) tuning: the "loss" is a reward, so higher is better.
    Grpo,
    /// Diffusion (image) tuning: lower loss is better.
    Image,
}

impl TaskType {
    /// Every task type, in declaration order.
    pub const ALL: [TaskType; 5] = [TaskType::Instruct, TaskType::Chat, TaskType::Dpo, TaskType::Grpo, TaskType::Image];

    /// The stable snake_case name, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Instruct => "instruct",
            TaskType::Chat => "chat",
            TaskType::Dpo => "dpo",
            TaskType::Grpo => "grpo",
            TaskType::Image => "image",
        }
    }

    /// The weight group this type is paid from in [`crate::period_weights`].
    ///
    /// Chat is a text instruction task with another prompt format, so it is paid
    /// from the instruct group rather than getting a share of its own.
    pub fn group(self) -> TaskGroup {
        match self {
            TaskType::Instruct | TaskType::Chat => TaskGroup::Instruct,
            TaskType::Dpo => TaskGroup::Dpo,
            TaskType::Grpo => TaskGroup::Grpo,
            TaskType::Image => TaskGroup::Image,
        }
    }

    /// Whether a higher ranking value is better (only GRPO, whose value is a reward).
    pub fn higher_is_better(self) -> bool {
        matches!(self, TaskType::Grpo)
    }
}

/// A group of task types that shares one slice of the period weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskGroup {
    /// Instruct and chat tasks.
    Instruct,
    /// DPO tasks.
    Dpo,
    /// GRPO tasks.
    Grpo,
    /// Image tasks.
    Image,
}

impl TaskGroup {
    /// Every group, in declaration order.
    pub const ALL: [TaskGroup; 4] = [TaskGroup::Instruct, TaskGroup::Dpo, TaskGroup::Grpo, TaskGroup::Image];
}

/// What evaluating one miner's submission produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// The submission was evaluated; `synth_loss` is absent when it was not run on synthetic data.
    Valid {
        /// Loss (or, for GRPO, reward) on the held-out test split.
        test_loss: f64,
        /// Loss (or reward) on the synthetic split, if it was evaluated there.
        synth_loss: Option<f64>,
    },
    /// The submission could not be used (no repository, wrong format, ...).
    Invalid {
        /// Human-readable cause, kept for the record.
        reason: String,
    },
    /// The evaluation itself failed.
    Failed {
        /// Human-readable cause, kept for the record.
        reason: String,
    },
    /// The submission arrived after the deadline.
    Late,
    /// The submission is the base model, not a fine-tune of it.
    NotAFinetune,
}

/// One miner's evaluated submission for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerResult {
    /// The miner (hotkey) that submitted.
    pub miner_id: String,
    /// What the evaluation found.
    pub outcome: Outcome,
    /// Hex SHA-256 of the submitted weights; equal digests mean a copied model.
    pub artifact_sha256: String,
    /// When the submission was received, in Unix milliseconds; the earliest of a set of copies wins.
    pub submitted_at_ms: i64,
}

/// Why a miner got the score it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreReason {
    /// Ranked first among the valid results.
    First,
    /// Valid and ranked, but neither first nor in the penalised bottom.
    Ranked,
    /// Valid but ranked in the bottom quarter of a full pool.
    BottomQuarter,
    /// The submission was invalid.
    Invalid,
    /// The evaluation failed, or produced a test loss that is not a finite number.
    Failed,
    /// The submission was late.
    Late,
    /// The submission was not a fine-tune.
    NotAFinetune,
    /// A copy of an earlier submission (same artifact or identical losses).
    Duplicate,
    /// Valid, but not among the `synth_top_n` best test losses, so neither scored on the
    /// synthetic split nor ranked (G.O.D. "Outside of top-4 test doesn't get scored").
    OutsideTopSynth,
    /// Nobody produced a valid result, so nobody is rewarded or penalised.
    NoValidResults,
    /// Ranked below the winner, but the winner does not beat it with
    /// `min_winner_confidence`: it shares first place ([`crate::share_first_place`]).
    SharedFirst,
}

impl ScoreReason {
    /// The stable snake_case name, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreReason::First => "first",
            ScoreReason::Ranked => "ranked",
            ScoreReason::BottomQuarter => "bottom_quarter",
            ScoreReason::Invalid => "invalid",
            ScoreReason::Failed => "failed",
            ScoreReason::Late => "late",
            ScoreReason::NotAFinetune => "not_a_finetune",
            ScoreReason::Duplicate => "duplicate",
            ScoreReason::OutsideTopSynth => "outside_top_synth",
            ScoreReason::NoValidResults => "no_valid_results",
            ScoreReason::SharedFirst => "shared_first",
        }
    }
}

/// The score one miner earned on one task (G.O.D.'s "quality score").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerScore {
    /// The miner (hotkey).
    pub miner_id: String,
    /// 1-based place among the ranked (valid, non-duplicate) results; `None` for the others.
    pub rank: Option<u32>,
    /// The value the result was ranked on; `None` when it was not ranked.
    pub ranking_loss: Option<f64>,
    /// The quality score: first place, zero, or the penalty.
    pub score: f64,
    /// Why the miner got this score.
    pub reason: ScoreReason,
}
