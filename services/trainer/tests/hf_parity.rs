//! Parity with Hugging Face `transformers`: for a tiny random model of each supported
//! architecture (Llama with grouped-query attention; Llama 3's RoPE scaling with a list
//! of end-of-text ids; Llama's `attention_bias`; Qwen2 with its query/key/value biases;
//! GPT-2), the folder the trainer writes loads in `transformers` with exactly the expected
//! tensors and gives the logits our tch model gives, within 1e-4 at every real position;
//! and our batched greedy generation (key-value cache, left padding) appends the ids HF's
//! `generate` appends to each prompt alone, token for token. Conversely a model of each
//! config built and saved by `transformers` itself (its config.json, with every key the
//! current version writes, and its safetensors layout) loads in our loader and gives
//! `transformers`' logits.
//!
//! `transformers` runs in the pinned `transformers` environment of scripts/python-env.sh
//! (layered on the ~4.6 GB PyTorch one, so `make bench` installs it, not `make test`). Where
//! it is not installed this test says so loudly and passes without comparing; set
//! `GRADIENTS_TRANSFORMERS_PYTHON` to use another interpreter.

use std::path::{Path, PathBuf};
use std::process::Command;

use gradients_model::{LlamaConfig, LlamaFamily, ModelConfig, RopeScaling};
use gradients_text::Tokenizer;
use gradients_trainer::checkpoint;
use gradients_trainer::generate::{generate, GenerateConfig};
use gradients_trainer::model::CausalLm;
use gradients_trainer::presets;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f32 = 1e-4;
const SEQ: usize = 40;
/// Real tokens of the second, right-padded row.
const SECOND_ROW: usize = 23;
const NEW_TOKENS: usize = 12;
/// End-of-text ids for generation: the byte-level tokenizer's and the 26 lower-case
/// letters, so that some completions stop early and some run to `NEW_TOKENS`.
fn eos() -> Vec<u32> {
    std::iter::once(256).chain(b'a' as u32..=b'z' as u32).collect()
}

fn prompts() -> Vec<Vec<u32>> {
    vec![b"Hello there".iter().map(|&b| b as u32).collect(), vec![7], (0..30).map(|i| (i * 37 + 5) % 256).collect()]
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter with `transformers`, or `None` when its environment is not installed.
fn transformers_python() -> Option<PathBuf> {
    if let Ok(python) = std::env::var("GRADIENTS_TRANSFORMERS_PYTHON") {
        return Some(python.into());
    }
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/python-env.sh"))
        .arg("transformers")
        .env("GRADIENTS_PYTHON_ENV_NO_INSTALL", "1")
        .output()
        .expect("bash runs");
    match out.status.code() {
        Some(0) => Some(String::from_utf8(out.stdout).expect("a path").trim().into()),
        Some(3) => None,
        _ => panic!("python-env.sh transformers: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn llama(f: impl FnOnce(&mut LlamaConfig)) -> ModelConfig {
    let ModelConfig::Llama(mut c) = presets::byte_llama(32, 2, 4, 2, 48, 64, false) else { unreachable!() };
    f(&mut c);
    ModelConfig::Llama(c)
}

/// Llama 3's scaling with numbers that matter at these lengths: of the four frequencies of
/// a head of 8 (θ = 10⁴), two are kept, one interpolated and one divided by 8.
fn llama3_scaling() -> RopeScaling {
    RopeScaling {
        rope_type: "llama3".into(),
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 1024,
    }
}

fn configs() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("llama, grouped-query, untied", llama(|_| {})),
        (
            "llama 3 rope scaling, tied, eos list",
            llama(|c| {
                c.rope_scaling = Some(llama3_scaling());
                c.tie_word_embeddings = true;
                c.eos_token_id = vec![256, 257];
            }),
        ),
        ("llama attention_bias", llama(|c| c.attention_bias = true)),
        (
            "qwen2, biases, tied",
            llama(|c| {
                c.family = LlamaFamily::Qwen2;
                c.tie_word_embeddings = true;
                c.rope_theta = 1e6;
                c.rms_norm_eps = 1e-6;
            }),
        ),
        ("gpt2", presets::tiny_gpt2()),
    ]
}

/// A random model whose every parameter matters: weights N(0, 0.1), biases N(0, 0.1), norm
/// scales 1 + N(0, 0.1) (a fresh model has zero biases and unit scales, which would hide a
/// bias or scale read from the wrong place).
fn random_model(config: &ModelConfig, seed: i64) -> CausalLm {
    let model = CausalLm::new(config, Device::Cpu, seed);
    tch::no_grad(|| {
        for (name, var) in model.base_variables() {
            let noise = var.randn_like() * 0.1;
            let is_scale = var.dim() == 1 && !name.ends_with(".bias");
            let value = if is_scale { noise + 1.0 } else { noise };
            var.shallow_clone().copy_(&value);
        }
    });
    model
}

fn inputs() -> (Vec<i64>, Vec<i64>) {
    let ids: Vec<i64> = (0..2 * SEQ as i64).map(|i| (i * 97 + 13) % 256).collect();
    let mask: Vec<i64> = (0..2 * SEQ).map(|i| i64::from(i < SEQ || i % SEQ < SECOND_ROW)).collect();
    (ids, mask)
}

fn tch_logits(model: &CausalLm, ids: &[i64], mask: &[i64]) -> Vec<f32> {
    let shape = [2, SEQ as i64];
    let logits = tch::no_grad(|| {
        model.forward(&Tensor::from_slice(ids).view(shape), &Tensor::from_slice(mask).view(shape), false)
    });
    Vec::<f32>::try_from(logits.to_kind(Kind::Float).flatten(0, -1)).expect("f32 logits")
}

fn max_difference_at_real_positions(a: &[f32], b: &[f32], mask: &[i64]) -> f32 {
    let vocab = a.len() / mask.len();
    (0..mask.len())
        .filter(|&position| mask[position] == 1)
        .flat_map(|position| (0..vocab).map(move |v| position * vocab + v))
        .map(|i| (a[i] - b[i]).abs())
        .fold(0.0, f32::max)
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("logits file");
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()
}

#[test]
fn logits_equal_hf_transformers_for_every_architecture() {
    let Some(python) = transformers_python() else {
        let line = "!".repeat(78);
        eprintln!(
            "\n{line}\nSKIPPED: HF parity not checked: the transformers environment is not installed.\n\
             Install it with `bash scripts/python-env.sh transformers` (make bench does) and rerun.\n{line}\n"
        );
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let (ids, mask) = inputs();
    let tokenizer = Tokenizer::byte_level();
    let mut jobs = Vec::new();
    let mut models = Vec::new();
    let mut hf_written = Vec::new();
    for (i, (label, config)) in configs().into_iter().enumerate() {
        let model = random_model(&config, 40 + i as i64);
        let dir = scratch.path().join(format!("model-{i}"));
        checkpoint::save(&model, &tokenizer, &dir).expect("save");
        let out = scratch.path().join(format!("logits-{i}.f32"));
        let generated = scratch.path().join(format!("generated-{i}.json"));
        let hf_dir = scratch.path().join(format!("hf-written-{i}"));
        let hf_out = scratch.path().join(format!("hf-written-logits-{i}.f32"));
        jobs.push(serde_json::json!({
            "dir": dir,
            "input_ids": ids.chunks(SEQ).collect::<Vec<_>>(),
            "attention_mask": mask.chunks(SEQ).collect::<Vec<_>>(),
            "out": out,
            "generate": {"prompts": prompts(), "max_new_tokens": NEW_TOKENS, "eos": eos(), "out": generated},
            "hf_written": {"dir": hf_dir, "out": hf_out, "seed": 90 + i},
        }));
        models.push((label, model, out, generated));
        hf_written.push((label, hf_dir, hf_out));
    }
    let request = scratch.path().join("jobs.json");
    std::fs::write(&request, serde_json::to_vec(&jobs).expect("json")).expect("write jobs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_parity/hf_logits.py");
    let run = Command::new(&python).arg(&script).arg(&request).output().expect("python runs");
    assert!(run.status.success(), "transformers failed:\n{}", String::from_utf8_lossy(&run.stderr));

    for (label, model, out, generated) in &models {
        let hf = read_f32(out);
        let ours = tch_logits(model, &ids, &mask);
        assert_eq!(hf.len(), ours.len(), "{label}: logits shape");
        let difference = max_difference_at_real_positions(&ours, &hf, &mask);
        eprintln!("{label}: max |Δ logit| against transformers = {difference:e}");
        assert!(difference <= TOLERANCE, "{label}: max |Δ logit| = {difference}");
        let hf: Vec<Vec<u32>> = serde_json::from_slice(&std::fs::read(generated).expect("generated")).expect("json");
        let ours = generate(model, &prompts(), &GenerateConfig::greedy(NEW_TOKENS, eos(), 257)).expect("generate");
        let ours: Vec<Vec<u32>> = ours.into_iter().map(|c| c.ids).collect();
        assert_eq!(ours, hf, "{label}: greedy generation differs from transformers'");
        eprintln!(
            "{label}: greedy completions equal transformers' ({:?} tokens)",
            hf.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }

    for (label, dir, out) in &hf_written {
        let loaded = checkpoint::load(dir, Device::Cpu).unwrap_or_else(|e| panic!("{label}: HF's own folder: {e}"));
        let hf = read_f32(out);
        let difference = max_difference_at_real_positions(&tch_logits(&loaded.model, &ids, &mask), &hf, &mask);
        eprintln!("{label}: folder written by transformers loads, max |Δ logit| = {difference:e}");
        assert!(difference <= TOLERANCE, "{label} (HF-written folder): max |Δ logit| = {difference}");
    }

    // Not vacuous: the same weights without Llama 3's scaling (or without Qwen2's biases)
    // are far from what transformers computed.
    for (index, strip) in [(1usize, "rope scaling"), (3, "qwen2 biases")] {
        let (label, model, out, _) = &models[index];
        let ModelConfig::Llama(mut c) = model.config.clone() else { unreachable!() };
        let mut weights = model.base_variables();
        match strip {
            "rope scaling" => c.rope_scaling = None,
            _ => {
                c.family = LlamaFamily::Llama;
                weights.retain(|name, _| !name.ends_with(".bias"));
            }
        }
        let plain = CausalLm::new(&ModelConfig::Llama(c), Device::Cpu, 0);
        tch::no_grad(|| {
            for (name, var) in plain.base_variables() {
                var.shallow_clone().copy_(&weights[&name]);
            }
        });
        let hf = read_f32(out);
        let difference = max_difference_at_real_positions(&tch_logits(&plain, &ids, &mask), &hf, &mask);
        assert!(difference > 1e-2, "{label} without its {strip}: only {difference:e} from transformers");
    }
}
