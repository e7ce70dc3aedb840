//! GRPO's hyperparameters, the market's baseline recipe for them, and their validation.

use serde::{Deserialize, Serialize};

use crate::model::LoraConfig;
use crate::train::{Schedule, TrainError};

/// Everything that decides a GRPO run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoHyperparameters {
    /// Peak AdamW learning rate.
    pub learning_rate: f64,
    /// β: weight of the KL penalty to the frozen start model (0 turns it off).
    pub beta: f64,
    /// G: completions sampled per prompt; advantages are normalised within each group.
    pub group_size: usize,
    /// ε: the policy ratio is clipped to `[1 − ε, 1 + ε]`.
    pub clip_epsilon: f64,
    /// Sampling temperature of the rollouts (the policy optimised is the tempered one).
    pub temperature: f64,
    /// Nucleus sampling: the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f64,
    pub max_new_tokens: usize,
    /// Prompts per rollout: a rollout is `prompts_per_step × group_size` completions.
    pub prompts_per_step: usize,
    /// μ: optimizer steps on each rollout before sampling the next (the ratio departs from 1
    /// only from the second on, which is where clipping acts).
    pub updates_per_rollout: usize,
    /// Fraction of the planned optimizer steps spent warming up linearly from zero.
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// `None` trains every parameter.
    pub lora: Option<LoraConfig>,
    pub seed: u64,
    /// Validate (greedy completions of the validation prompts, their mean reward) every
    /// this many optimizer steps, and at the end.
    pub eval_every: u64,
}

impl GrpoHyperparameters {
    /// G.O.D.'s GRPO recipe, the market's baseline for GRPO tasks.
    ///
    /// Source: rayonlabs/G.O.D, `core/config/base_grpo.yml` (axolotl with TRL's GRPO
    /// trainer): `trl.beta = 0.01`, `trl.num_generations = 4`, `max_completion_length =
    /// 256`, `adapter = lora`, `lora_r = 8`, `lora_alpha = 8`, `lora_dropout = 0.2`,
    /// `lora_target_linear = true`, `learning_rate = 0.0008`, `lr_scheduler = cosine`,
    /// `warmup_steps = 10`, `micro_batch_size = 4`, `weight_decay = 0.0`. TRL's defaults
    /// fill the rest: `epsilon = 0.2`, `temperature = 1.0`, `top_p = 1.0`,
    /// `num_iterations = 1`, `max_grad_norm = 1.0`. Ten warm-up steps become a ratio of
    /// 0.1 (G.O.D. runs `max_steps = 10` and more); completions are capped at what our
    /// models' positions leave after the prompt (see [`Self::max_new_tokens`]).
    pub fn baseline(seed: u64) -> Self {
        Self {
            learning_rate: 8e-4,
            beta: 0.01,
            group_size: 4,
            clip_epsilon: 0.2,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 256,
            prompts_per_step: 4,
            updates_per_rollout: 1,
            warmup_ratio: 0.1,
            schedule: Schedule::Cosine,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            lora: Some(LoraConfig { rank: 8, alpha: 8.0, dropout: 0.2, targets: vec!["all-linear".into()] }),
            seed,
            eval_every: u64::MAX,
        }
    }

    /// Completions per rollout.
    pub fn completions_per_rollout(&self) -> usize {
        self.prompts_per_step * self.group_size
    }

    /// Refuses settings GRPO cannot learn from, naming the setting.
    pub fn validate(&self) -> Result<(), TrainError> {
        let fail = |what: String| Err(TrainError::Config(format!("GRPO {what}")));
        if self.group_size < 2 {
            // One completion per group has no one to be compared with: every advantage is 0.
            return fail(format!("group_size = {} (at least 2)", self.group_size));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return fail(format!("learning_rate = {} (finite, > 0)", self.learning_rate));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return fail(format!("beta = {} (finite, >= 0)", self.beta));
        }
        if !(self.clip_epsilon.is_finite() && self.clip_epsilon > 0.0) {
            return fail(format!("clip_epsilon = {} (finite, > 0)", self.clip_epsilon));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return fail(format!("temperature = {} (finite, > 0)", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return fail(format!("top_p = {} (in (0, 1])", self.top_p));
        }
        if self.max_new_tokens == 0 || self.prompts_per_step == 0 || self.updates_per_rollout == 0 {
            return fail("max_new_tokens, prompts_per_step and updates_per_rollout must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_is_valid_and_bad_settings_are_named() {
        let good = GrpoHyperparameters::baseline(1);
        good.validate().expect("valid");
        assert_eq!(good.completions_per_rollout(), 16);
        let err = GrpoHyperparameters { group_size: 1, ..good.clone() }.validate().expect_err("G = 1");
        assert!(err.to_string().contains("group_size = 1"), "{err}");
        let err = GrpoHyperparameters { beta: f64::NAN, ..good.clone() }.validate().expect_err("NaN β");
        assert!(err.to_string().contains("beta"), "{err}");
        let err = GrpoHyperparameters { top_p: 0.0, ..good }.validate().expect_err("top_p 0");
        assert!(err.to_string().contains("top_p"), "{err}");
    }
}
