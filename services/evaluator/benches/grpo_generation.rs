//! What GRPO scoring costs: greedy generation through ONNX Runtime without a key-value
//! cache (`generation::Generator`, the evaluator's own path), for `tiny-1m`- and
//! `tiny-10m`-sized exports, on 64 GRPO prompts as the taskgen families write them, at the
//! new-token limits a task may get.
//!
//! The model never ends its text here (no stop id): every prompt runs to the limit, the
//! worst case the evaluator's token budget bounds. Printed per case: new tokens generated,
//! positions run through the model (rows x padded length, summed over runs), runs, seconds,
//! new tokens/s, and the no-cache factor: positions run / positions a cached generation
//! would run (prompt + new tokens once each).
//!
//! `BENCH_PROMPTS` (default 64), `BENCH_MODELS` (default `tiny-1m,tiny-10m`); one ONNX
//! Runtime thread, as the evaluator's default, and no run time limit (the service's
//! `run_timeout_ms` would stop the slowest cases on a loaded machine).

use std::time::Instant;

use gradients_config::EvaluatorSettings;
use gradients_data::Row;
use gradients_evaluator::generation::Generator;
use gradients_evaluator::runtime::{create_session, SessionLimits, Watchdog};
use gradients_model::{ModelConfig, Weight, Weights};
use gradients_text::Tokenizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The sizes of the trainer's presets (`services/trainer/src/presets.rs`; this crate never
/// links libtorch), as the `config.json` the trainer writes.
fn preset(name: &str) -> ModelConfig {
    let (hidden, layers, heads, intermediate) = match name {
        "tiny-1m" => (128, 5, 4, 344),
        _ => (384, 6, 6, 1024),
    };
    let json = serde_json::json!({
        "model_type": "llama", "vocab_size": Tokenizer::byte_level().vocab_size(), "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "tie_word_embeddings": true, "eos_token_id": 256, "hidden_act": "silu"
    });
    ModelConfig::from_json(json.to_string().as_bytes()).expect("a preset config")
}

fn weights(config: &ModelConfig) -> Weights {
    let mut rng = StdRng::seed_from_u64(5);
    let mut weights = Weights::default();
    for spec in config.parameters() {
        let n: usize = spec.shape.iter().product();
        let data = if spec.name.contains("norm") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| rng.random_range(-0.05..0.05)).collect()
        };
        weights.0.insert(spec.name.clone(), Weight::new(spec.shape.clone(), data));
    }
    weights
}

/// GRPO prompts like the arithmetic and format families', templated and tokenized as the
/// evaluator does.
fn prompts(n: usize) -> Vec<Vec<u32>> {
    let tokenizer = Tokenizer::byte_level();
    (0..n)
        .map(|i| {
            let prompt = if i % 2 == 0 {
                format!("What is {} plus {}? Answer with the number.", i % 10, (i * 7) % 10)
            } else {
                format!("Give the record of item {i} as JSON with keys name and size.")
            };
            let row = Row::from_map(serde_json::json!({ "prompt": prompt }).as_object().expect("object").clone());
            gradients_text::grpo_prompt_ids(&tokenizer, i + 1, &row, 128).expect("a prompt")
        })
        .collect()
}

fn main() {
    gradients_evaluator::runtime::environment().expect("ONNX Runtime (set ORT_DYLIB_PATH)");
    let n: usize = std::env::var("BENCH_PROMPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let prompts = prompts(n);
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let settings = EvaluatorSettings { run_timeout_ms: 24 * 3_600_000, ..Default::default() };
    let models = std::env::var("BENCH_MODELS").unwrap_or_else(|_| "tiny-1m,tiny-10m".to_owned());
    println!(
        "{n} prompts, {:.1} tokens each on average; batch_tokens {}, {} ONNX Runtime thread(s)",
        prompt_tokens as f64 / n as f64,
        settings.batch_tokens,
        settings.intra_op_threads
    );
    println!("| model | max new | new tokens | positions | runs | seconds | new tokens/s | no-cache factor |");
    println!("|---|---|---|---|---|---|---|---|");
    for name in models.split(',').map(str::trim) {
        let config = preset(name);
        let onnx = gradients_model::onnx::export(&config, &weights(&config)).expect("export");
        let mut session = create_session(onnx.into(), SessionLimits::from_settings(&settings)).expect("session");
        let watchdog = Watchdog::start(settings.run_timeout()).expect("watchdog");
        let mut generator = Generator {
            session: &mut session,
            watchdog: &watchdog,
            vocab: config.vocab_size(),
            pad_id: Tokenizer::byte_level().pad_id(),
            stop_ids: Vec::new(),
            max_len: 256,
            batch_tokens: settings.batch_tokens,
        };
        let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        // One pass to warm the session's arena.
        generator.greedy(&refs[..4.min(n)], 2).expect("warm-up");
        for max_new in [16, 32, 64] {
            let started = Instant::now();
            let (_, stats) = generator.greedy(&refs, max_new).expect("generation");
            let seconds = started.elapsed().as_secs_f64();
            let cached = (prompt_tokens + n * max_new) as f64;
            println!(
                "| {name} | {max_new} | {} | {} | {} | {seconds:.2} | {:.0} | {:.1} |",
                stats.new_tokens,
                stats.positions,
                stats.runs,
                stats.new_tokens as f64 / seconds,
                stats.positions as f64 / cached
            );
        }
    }
}
