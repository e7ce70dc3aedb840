//! Training throughput of the project's base models, through the production training path
//! (`train::Run`: AdamW, clipping, answer-masked loss), in tokens per second.
//!
//! `make bench`, or `cargo bench -p gradients-trainer --bench train_throughput` (env:
//! `BENCH_STEPS`, default 12; `BENCH_DEVICE`, `auto` or `cpu`; `BENCH_TORCH_PYTHON`, a
//! python with PyTorch, which `scripts/python-env.sh torch` installs).
//!
//! Two anchors, measured in the same run on the same device (CPU threads, or the GPU):
//! - the same model and training step in PyTorch (`torch_reference.py`: same config, same
//!   attention call, AdamW, clipping, masked loss; bf16 autocast on CUDA, as ours), when a
//!   PyTorch is available; the ratio is ours / PyTorch's tokens per second;
//! - libtorch's own f32 matrix multiply (1024³): the model-FLOPs rate (6·N per trained
//!   token: forward 2N, backward 4N, attention ignored) as a fraction of it.

use std::time::Instant;

use gradients_data::TaskType;
use gradients_text::{lm_examples, Tokenizer};
use gradients_trainer::model::CausalLm;
use gradients_trainer::train::{Hyperparameters, Item, Run, Schedule, TrainData};
use gradients_trainer::{device, presets};
use indicatif::ProgressBar;
use tch::{Device, Kind, Tensor};

const BATCH: usize = 8;
const SEQUENCE: usize = 128;

fn matmul_flops_per_second(device: Device) -> f64 {
    let a = Tensor::randn([1024, 1024], (Kind::Float, device));
    let b = Tensor::randn([1024, 1024], (Kind::Float, device));
    let _ = a.matmul(&b).sum(Kind::Float).double_value(&[]); // warm-up
    let repeats = 20;
    let started = Instant::now();
    let mut checksum = 0.0;
    for _ in 0..repeats {
        checksum += a.matmul(&b).sum(Kind::Float).double_value(&[]);
    }
    std::hint::black_box(checksum);
    repeats as f64 * 2.0 * 1024f64.powi(3) / started.elapsed().as_secs_f64()
}

fn tokens_per_second(preset: &str, device: Device, steps: u64) -> (f64, u64) {
    let config = presets::config(preset).expect("preset");
    let tokenizer = Tokenizer::byte_level();
    let corpus = gradients_taskgen::corpus(3, BATCH * SEQUENCE * (steps as usize + 4) * 2);
    let documents: Vec<&str> = corpus.lines().collect();
    let train: Vec<Item> =
        lm_examples(&tokenizer, &documents, SEQUENCE).expect("examples").into_iter().map(Item::Supervised).collect();
    let data = TrainData { task_type: TaskType::Instruct, validation: train[..2].to_vec(), train };
    let hyper = Hyperparameters {
        learning_rate: 1e-3,
        epochs: f64::INFINITY,
        batch_size: BATCH,
        gradient_accumulation: 1,
        warmup_ratio: 0.0,
        schedule: Schedule::Constant,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        seed: 1,
        lora: None,
        dpo_beta: 0.1,
        max_len: SEQUENCE,
        eval_every: u64::MAX,
        patience: None,
    };
    let model = CausalLm::new(&config, device, 1);
    let mut run = Run::new(model, None, hyper, u64::MAX, tokenizer.pad_id(), &data).expect("run");
    run.advance(&data, 2, None, &ProgressBar::hidden()).expect("warm-up");
    let (tokens_before, started) = (run.record.tokens, Instant::now());
    let bar = ProgressBar::new(steps).with_message(preset.to_owned());
    run.advance(&data, steps, None, &bar).expect("steps");
    bar.finish_and_clear();
    let tokens = run.record.tokens - tokens_before;
    (tokens as f64 / started.elapsed().as_secs_f64(), config.parameter_count())
}

/// PyTorch's tokens/s for the same preset on the same kind of device, or why it was not measured.
fn pytorch_tokens_per_second(preset: &str, steps: u64, device: Device) -> Result<f64, String> {
    let python = std::env::var("BENCH_TORCH_PYTHON").map_err(|_| "BENCH_TORCH_PYTHON not set".to_owned())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, presets::config(preset).expect("preset").to_json()).map_err(|e| e.to_string())?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_reference.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(&config_path)
        .args([BATCH.to_string(), SEQUENCE.to_string(), steps.to_string()])
        .arg(if device.is_cuda() { "cuda" } else { "cpu" })
        .output()
        .map_err(|e| format!("running {python}: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default().to_owned());
    }
    let line = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| e.to_string())?;
    let expected = presets::config(preset).expect("preset").parameter_count();
    if report["parameters"].as_u64() != Some(expected) {
        return Err(format!("PyTorch model has {} parameters, ours {expected}", report["parameters"]));
    }
    report["tokens_per_second"].as_f64().ok_or_else(|| "no tokens_per_second".to_owned())
}

fn main() {
    let steps: u64 = std::env::var("BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let device = device::choose(&std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "auto".into()));
    let threads = tch::get_num_threads();
    let anchor = matmul_flops_per_second(device);
    println!("device {device:?}, {threads} threads, batch {BATCH} × {SEQUENCE} tokens, {steps} timed steps");
    println!("anchor: libtorch f32 matmul 1024³ = {:.1} GFLOP/s", anchor / 1e9);
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>10} {:>14} {:>10}",
        "model", "parameters", "tokens/s", "PyTorch tok/s", "vs PyTorch", "model GFLOP/s", "vs GEMM"
    );
    let mut unavailable = None;
    for preset in presets::NAMES {
        let (rate, parameters) = tokens_per_second(preset, device, steps);
        let model_flops = 6.0 * parameters as f64 * rate;
        let pytorch = pytorch_tokens_per_second(preset, steps, device);
        let (pytorch_rate, ratio) = match &pytorch {
            Ok(r) => (format!("{r:.0}"), format!("{:.3}", rate / r)),
            Err(reason) => {
                unavailable = Some(reason.clone());
                ("-".into(), "-".into())
            }
        };
        println!(
            "{preset:<10} {parameters:>12} {rate:>12.0} {pytorch_rate:>14} {ratio:>10} {:>14.2} {:>10.3}",
            model_flops / 1e9,
            model_flops / anchor
        );
    }
    if let Some(reason) = unavailable {
        println!("PyTorch not measured: {reason} (make bench installs it)");
    }
}
