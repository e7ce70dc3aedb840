//! Generation speed with and without the key-value cache, in generated tokens per second,
//! on the project's base models (random weights: speed does not depend on them).
//!
//! `cargo bench -p gradients-trainer --bench generate` (env: `BENCH_NEW_TOKENS`, default
//! 128; `BENCH_DEVICE`, `auto` or `cpu`; `BENCH_THREADS`, libtorch's CPU threads, which on
//! a machine shared with other work is best 1). Without the cache every step runs the training
//! forward over the whole sequence so far, which is what generation cost before the cache
//! (and what an exported ONNX model without a cache costs per step). Prompts are 64 tokens,
//! batches of 1 and 8; greedy and sampled (temperature 1, top-p 0.9) with the cache. No
//! end-of-text id is set, so every row generates the full count.

use std::time::Instant;

use gradients_trainer::generate::{generate, Decoding, GenerateConfig};
use gradients_trainer::model::CausalLm;
use gradients_trainer::{device, presets};
use tch::{Kind, Tensor};

const PROMPT: usize = 64;

/// Greedy decoding without a cache: the whole sequence through the training forward per
/// token.
fn uncached_greedy(model: &CausalLm, prompts: &[Vec<u32>], new_tokens: usize) -> usize {
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let batch = prompts.len() as i64;
    let flat: Vec<i64> = prompts.iter().flatten().map(|&id| id as i64).collect();
    let mut ids = Tensor::from_slice(&flat).view([batch, -1]).to(device);
    for _ in 0..new_tokens {
        let len = ids.size()[1];
        let logits = model.forward(&ids, &Tensor::ones([batch, len], (Kind::Int64, device)), false);
        let next = logits.select(1, -1).argmax(-1, false).view([batch, 1]);
        ids = Tensor::cat(&[&ids, &next], 1);
    }
    // Waits for the device and checks the length.
    (ids.size()[1] as usize - PROMPT) * prompts.len()
}

fn timed(label: &str, tokens_per_run: impl Fn() -> usize) -> f64 {
    tokens_per_run(); // warm-up
    let started = Instant::now();
    let tokens = tokens_per_run();
    let rate = tokens as f64 / started.elapsed().as_secs_f64();
    eprintln!("  {label}: {rate:.0} tokens/s");
    rate
}

fn main() {
    let new_tokens: usize = std::env::var("BENCH_NEW_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
    if let Some(threads) = std::env::var("BENCH_THREADS").ok().and_then(|v| v.parse().ok()) {
        tch::set_num_threads(threads);
    }
    let device = device::choose(&std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "auto".into()));
    println!("generation, {PROMPT}-token prompts, {new_tokens} new tokens, device {device:?}");
    println!(
        "| model | batch | no cache, greedy (tok/s) | cache, greedy (tok/s) | speed-up | cache, sampled (tok/s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for name in presets::NAMES {
        let config = presets::config(name).expect("a preset");
        let model = CausalLm::new(&config, device, 1);
        for batch in [1usize, 8] {
            let prompts: Vec<Vec<u32>> =
                (0..batch).map(|row| (0..PROMPT).map(|i| ((i * 31 + row * 7) % 256) as u32).collect()).collect();
            eprintln!("{name}, batch {batch}:");
            let greedy = GenerateConfig::greedy(new_tokens, vec![], 257);
            let sampled = GenerateConfig {
                decoding: Decoding::Sample { temperature: 1.0, top_p: 0.9, seed: 7 },
                ..greedy.clone()
            };
            let count = |c: Vec<gradients_trainer::generate::Completion>| c.iter().map(|c| c.ids.len()).sum();
            let plain = timed("no cache", || uncached_greedy(&model, &prompts, new_tokens));
            let cached = timed("cache, greedy", || count(generate(&model, &prompts, &greedy).expect("generate")));
            let drawn = timed("cache, sampled", || count(generate(&model, &prompts, &sampled).expect("generate")));
            println!("| {name} | {batch} | {plain:.0} | {cached:.0} | {:.1}× | {drawn:.0} |", cached / plain);
        }
    }
}
