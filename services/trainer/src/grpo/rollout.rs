//! Rollouts: G sampled completions per prompt, scored by the task's reward functions, as
//! the token sequences the objective is computed on; and greedy completions, scored the
//! way the evaluator scores a submission.

use gradients_reward::RewardSet;
use gradients_text::{Example, Tokenizer};

use super::data::Prompt;
use super::hyper::GrpoHyperparameters;
use super::objective::group_advantages;
use super::GrpoError;
use crate::generate::{generate, Completion, Decoding, GenerateConfig};
use crate::model::CausalLm;

/// Sequences generated in one call at most: bounds the memory of the key-value cache.
const GENERATION_CHUNK: usize = 64;

/// One rollout: `prompts × G` completions, group-major (the G of a prompt are adjacent).
pub struct Rollout {
    /// Prompt then completion ids; `is_answer` marks the completion (its end-of-text token
    /// included when it stopped there: stopping is learned too).
    pub sequences: Vec<Example>,
    pub rewards: Vec<f64>,
    pub advantages: Vec<f64>,
}

impl Rollout {
    pub fn mean_reward(&self) -> f64 {
        self.rewards.iter().sum::<f64>() / self.rewards.len().max(1) as f64
    }

    /// Completion tokens generated.
    pub fn completion_tokens(&self) -> usize {
        self.sequences.iter().map(Example::answer_tokens).sum()
    }
}

/// How completions are generated and read: the parts of generation that do not change
/// from one rollout to the next.
pub struct Generator<'a> {
    pub tokenizer: &'a Tokenizer,
    pub rewards: &'a RewardSet,
    pub eos_ids: Vec<u32>,
    pub pad_id: u32,
}

impl Generator<'_> {
    /// Generates for `prompts` in chunks; `decoding_of(chunk)` gives each chunk's decoding
    /// (a sampling seed of its own per chunk).
    fn complete(
        &self,
        model: &CausalLm,
        prompts: &[&Vec<u32>],
        max_new_tokens: usize,
        decoding_of: impl Fn(u64) -> Decoding,
    ) -> Result<Vec<Completion>, GrpoError> {
        let mut completions = Vec::with_capacity(prompts.len());
        for (chunk, ids) in prompts.chunks(GENERATION_CHUNK).enumerate() {
            let config = GenerateConfig {
                max_new_tokens,
                eos_ids: self.eos_ids.clone(),
                pad_id: self.pad_id,
                decoding: decoding_of(chunk as u64),
            };
            let owned: Vec<Vec<u32>> = ids.iter().map(|ids| (*ids).clone()).collect();
            completions.extend(generate(model, &owned, &config)?);
        }
        Ok(completions)
    }

    /// The reward of `completion` for `prompt`: its text up to the end-of-text token,
    /// scored by the task's weighted reward functions.
    pub fn reward(&self, prompt: &Prompt, completion: &Completion) -> Result<f64, GrpoError> {
        let ids = match completion.ids.last() {
            Some(last) if completion.stopped && self.eos_ids.contains(last) => {
                &completion.ids[..completion.ids.len() - 1]
            }
            _ => &completion.ids[..],
        };
        let text = self.tokenizer.decode(ids).map_err(crate::train::TrainError::from)?;
        Ok(self.rewards.score(&prompt.text, text.as_bytes(), prompt.row.as_map()))
    }

    /// Samples `hyper.group_size` completions of each prompt (seeded by `seed`), scores
    /// them and normalises their rewards within each group.
    pub fn rollout(
        &self,
        model: &CausalLm,
        prompts: &[&Prompt],
        hyper: &GrpoHyperparameters,
        seed: u64,
    ) -> Result<Rollout, GrpoError> {
        let group = hyper.group_size;
        let repeated: Vec<&Prompt> = prompts.iter().flat_map(|p| std::iter::repeat_n(*p, group)).collect();
        let ids: Vec<&Vec<u32>> = repeated.iter().map(|p| &p.ids).collect();
        let (temperature, top_p) = (hyper.temperature, hyper.top_p);
        let completions = self.complete(model, &ids, hyper.max_new_tokens, |chunk| Decoding::Sample {
            temperature,
            top_p,
            seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(chunk),
        })?;
        let mut sequences = Vec::with_capacity(completions.len());
        let mut rewards = Vec::with_capacity(completions.len());
        for (prompt, completion) in repeated.iter().zip(&completions) {
            rewards.push(self.reward(prompt, completion)?);
            let mut ids = prompt.ids.clone();
            ids.extend(&completion.ids);
            let mut is_answer = vec![false; prompt.ids.len()];
            is_answer.resize(ids.len(), true);
            sequences.push(Example { ids, is_answer });
        }
        let advantages = group_advantages(&rewards, group);
        Ok(Rollout { sequences, rewards, advantages })
    }

    /// The mean reward of greedy completions of `prompts`: what the evaluator scores.
    pub fn greedy_reward(&self, model: &CausalLm, prompts: &[Prompt], max_new_tokens: usize) -> Result<f64, GrpoError> {
        let ids: Vec<&Vec<u32>> = prompts.iter().map(|p| &p.ids).collect();
        let completions = self.complete(model, &ids, max_new_tokens, |_| Decoding::Greedy)?;
        let mut total = 0.0;
        for (prompt, completion) in prompts.iter().zip(&completions) {
            total += self.reward(prompt, completion)?;
        }
        Ok(total / prompts.len().max(1) as f64)
    }
}
