//! Hyperparameters of one training run, the baseline recipe, and the learning-rate schedule.

use serde::{Deserialize, Serialize};

use crate::model::LoraConfig;

/// How the learning rate moves after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Linear decay to zero (AutoTrain's default).
    Linear,
    /// Half-cosine decay to zero.
    Cosine,
    /// Flat after warm-up.
    Constant,
}

/// Everything that decides a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub learning_rate: f64,
    /// Passes over the training rows; a budget may stop sooner.
    pub epochs: f64,
    pub batch_size: usize,
    pub gradient_accumulation: usize,
    /// Fraction of the planned optimizer steps spent warming up linearly from zero.
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// `None` trains every parameter.
    pub lora: Option<LoraConfig>,
    /// DPO's β (ignored by supervised runs).
    pub dpo_beta: f64,
    /// Longest example in tokens.
    pub max_len: usize,
    /// Validate every this many optimizer steps (and at the end).
    pub eval_every: u64,
    /// Stop after this many validations without improvement; `None` never stops early.
    pub patience: Option<u32>,
}

impl Hyperparameters {
    /// Hugging Face AutoTrain's LLM fine-tuning defaults, the market's baseline.
    ///
    /// Source: huggingface/autotrain-advanced, `src/autotrain/trainers/clm/params.py`
    /// (`LLMTrainingParams`): `lr = 3e-5`, `epochs = 1`, `batch_size = 2`,
    /// `gradient_accumulation = 4`, `warmup_ratio = 0.1`, `optimizer = "adamw_torch"`,
    /// `scheduler = "linear"`, `weight_decay = 0.0`, `max_grad_norm = 1.0`, `seed = 42`,
    /// `peft = False` (when on: `lora_r = 16`, `lora_alpha = 32`, `lora_dropout = 0.05`,
    /// `target_modules = "all-linear"`), `dpo_beta = 0.1`. AutoTrain's `block_size` /
    /// `model_max_length` (1024 / 2048) exceed our models' 256 positions, so `max_len` is
    /// the model's. AutoTrain evaluates once per epoch and has no early stopping here.
    pub fn autotrain(max_len: usize) -> Self {
        Self {
            learning_rate: 3e-5,
            epochs: 1.0,
            batch_size: 2,
            gradient_accumulation: 4,
            warmup_ratio: 0.1,
            schedule: Schedule::Linear,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 42,
            lora: None,
            dpo_beta: 0.1,
            max_len,
            eval_every: u64::MAX,
            patience: None,
        }
    }

    /// Rows consumed per optimizer step.
    pub fn rows_per_step(&self) -> usize {
        self.batch_size * self.gradient_accumulation
    }

    /// Optimizer steps for `epochs` over `rows` training rows (at least one).
    pub fn planned_steps(&self, rows: usize) -> u64 {
        ((self.epochs * rows as f64) / self.rows_per_step() as f64).ceil().max(1.0) as u64
    }

    /// The learning rate at optimizer step `step` (0-based) of `total`.
    pub fn learning_rate_at(&self, step: u64, total: u64) -> f64 {
        let warmup = (self.warmup_ratio * total as f64).ceil() as u64;
        if step < warmup {
            return self.learning_rate * (step + 1) as f64 / warmup as f64;
        }
        let span = total.saturating_sub(warmup).max(1) as f64;
        let progress = ((step - warmup) as f64 / span).min(1.0);
        match self.schedule {
            Schedule::Constant => self.learning_rate,
            Schedule::Linear => self.learning_rate * (1.0 - progress),
            Schedule::Cosine => self.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let mut h = Hyperparameters::autotrain(128);
        h.learning_rate = 1.0;
        assert!((h.learning_rate_at(0, 100) - 0.1).abs() < 1e-12);
        assert!((h.learning_rate_at(9, 100) - 1.0).abs() < 1e-12);
        assert!((h.learning_rate_at(55, 100) - 0.5).abs() < 1e-12);
        assert!(h.learning_rate_at(99, 100) < 0.02);
        h.schedule = Schedule::Cosine;
        assert!((h.learning_rate_at(55, 100) - 0.5).abs() < 1e-12);
        assert!(h.learning_rate_at(30, 100) > 0.5);
        h.schedule = Schedule::Constant;
        assert_eq!(h.learning_rate_at(90, 100), 1.0);
    }

    #[test]
    fn the_baseline_is_one_epoch_of_eight_rows_a_step() {
        let h = Hyperparameters::autotrain(128);
        assert_eq!(h.rows_per_step(), 8);
        assert_eq!(h.planned_steps(100), 13);
        assert_eq!(h.planned_steps(1), 1);
    }
}
