//! A GRPO task's rows as prompts to sample from, with a validation slice carved from them.

use gradients_data::Row;
use gradients_reward::RewardSet;
use gradients_text::{grpo_prompt_ids, Tokenizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::GrpoError;
use crate::train::TrainError;

/// One row to generate completions for.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The templated prompt's token ids ([`gradients_text::grpo_prompt_ids`]).
    pub ids: Vec<u32>,
    /// The row's own `prompt` text: what the reward functions see.
    pub text: String,
    /// The whole row: the reward functions read their reference columns from it.
    pub row: Row,
}

/// Prompts to train on and to validate on.
#[derive(Debug, Clone)]
pub struct GrpoData {
    pub train: Vec<Prompt>,
    pub validation: Vec<Prompt>,
}

/// Validation prompts: 10% of the rows, at least 2, at most 64 (every validation
/// generates a completion for each of them).
fn validation_size(rows: usize) -> usize {
    (rows / 10).clamp(2, 64)
}

/// Tokenizes the prompts of `rows` (each at most `max_prompt_tokens`), checks every row
/// against the reward functions' columns, and holds back a seeded validation slice.
pub fn prepare(
    rows: &[Row],
    rewards: &RewardSet,
    tokenizer: &Tokenizer,
    max_prompt_tokens: usize,
    seed: u64,
) -> Result<GrpoData, GrpoError> {
    if rows.len() < 4 {
        return Err(TrainError::TooFewRows { rows: rows.len(), minimum: 4 }.into());
    }
    let mut prompts = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            rewards.check_row(row.as_map()).map_err(|source| GrpoError::Row { row: i + 1, source })?;
            let ids = grpo_prompt_ids(tokenizer, i + 1, row, max_prompt_tokens).map_err(TrainError::from)?;
            let text = row.get_str("prompt").unwrap_or_default().to_owned();
            Ok(Prompt { ids, text, row: row.clone() })
        })
        .collect::<Result<Vec<_>, GrpoError>>()?;
    prompts.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let validation = prompts.split_off(prompts.len() - validation_size(prompts.len()));
    Ok(GrpoData { train: prompts, validation })
}
