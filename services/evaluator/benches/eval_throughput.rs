//! Evaluation throughput: answer-scoring tokens/s of `tiny-1m`- and `tiny-10m`-sized
//! exports through the evaluator's own path (`evaluate::run_model`: sorted-length batches,
//! ONNX Runtime, `answer_nll`), beside the same ONNX file and the very same batches run by
//! onnxruntime's Python API (`ort_reference.py`) in the same run, as a ratio (the target is
//! ≥ 1.0: the service adds nothing measurable to the runtime).
//!
//! `BENCH_REPEATS` (default 3) passes over 64 rows; `BENCH_ORT_PYTHON` names a python with
//! onnxruntime 1.31.1 and numpy (`make bench` installs one with
//! `scripts/python-env.sh onnxruntime`); without it only the Rust side is measured.
//!
//! Then the service itself: `BENCH_SUBMISSIONS` (default 20) submissions of the tests'
//! small model, published at once, with 1 and with 2 evaluator replicas on a private
//! nats-server; the time from a submission stored in JetStream to its evaluation stored
//! (both by the server's clock), p50 and p99.

use std::io::Write;
use std::time::{Duration, Instant};

use gradients_config::EvaluatorSettings;
use gradients_data::{Row, TaskType};
use gradients_evaluator::base_model::BaseModel;
use gradients_evaluator::evaluate::{prepare, run_model};
use gradients_evaluator::scoring::batches;
use gradients_model::{files, LlamaConfig, ModelConfig, Weight, Weights};
use gradients_text::{Batch, Example, Tokenizer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The sizes of the trainer's presets (`services/trainer/src/presets.rs`), which this crate
/// cannot link (it never links libtorch).
fn preset(name: &str) -> ModelConfig {
    let (hidden, layers, heads, intermediate) = match name {
        "tiny-1m" => (128, 5, 4, 344),
        _ => (384, 6, 6, 1024),
    };
    ModelConfig::Llama(LlamaConfig {
        vocab_size: Tokenizer::byte_level().vocab_size(),
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: Some(2),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 256,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_id: vec![256],
        hidden_act: "silu".into(),
        ..Default::default()
    })
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

/// 64 instruct rows of varied lengths (prompts of 20 to 300 characters).
fn rows() -> Vec<Row> {
    (0..64)
        .map(|i| {
            let instruction = format!("Summarise item {i}: {}", "lorem ipsum dolor ".repeat(1 + (i * 7) % 16));
            let value =
                serde_json::json!({"instruction": instruction, "input": "", "output": format!("Item {i} is fine.")});
            Row::from_map(value.as_object().expect("object").clone())
        })
        .collect()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Writes the batches the evaluator runs, for the Python side.
fn write_batches(path: &std::path::Path, sequences: &[&Example], batch_tokens: usize, pad_id: u32) {
    let mut out = std::fs::File::create(path).expect("batches file");
    for batch in batches(sequences, batch_tokens) {
        let chunk: Vec<&Example> = batch.iter().map(|&i| sequences[i]).collect();
        let padded = Batch::pad(&chunk, pad_id);
        out.write_all(&(padded.batch as u32).to_le_bytes()).unwrap();
        out.write_all(&(padded.len as u32).to_le_bytes()).unwrap();
        for v in padded.input_ids.iter().chain(&padded.attention_mask) {
            out.write_all(&v.to_le_bytes()).unwrap();
        }
    }
}

#[allow(dead_code)]
#[path = "../tests/evaluator/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/evaluator/models.rs"]
mod models;

/// Milliseconds from each submission stored to its evaluation stored, sorted.
async fn latencies(replicas: usize, submissions: usize) -> Vec<f64> {
    use gradients_bus::subjects::{self, streams};
    use gradients_proto::v1::{EvaluationKind, EvaluationResult, Submission, TaskType};
    use prost::Message;
    let market = common::Market::start().await;
    let deadline = common::in_ms(3_600_000);
    let task = market
        .create_task(TaskType::Instruct, &common::instruct_rows(24, 0), &common::instruct_rows(12, 100), deadline)
        .await;
    for _ in 0..replicas {
        market.spawn_evaluator(market.shutdown.clone());
    }
    // The base model's own evaluation first, so it is not counted in the miners' times.
    market.wait_for(&task, 1, Duration::from_secs(60)).await;
    let base = models::weights(&models::config(), 1);
    let mut clients = Vec::new();
    for _ in 0..submissions {
        let identity = gradients_miner::Identity::generate();
        clients.push(market.register(&identity).await);
        market.assign(&task, &identity, submissions as u32, deadline).await;
    }
    for (i, client) in clients.iter().enumerate() {
        let onnx = models::export(&models::config(), &models::nudged(&base, 0.001 * (i + 1) as f32));
        client.submit(&task, &onnx, b"{}").await.expect("submitted");
    }
    market.wait_for(&task, submissions + 1, Duration::from_secs(600)).await;
    let stored =
        |m: &async_nats::jetstream::Message| m.info().expect("info").published.unix_timestamp_nanos() as f64 / 1e6;
    let sent: std::collections::HashMap<String, f64> = gradients_testkit::stream_messages(
        &market.bus.jetstream,
        streams::SUBMISSIONS,
        &subjects::submissions_of_task(&task),
    )
    .await
    .iter()
    .map(|m| (Submission::decode(m.payload.as_ref()).expect("submission").submission_id, stored(m)))
    .collect();
    let mut out: Vec<f64> =
        gradients_testkit::stream_messages(&market.bus.jetstream, streams::EVALUATIONS, &subjects::evaluations(&task))
            .await
            .iter()
            .filter_map(|m| {
                let result = EvaluationResult::decode(m.payload.as_ref()).expect("evaluation");
                (result.kind == EvaluationKind::MinerSubmission as i32).then(|| stored(m) - sent[&result.submission_id])
            })
            .collect();
    market.shutdown.cancel();
    out.sort_by(f64::total_cmp);
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    throughput();
    let submissions = env_or("BENCH_SUBMISSIONS", 20);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    println!("submission stored -> evaluation stored, {submissions} submissions published at once:");
    for replicas in [1, 2] {
        let sorted = runtime.block_on(latencies(replicas, submissions));
        println!(
            "  {replicas} replica(s): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} evaluations)",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or_default(),
            sorted.len()
        );
    }
}

fn throughput() {
    let repeats = env_or("BENCH_REPEATS", 3);
    let python = std::env::var("BENCH_ORT_PYTHON").ok().filter(|p| !p.is_empty());
    let settings = EvaluatorSettings::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = rows();
    println!(
        "evaluation throughput: 64 rows x {repeats} passes, batches of <= {} tokens, {} intra-op / {} inter-op threads",
        settings.batch_tokens, settings.intra_op_threads, settings.inter_op_threads
    );
    for name in ["tiny-1m", "tiny-10m"] {
        let config = preset(name);
        let model_dir = dir.path().join(name);
        std::fs::create_dir_all(&model_dir).unwrap();
        let onnx = gradients_model::onnx::export(&config, &weights(&config)).expect("export");
        std::fs::write(model_dir.join(files::CONFIG), config.to_json()).unwrap();
        std::fs::write(model_dir.join(files::TOKENIZER), Tokenizer::byte_level().to_json()).unwrap();
        std::fs::write(model_dir.join(files::ONNX), &onnx).unwrap();
        let base = BaseModel::from_dir(name, &model_dir).expect("base model");
        let splits = prepare(&base, TaskType::Instruct, &[("test", &rows)]).expect("examples");
        let sequences = splits[0].examples.sequences();
        let tokens: usize = sequences.iter().map(|e| e.len()).sum();

        run_model(base.onnx.clone(), &base, &splits, &settings).expect("warm-up");
        let started = Instant::now();
        for _ in 0..repeats {
            run_model(base.onnx.clone(), &base, &splits, &settings).expect("run");
        }
        let rust_seconds = started.elapsed().as_secs_f64();
        let rust_rate = (tokens * repeats) as f64 / rust_seconds;
        // Each evaluation builds its own session (the Python side times runs alone).
        let limits = gradients_evaluator::runtime::SessionLimits::from_settings(&settings);
        let started = Instant::now();
        for _ in 0..repeats {
            gradients_evaluator::runtime::create_session(base.onnx.clone(), limits).expect("session");
        }
        let session_seconds = started.elapsed().as_secs_f64();
        let scoring_rate = (tokens * repeats) as f64 / (rust_seconds - session_seconds).max(1e-9);
        print!(
            "{name}: {} parameters, evaluator {rust_rate:>7.0} tokens/s ({:.0} ms of it a session per pass; {scoring_rate:.0} tokens/s without)",
            config.parameter_count(),
            1000.0 * session_seconds / repeats as f64
        );

        if let Some(python) = &python {
            let batches_path = model_dir.join("batches.bin");
            write_batches(&batches_path, &sequences, settings.batch_tokens, base.tokenizer.pad_id());
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/ort_reference.py");
            let output = std::process::Command::new(python)
                .args([script, &model_dir.join(files::ONNX).display().to_string(), &batches_path.display().to_string()])
                .args([
                    repeats.to_string(),
                    settings.intra_op_threads.to_string(),
                    settings.inter_op_threads.to_string(),
                ])
                .output()
                .expect("running the onnxruntime reference");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
            let python_rate = answer["tokens"].as_f64().unwrap() / answer["seconds"].as_f64().unwrap();
            print!(
                "\n    onnxruntime {} (Python) {python_rate:.0} tokens/s; ratio {:.2} with the session, {:.2} without",
                answer["version"].as_str().unwrap_or("?"),
                rust_rate / python_rate,
                scoring_rate / python_rate
            );
        }
        println!();
    }
}
