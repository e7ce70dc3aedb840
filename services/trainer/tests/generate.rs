//! Generation with a key-value cache: the cached forward equals the training forward, greedy
//! generation in a left-padded batch equals a plain recomputing loop over each prompt alone,
//! seeded sampling is reproducible (also with two generations at once), and rows stop at
//! their end-of-text id or after `max_new_tokens`.

use gradients_model::{LlamaConfig, LlamaFamily, ModelConfig, RopeScaling};
use gradients_trainer::generate::{generate, Completion, Decoding, GenerateConfig, GenerateError};
use gradients_trainer::model::{CausalLm, KvCache};
use gradients_trainer::presets;
use tch::{Device, Kind, Tensor};

const EOS: u32 = 256;
const PAD: u32 = 257;

fn configs() -> Vec<ModelConfig> {
    vec![
        // Grouped-query attention, tied output layer.
        presets::byte_llama(32, 2, 4, 2, 48, 64, true),
        // Untied output layer, as many key/value heads as heads.
        presets::byte_llama(32, 2, 4, 4, 48, 64, false),
        // Qwen2: query/key/value biases; with Llama 3's RoPE scaling.
        qwen2_scaled(),
        presets::tiny_gpt2(),
    ]
}

fn qwen2_scaled() -> ModelConfig {
    let ModelConfig::Llama(c) = presets::byte_llama(32, 2, 4, 2, 48, 64, true) else { unreachable!() };
    let rope_scaling = Some(RopeScaling {
        rope_type: "llama3".into(),
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 1024,
    });
    ModelConfig::Llama(LlamaConfig { family: LlamaFamily::Qwen2, rope_scaling, ..c })
}

/// A random model with weights ten times the initial scale, so its next-token
/// distributions are peaked: greedy choices are then decided by real margins, not by
/// rounding, and a comparison of two decoders is meaningful.
fn peaked(config: &ModelConfig, seed: i64) -> CausalLm {
    let model = CausalLm::new(config, Device::Cpu, seed);
    tch::no_grad(|| {
        for (name, var) in model.base_variables() {
            let is_norm = name.contains("norm") || name.contains(".ln_");
            if name.ends_with(".bias") {
                var.shallow_clone().copy_(&(var.randn_like() * 0.2));
            } else if !is_norm {
                let _ = var.shallow_clone().f_mul_scalar_(10.0).expect("scale");
            }
        }
    });
    model
}

fn prompts() -> Vec<Vec<u32>> {
    vec![vec![72, 101, 108, 108, 111], vec![7], vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], vec![200, 100]]
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Greedy decoding the slow, obvious way: the training forward over the whole sequence,
/// one prompt at a time, no cache, no padding.
fn reference_greedy(model: &CausalLm, prompt: &[u32], max_new: usize, eos: &[u32]) -> Completion {
    let mut sequence: Vec<i64> = prompt.iter().map(|&id| id as i64).collect();
    let mut completion = Completion { ids: vec![], logprobs: vec![], stopped: false };
    for _ in 0..max_new {
        let len = sequence.len() as i64;
        let ids = Tensor::from_slice(&sequence).view([1, len]);
        let logits = tch::no_grad(|| model.forward(&ids, &Tensor::ones([1, len], (Kind::Int64, Device::Cpu)), false));
        let last = logits.select(1, -1).select(0, 0);
        let id = last.argmax(-1, false).int64_value(&[]);
        completion.ids.push(id as u32);
        completion.logprobs.push(last.log_softmax(-1, Kind::Float).double_value(&[id]) as f32);
        sequence.push(id);
        if eos.contains(&(id as u32)) {
            completion.stopped = true;
            break;
        }
    }
    completion
}

/// How far cached and uncached logits may differ: f32 rounding only. The two paths sum
/// attention in a different order (one query against the cache, or all at once), and
/// libtorch's CPU kernels block their sums by thread count; on these peaked models that
/// moves logits by about 1e-5 (1.2e-5 seen), while a wrong cache moves them by 1e-1 and more.
const CACHE_TOLERANCE: f64 = 1e-4;

#[test]
fn cached_forward_equals_the_training_forward() {
    for config in configs() {
        let model = peaked(&config, 3);
        let ids = Tensor::from_slice(&[5i64, 80, 81, 82, 9, 10, 72, 105, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
            .view([2, 10]);
        let mask = Tensor::ones([2, 10], (Kind::Int64, Device::Cpu));
        let full = tch::no_grad(|| model.forward(&ids, &mask, false));
        // Six tokens at once, then one at a time.
        let mut cache = KvCache::new();
        let mut parts =
            vec![tch::no_grad(|| model.forward_cached(&ids.narrow(1, 0, 6), &mask.narrow(1, 0, 6), &mut cache))];
        for t in 6..10 {
            parts.push(tch::no_grad(|| {
                model.forward_cached(&ids.narrow(1, t, 1), &mask.narrow(1, 0, t + 1), &mut cache)
            }));
        }
        assert_eq!(cache.len(), 10);
        let incremental = Tensor::cat(&parts, 1);
        let diff = max_abs_diff(&full, &incremental);
        assert!(diff < CACHE_TOLERANCE, "{}: cached logits differ by {diff}", config.architecture());
        // A left-padded row gives its real tokens the logits they have alone.
        let padded_ids = Tensor::from_slice(&[PAD as i64, PAD as i64, 9, 10, 72, 105]).view([1, 6]);
        let padded_mask = Tensor::from_slice(&[0i64, 0, 1, 1, 1, 1]).view([1, 6]);
        let padded =
            tch::no_grad(|| model.forward_cached(&padded_ids, &padded_mask, &mut KvCache::new())).narrow(1, 2, 4);
        assert!(padded.isfinite().all().int64_value(&[]) == 1, "padding produced NaN");
        let alone_ids = ids.narrow(0, 0, 1).narrow(1, 4, 4);
        let alone =
            tch::no_grad(|| model.forward(&alone_ids, &Tensor::ones([1, 4], (Kind::Int64, Device::Cpu)), false));
        let diff = max_abs_diff(&padded, &alone);
        assert!(diff < CACHE_TOLERANCE, "{}: left padding changes logits by {diff}", config.architecture());
    }
}

#[test]
fn batched_greedy_with_cache_equals_the_plain_loop_token_for_token() {
    for config in configs() {
        let model = peaked(&config, 11);
        let generated = generate(&model, &prompts(), &GenerateConfig::greedy(12, vec![EOS], PAD)).expect("generate");
        for (prompt, completion) in prompts().iter().zip(&generated) {
            let expected = reference_greedy(&model, prompt, 12, &[EOS]);
            assert_eq!(completion.ids, expected.ids, "{}: prompt {prompt:?}", config.architecture());
            assert_eq!(completion.stopped, expected.stopped);
            for (a, b) in completion.logprobs.iter().zip(&expected.logprobs) {
                assert!((a - b).abs() < 1e-4, "log-prob {a} vs {b}");
            }
        }
        // Not a degenerate model: the completions differ between prompts.
        assert!(generated.windows(2).any(|w| w[0].ids != w[1].ids), "{generated:?}");
    }
}

#[test]
fn rows_stop_at_their_end_of_text_id_and_after_max_new_tokens() {
    let model = peaked(&configs()[0], 5);
    let free = generate(&model, &prompts(), &GenerateConfig::greedy(10, vec![], PAD)).expect("generate");
    for completion in &free {
        assert_eq!(completion.ids.len(), 10);
        assert_eq!(completion.logprobs.len(), 10);
        assert!(!completion.stopped);
    }
    // Declare the third token of the first completion an end-of-text id: that row stops at
    // its first occurrence, the others where they first produce it, if they do.
    let eos = free[0].ids[2];
    let stopped = generate(&model, &prompts(), &GenerateConfig::greedy(10, vec![eos], PAD)).expect("generate");
    for (free, stopped) in free.iter().zip(&stopped) {
        match free.ids.iter().position(|&id| id == eos) {
            Some(at) => {
                assert_eq!(stopped.ids, free.ids[..=at]);
                assert!(stopped.stopped);
            }
            None => {
                assert_eq!(stopped.ids, free.ids);
                assert!(!stopped.stopped);
            }
        }
    }
    assert!(stopped[0].ids.len() <= 3 && stopped[0].stopped);
    let none = generate(&model, &prompts(), &GenerateConfig::greedy(0, vec![EOS], PAD)).expect("generate");
    assert!(none.iter().all(|c| c.ids.is_empty() && !c.stopped));
}

fn sampling(seed: u64) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens: 16,
        eos_ids: vec![EOS],
        pad_id: PAD,
        decoding: Decoding::Sample { temperature: 1.0, top_p: 0.95, seed },
    }
}

/// A group of four completions of one prompt, as GRPO draws them.
fn group_of() -> Vec<Vec<u32>> {
    vec![vec![72u32, 105]; 4]
}

#[test]
fn seeded_sampling_is_reproducible_even_with_two_generations_at_once() {
    let model = CausalLm::new(&presets::byte_llama(32, 2, 4, 2, 48, 64, true), Device::Cpu, 9);
    let group = group_of();
    let alone = generate(&model, &group, &sampling(42)).expect("generate");
    assert_eq!(alone, generate(&model, &group, &sampling(42)).expect("again"));
    // Rows draw from their own streams: the group's completions differ from each other.
    assert!(alone.windows(2).all(|w| w[0].ids != w[1].ids), "{alone:?}");
    let other = generate(&model, &group, &sampling(43)).expect("other seed");
    assert_ne!(alone, other);
    // Two generations at once, in threads (on copies: tch tensors are not Sync), with tch's
    // global seed changing under them.
    let (first, second) = (model.duplicate(), model.duplicate());
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(move || generate(&first, &group_of(), &sampling(42)).expect("thread a"));
        let b = scope.spawn(move || {
            tch::manual_seed(1234);
            generate(&second, &group_of(), &sampling(43)).expect("thread b")
        });
        (a.join().expect("a"), b.join().expect("b"))
    });
    assert_eq!(a, alone);
    assert_eq!(b, other);
}

#[test]
fn bad_requests_are_refused_naming_what_is_wrong() {
    let model = CausalLm::new(&presets::byte_llama(32, 2, 4, 2, 48, 64, true), Device::Cpu, 1);
    let greedy = GenerateConfig::greedy(8, vec![EOS], PAD);
    let err = generate(&model, &[vec![1], vec![]], &greedy).expect_err("empty");
    assert!(matches!(err, GenerateError::EmptyPrompt { index: 1 }), "{err}");
    let err = generate(&model, &[vec![1; 60]], &greedy).expect_err("too long");
    assert!(matches!(err, GenerateError::TooLong { index: 0, length: 60, max_positions: 64 }), "{err}");
    let err = generate(&model, &[vec![1, 999]], &greedy).expect_err("vocabulary");
    assert!(err.to_string().contains("token id 999"), "{err}");
    let hot = GenerateConfig { decoding: Decoding::Sample { temperature: 0.0, top_p: 1.0, seed: 1 }, ..greedy.clone() };
    assert!(matches!(generate(&model, &[vec![1]], &hot), Err(GenerateError::Temperature(_))));
    let wide = GenerateConfig { decoding: Decoding::Sample { temperature: 1.0, top_p: 1.5, seed: 1 }, ..greedy };
    assert!(matches!(generate(&model, &[vec![1]], &wide), Err(GenerateError::TopP(_))));
}
