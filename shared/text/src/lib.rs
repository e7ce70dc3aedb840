//! Text to training examples, one definition for the whole market.
//!
//! The trainer learns on, and the evaluator scores, the same thing: the cross-entropy of a
//! model's predictions on the *answer* tokens of a templated row, the prompt masked out.
//! Everything that decides that number lives here:
//! - [`Tokenizer`]: a `tokenizer.json` read with the `tokenizers` crate, or the byte-level
//!   tokenizer of the project's own small models (written as a `tokenizer.json` too, so a
//!   model folder always has one and there is one code path);
//! - [`template`]: how a row of each task type becomes prompt and answer text;
//! - [`Example`]: token ids with a per-token "is an answer token" mask, truncation, and
//!   right-padded batches ([`Batch`]);
//! - [`loss`]: the answer-only negative log-likelihood on plain `f32` logits, the reference
//!   the trainer's tensor code is tested against and the evaluator computes directly.

mod example;
pub mod loss;
pub mod template;
mod tokenizer;

pub use example::{dpo_pair, grpo_prompt_ids, lm_examples, sft_example, Batch, Example};
pub use loss::LossSum;
pub use tokenizer::Tokenizer;

/// The longest example (prompt and answer, in tokens) that training builds and evaluation
/// scores, whatever the model accepts: our tasks are short, and the trainer and the
/// evaluator must truncate alike so that a miner optimises what it is scored on.
pub const MAX_EXAMPLE_TOKENS: usize = 256;

/// Why a row or a tokenizer could not be turned into training examples.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("tokenizer.json has no end-of-text token (looked for {0})")]
    NoEndOfText(&'static str),
    #[error("row {row}: column {column:?} is missing or not a string")]
    Column { row: usize, column: &'static str },
    #[error("row {row}: {reason}")]
    Row { row: usize, reason: String },
    #[error("task type {0} has no supervised template (GRPO is trained from rewards, not answers)")]
    Unsupported(gradients_data::TaskType),
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
}
