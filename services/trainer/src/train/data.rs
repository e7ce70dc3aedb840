//! A task's training rows as tokenized items, with a validation slice carved from them.

use gradients_data::{Row, TaskType};
use gradients_text::{dpo_pair, sft_example, Example, Tokenizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::TrainError;

/// One training item.
#[derive(Debug, Clone)]
pub enum Item {
    /// Supervised: learn the answer tokens.
    Supervised(Example),
    /// Preference: prefer the chosen answer over the rejected one.
    Preference { chosen: Example, rejected: Example },
}

/// Tokenized training and validation items.
#[derive(Debug, Clone)]
pub struct TrainData {
    pub task_type: TaskType,
    pub train: Vec<Item>,
    pub validation: Vec<Item>,
}

/// Validation rows: 10% of the training rows, at least 2, at most 200.
fn validation_size(rows: usize) -> usize {
    (rows / 10).clamp(2, 200)
}

/// Tokenizes `rows` and holds back a seeded validation slice. The evaluator's test split
/// is never seen here; this slice only guides early stopping and strategy choices.
pub fn prepare(
    rows: &[Row],
    task_type: TaskType,
    tokenizer: &Tokenizer,
    max_len: usize,
    seed: u64,
) -> Result<TrainData, TrainError> {
    if rows.len() < 4 {
        return Err(TrainError::TooFewRows { rows: rows.len(), minimum: 4 });
    }
    let mut items =
        rows.iter()
            .enumerate()
            .map(|(i, row)| match task_type {
                TaskType::Dpo => dpo_pair(tokenizer, i + 1, row, max_len)
                    .map(|(chosen, rejected)| Item::Preference { chosen, rejected }),
                _ => sft_example(tokenizer, task_type, i + 1, row, max_len).map(Item::Supervised),
            })
            .collect::<Result<Vec<_>, _>>()?;
    items.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let validation = items.split_off(items.len() - validation_size(items.len()));
    Ok(TrainData { task_type, train: items, validation })
}
