//! Pretraining the project's own small base models on a generated corpus.
//!
//! There is no pretrained model to download here, and a market needs a base that half
//! knows some tasks: a preset decoder trained briefly, next-token on every token, on
//! `gradients_taskgen`'s corpus (which demonstrates some task families and not others).

use gradients_data::TaskType;
use gradients_model::ModelConfig;
use gradients_text::{lm_examples, Tokenizer};
use indicatif::ProgressBar;
use serde::Serialize;
use tch::Device;

use crate::model::CausalLm;
use crate::train::{Hyperparameters, Item, Progress, Run, RunRecord, Schedule, TrainData, TrainError};

/// How to pretrain.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainPlan {
    pub steps: u64,
    pub sequence_len: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for PretrainPlan {
    fn default() -> Self {
        Self { steps: 600, sequence_len: 128, batch_size: 16, learning_rate: 2e-3, seed: 1 }
    }
}

/// Trains a fresh `config` model on `corpus` (lines are documents). A twentieth of the
/// windows is held out to report validation loss.
pub fn pretrain(
    config: &ModelConfig,
    tokenizer: &Tokenizer,
    corpus: &str,
    plan: &PretrainPlan,
    device: Device,
    bar: &ProgressBar,
) -> Result<(CausalLm, RunRecord), TrainError> {
    let documents: Vec<&str> = corpus.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut windows: Vec<Item> = lm_examples(tokenizer, &documents, plan.sequence_len.min(config.max_positions()))?
        .into_iter()
        .map(Item::Supervised)
        .collect();
    if windows.len() < 4 {
        return Err(TrainError::TooFewRows { rows: windows.len(), minimum: 4 });
    }
    let validation = windows.split_off(windows.len() - (windows.len() / 20).clamp(1, 64));
    let data = TrainData { task_type: TaskType::Instruct, train: windows, validation };
    let hyper = Hyperparameters {
        learning_rate: plan.learning_rate,
        epochs: f64::INFINITY,
        batch_size: plan.batch_size,
        gradient_accumulation: 1,
        warmup_ratio: 0.05,
        schedule: Schedule::Cosine,
        weight_decay: 0.1,
        max_grad_norm: 1.0,
        seed: plan.seed,
        lora: None,
        dpo_beta: 0.1,
        max_len: plan.sequence_len,
        eval_every: (plan.steps / 5).max(1),
        patience: None,
    };
    let model = CausalLm::new(config, device, plan.seed as i64);
    let mut run = Run::new(model, None, hyper, plan.steps, tokenizer.pad_id(), &data)?;
    bar.set_length(plan.steps);
    while let Progress::Running = run.advance(&data, plan.steps, None, bar)? {}
    Ok(run.finish(&data))
}
