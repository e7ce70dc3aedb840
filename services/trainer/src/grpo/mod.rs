//! GRPO: group relative policy optimisation (DeepSeekMath, arXiv 2402.03300, §4.1), how a
//! miner learns a task scored by reward functions instead of reference answers.
//!
//! - [`objective`]: group-normalised advantages, the clipped policy-ratio surrogate, the
//!   k3 KL penalty to the frozen start model;
//! - [`data`]: the task's rows as templated prompts, with a validation slice;
//! - [`rollout`]: G sampled completions per prompt ([`crate::generate`]), scored by the
//!   task's weighted reward functions ([`gradients_reward`], the evaluator's own code);
//! - [`run`]: a resumable run (AdamW, warm-up and schedule, LoRA or full fine-tuning),
//!   validated by the mean reward of greedy completions, as the evaluator scores;
//! - [`search`]: the strategies: G.O.D.'s recipe, or a short probe of learning rate and β
//!   whose best candidate continues for the rest of the budget.

pub mod data;
pub mod hyper;
pub mod objective;
pub mod report;
pub mod rollout;
pub mod run;
pub mod search;

pub use data::{prepare, GrpoData, Prompt};
pub use hyper::GrpoHyperparameters;
pub use report::GrpoReport;
pub use rollout::{Generator, Rollout};
pub use run::{GrpoRecord, GrpoRun};
pub use search::{run as run_strategy, GrpoContext, GrpoOutcome, GrpoStrategy, GrpoTrial};

use crate::train::TrainError;

/// New tokens per completion, unless a strategy is told otherwise: the evaluator's
/// default `evaluator.grpo_max_new_tokens`, so that a miner learns to answer within what
/// it is scored on.
pub fn default_max_new_tokens() -> usize {
    gradients_config::EvaluatorSettings::default().grpo_max_new_tokens
}

/// Why GRPO training could not run.
#[derive(Debug, thiserror::Error)]
pub enum GrpoError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error("reward functions: {0}")]
    Rewards(#[from] gradients_reward::SpecError),
    #[error("row {row}: {source}")]
    Row { row: usize, source: gradients_reward::ColumnError },
    #[error("generation: {0}")]
    Generate(#[from] crate::generate::GenerateError),
}
