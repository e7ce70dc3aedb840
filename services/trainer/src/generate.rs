//! Batched generation of completions with a key-value cache: greedy, or sampled with
//! temperature and top-p from a seeded RNG of its own.
//!
//! GRPO samples groups of completions to train on and the evaluator scores greedy ones, so
//! both must be reproducible: sampling draws from ChaCha8 seeded by the caller, one stream per
//! prompt row, never from tch's process-global generator, so two generations running at once
//! in one process give what each gives alone. Prompts of different lengths are left-padded
//! internally; positions are counted from the attention mask, so a prompt's completion does
//! not depend on the batch it is in (up to float rounding).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::model::{CausalLm, KvCache};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The most likely token (the lowest id on a tie, as `argmax`).
    Greedy,
    /// A draw from `softmax(logits / temperature)` restricted to the smallest set of most
    /// likely tokens whose probability reaches `top_p` (HF's nucleus; at least one token).
    /// Row `i` of a call draws from ChaCha8 seeded with `seed`, stream `i`.
    Sample { temperature: f64, top_p: f64, seed: u64 },
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    /// A row stops at the first of these it generates (the tokenizer's end-of-text and the
    /// config's `eos_token_id`s).
    pub eos_ids: Vec<u32>,
    /// Fills the internal left padding; never attended to, any valid id will do.
    pub pad_id: u32,
    pub decoding: Decoding,
}

impl GenerateConfig {
    pub fn greedy(max_new_tokens: usize, eos_ids: Vec<u32>, pad_id: u32) -> Self {
        Self { max_new_tokens, eos_ids, pad_id, decoding: Decoding::Greedy }
    }
}

/// One prompt's completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated ids (not the prompt), ending with the end-of-text id when `stopped`.
    pub ids: Vec<u32>,
    /// `log p(id)` of each generated id under the model's logits before temperature and
    /// top-p (the policy's own probability, as GRPO's ratio needs).
    pub logprobs: Vec<f32>,
    /// Whether the completion ended on an end-of-text id (else `max_new_tokens` ran out).
    pub stopped: bool,
}

/// A request that cannot be generated, naming the prompt or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("prompt {index} is empty (generation continues a prompt of at least one token)")]
    EmptyPrompt { index: usize },
    #[error("prompt {index}: {length} tokens plus max_new_tokens exceed the model's {max_positions} positions")]
    TooLong { index: usize, length: usize, max_positions: usize },
    #[error("prompt {index}: token id {id} is outside the model's vocabulary of {vocab_size}")]
    TokenOutOfRange { index: usize, id: u32, vocab_size: usize },
    #[error("pad_id {id} is outside the model's vocabulary of {vocab_size}")]
    PadId { id: u32, vocab_size: usize },
    #[error("temperature {0} must be positive and finite (use Decoding::Greedy for temperature 0)")]
    Temperature(f64),
    #[error("top_p {0} must be in (0, 1]")]
    TopP(f64),
}

fn validate(model: &CausalLm, prompts: &[Vec<u32>], config: &GenerateConfig) -> Result<(), GenerateError> {
    if let Decoding::Sample { temperature, top_p, .. } = config.decoding {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(GenerateError::Temperature(temperature));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(GenerateError::TopP(top_p));
        }
    }
    let (vocab_size, max_positions) = (model.config.vocab_size(), model.config.max_positions());
    for (index, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt { index });
        }
        if prompt.len() + config.max_new_tokens > max_positions {
            return Err(GenerateError::TooLong { index, length: prompt.len(), max_positions });
        }
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(GenerateError::TokenOutOfRange { index, id, vocab_size });
        }
    }
    if (config.pad_id as usize) >= vocab_size {
        return Err(GenerateError::PadId { id: config.pad_id, vocab_size });
    }
    Ok(())
}

/// Generates a completion for each prompt (unpadded token ids), in one batch, under
/// `no_grad` and without dropout, on the model's device. Result `i` belongs to `prompts[i]`.
/// Rows that stop leave the batch (their cache rows are dropped). The caller bounds the
/// batch size to bound memory.
pub fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
) -> Result<Vec<Completion>, GenerateError> {
    validate(model, prompts, config)?;
    let mut completions: Vec<Completion> =
        prompts.iter().map(|_| Completion { ids: Vec::new(), logprobs: Vec::new(), stopped: false }).collect();
    if prompts.is_empty() || config.max_new_tokens == 0 {
        return Ok(completions);
    }
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let (mut ids, mut mask) =
        (Vec::with_capacity(prompts.len() * longest), Vec::with_capacity(prompts.len() * longest));
    for prompt in prompts {
        let padding = longest - prompt.len();
        ids.extend(std::iter::repeat_n(config.pad_id as i64, padding).chain(prompt.iter().map(|&id| id as i64)));
        mask.extend(std::iter::repeat_n(0i64, padding).chain(std::iter::repeat_n(1, prompt.len())));
    }
    let shape = [prompts.len() as i64, longest as i64];
    let mut mask = Tensor::from_slice(&mask).view(shape).to(device);
    let input = Tensor::from_slice(&ids).view(shape).to(device);
    let mut cache = KvCache::new();
    let mut last = model.forward_cached(&input, &mask, &mut cache).select(1, -1);
    let mut rngs: Vec<ChaCha8Rng> = (0..prompts.len())
        .map(|row| {
            let seed = match config.decoding {
                Decoding::Sample { seed, .. } => seed,
                Decoding::Greedy => 0,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(row as u64);
            rng
        })
        .collect();
    // Rows still generating, as indices into `prompts`; `last` and the cache hold these rows.
    let mut active: Vec<usize> = (0..prompts.len()).collect();
    for step in 0..config.max_new_tokens {
        let chosen: Vec<i64> = match config.decoding {
            Decoding::Greedy => {
                Vec::<i64>::try_from(last.argmax(-1, false).to_device(tch::Device::Cpu)).expect("argmax gives i64")
            }
            Decoding::Sample { temperature, top_p, .. } => {
                let logits = Vec::<f32>::try_from(last.to_kind(Kind::Float).to_device(tch::Device::Cpu).reshape([-1]))
                    .expect("f32 logits");
                let vocab = logits.len() / active.len();
                active
                    .iter()
                    .zip(logits.chunks(vocab))
                    .map(|(&row, logits)| sample(logits, temperature, top_p, &mut rngs[row]) as i64)
                    .collect()
            }
        };
        let chosen_tensor = Tensor::from_slice(&chosen).to(device);
        let logprobs = Vec::<f32>::try_from(
            last.log_softmax(-1, Kind::Float)
                .gather(1, &chosen_tensor.view([-1, 1]), false)
                .reshape([-1])
                .to_device(tch::Device::Cpu),
        )
        .expect("f32 log-probs");
        let mut keep = Vec::with_capacity(active.len());
        for (slot, (&row, &id)) in active.iter().zip(&chosen).enumerate() {
            let completion = &mut completions[row];
            completion.ids.push(id as u32);
            completion.logprobs.push(logprobs[slot]);
            if config.eos_ids.contains(&(id as u32)) {
                completion.stopped = true;
            } else {
                keep.push(slot as i64);
            }
        }
        if keep.is_empty() || step + 1 == config.max_new_tokens {
            break;
        }
        let mut next = chosen_tensor;
        if keep.len() < active.len() {
            let rows = Tensor::from_slice(&keep).to(device);
            cache.retain(&rows);
            mask = mask.index_select(0, &rows);
            next = next.index_select(0, &rows);
            active = keep.iter().map(|&slot| active[slot as usize]).collect();
        }
        mask = Tensor::cat(&[&mask, &Tensor::ones([active.len() as i64, 1], (Kind::Int64, device))], 1);
        last = model.forward_cached(&next.view([-1, 1]), &mask, &mut cache).select(1, -1);
    }
    Ok(completions)
}

/// Draws a token id from `logits / temperature` cut to the top-`top_p` nucleus. Sorting
/// is by probability then id, so the draw depends on nothing but the logits and the RNG.
fn sample(logits: &[f32], temperature: f64, top_p: f64, rng: &mut ChaCha8Rng) -> usize {
    let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 / temperature).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|&l| (l - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    let mut kept = order.len();
    if top_p < 1.0 {
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        let mut cumulative = 0.0;
        for (i, &id) in order.iter().enumerate() {
            cumulative += weights[id] / total;
            if cumulative >= top_p {
                kept = i + 1;
                break;
            }
        }
    }
    let nucleus = &order[..kept];
    let mass: f64 = nucleus.iter().map(|&id| weights[id]).sum();
    let mut target = rng.random::<f64>() * mass;
    for &id in nucleus {
        target -= weights[id];
        if target < 0.0 {
            return id;
        }
    }
    *nucleus.last().expect("the nucleus holds at least one token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nucleus_keeps_the_most_likely_tokens_that_reach_top_p() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.7 keeps ids 0 and 1 only.
        let logits = [3.0f32, 2.0, 1.0, -0.1];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[sample(&logits, 1.0, 0.7, &mut rng)] += 1;
        }
        assert_eq!((seen[2], seen[3]), (0, 0), "{seen:?}");
        assert!(seen[0] > seen[1] && seen[1] > 300, "{seen:?}");
        // A tiny top_p keeps the single most likely token.
        assert!((0..100).all(|_| sample(&logits, 1.0, 1e-6, &mut rng) == 0));
        // A high temperature flattens: every token is drawn.
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[sample(&logits, 100.0, 1.0, &mut rng)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 350), "{seen:?}");
    }
}
