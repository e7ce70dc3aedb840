//! The exported ONNX model computes what the tch model computes: both architectures, with
//! grouped-query attention, Qwen2's biases and Llama 3's RoPE scaling, right padding, and a
//! LoRA model merged on export.
//!
//! Tolerance: max |Δlogit| ≤ 1e-4 at every real (unpadded) position. Both sides run f32
//! on CPU; the difference is summation order in different kernels (observed ~1e-6).

use gradients_data::TaskType;
use gradients_model::onnx::inspect;
use gradients_model::{LlamaConfig, LlamaFamily, ModelConfig, RopeScaling};
use gradients_text::Tokenizer;
use gradients_trainer::export::{export, BaseModel};
use gradients_trainer::model::{CausalLm, LoraConfig};
use gradients_trainer::presets;
use gradients_trainer::train::{prepare, Hyperparameters, Run};
use indicatif::ProgressBar;
use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use tch::{Device, Tensor};

const TOLERANCE: f32 = 1e-4;

fn llama(tied: bool) -> ModelConfig {
    presets::byte_llama(48, 2, 6, 2, 80, 64, tied)
}

/// Two rows of 9 tokens, the second padded after 5.
fn inputs() -> (Vec<i64>, Vec<i64>) {
    let ids: Vec<i64> = (0..18).map(|i| (i * 37 + 11) % 256).collect();
    let mask: Vec<i64> = (0..18).map(|i| i64::from(i < 9 || i % 9 < 5)).collect();
    (ids, mask)
}

/// ONNX Runtime allows one environment per process, so the tests share it.
fn environment() -> &'static ort::environment::Environment {
    static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    ENV.get_or_init(|| ort::init().with_name("gradients-parity").build().expect("ONNX Runtime loads"))
}

fn ort_logits(onnx: &[u8], ids: &[i64], mask: &[i64]) -> Vec<f32> {
    let mut session = Session::builder(environment())
        .expect("builder")
        .commit_from_memory(onnx)
        .expect("ONNX Runtime accepts the model");
    let ids = OrtTensor::from_array(([2usize, 9], ids.to_vec())).expect("ids");
    let mask = OrtTensor::from_array(([2usize, 9], mask.to_vec())).expect("mask");
    let outputs = session.run(ort::inputs!["input_ids" => ids, "attention_mask" => mask]).expect("inference");
    let (shape, data) = outputs["logits"].try_extract_tensor::<f32>().expect("logits");
    assert_eq!(&shape[..], &[2, 9, presets::BYTE_VOCAB as i64]);
    data.to_vec()
}

fn max_difference_at_real_positions(model: &CausalLm, onnx: &[u8]) -> f32 {
    let (ids, mask) = inputs();
    let tch_logits =
        model.forward(&Tensor::from_slice(&ids).view([2, 9]), &Tensor::from_slice(&mask).view([2, 9]), false);
    let tch_logits = Vec::<f32>::try_from(tch_logits.flatten(0, -1)).expect("logits");
    let ort_logits = ort_logits(onnx, &ids, &mask);
    let vocab = presets::BYTE_VOCAB;
    (0..18)
        .filter(|&position| mask[position] == 1)
        .flat_map(|position| (0..vocab).map(move |v| position * vocab + v))
        .map(|i| (tch_logits[i] - ort_logits[i]).abs())
        .fold(0.0, f32::max)
}

fn base() -> BaseModel {
    BaseModel { name: "test".into(), weights_sha256: "0".repeat(64), tokenizer_sha256: "0".repeat(64) }
}

/// Qwen2 (query/key/value biases) with Llama 3's RoPE scaling, frequencies chosen so that
/// the scaling changes the angles at these positions.
fn qwen2_scaled() -> ModelConfig {
    let ModelConfig::Llama(c) = llama(true) else { unreachable!() };
    ModelConfig::Llama(LlamaConfig {
        family: LlamaFamily::Qwen2,
        rope_scaling: Some(RopeScaling {
            rope_type: "llama3".into(),
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 256,
        }),
        ..c
    })
}

#[test]
fn exported_models_match_tch_within_tolerance() {
    for config in [llama(true), llama(false), qwen2_scaled(), presets::tiny_gpt2()] {
        let model = CausalLm::new(&config, Device::Cpu, 21);
        // A fresh model's biases are zero, which would hide a bias the export drops.
        tch::no_grad(|| {
            for (name, var) in model.base_variables() {
                if name.ends_with(".bias") {
                    var.shallow_clone().copy_(&(var.randn_like() * 0.5));
                }
            }
        });
        let artifact = export(&model, &base(), serde_json::json!({})).expect("export");
        let difference = max_difference_at_real_positions(&model, &artifact.onnx);
        eprintln!("{}: max |Δ logit| = {difference:e}", config.architecture());
        assert!(difference <= TOLERANCE, "{}: max |Δ| = {difference}", config.architecture());
        let summary = inspect(&artifact.onnx).expect("inspect");
        assert_eq!((summary.ir_version, summary.opset), (10, 17));
        assert_eq!(summary.parameter_count, config.parameter_count());
        assert_eq!(artifact.manifest.onnx_sha256, gradients_model::manifest::sha256_hex(&artifact.onnx));
    }
}

#[test]
fn a_lora_model_exports_merged_and_matches_the_adapted_model() {
    let tokenizer = Tokenizer::byte_level();
    let rows: Vec<gradients_data::Row> = (0..40)
        .map(|i| {
            let value =
                serde_json::json!({"instruction": "Echo.", "input": format!("w{i}"), "output": format!("w{i}")});
            gradients_data::Row::from_map(value.as_object().expect("object").clone())
        })
        .collect();
    let data = prepare(&rows, TaskType::Instruct, &tokenizer, 64, 1).expect("data");
    let mut hyper = Hyperparameters::autotrain(64);
    hyper.learning_rate = 1e-2;
    hyper.lora = Some(LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0, ..LoraConfig::default() });
    let mut run = Run::new(CausalLm::new(&llama(true), Device::Cpu, 2), None, hyper, 10, 257, &data).expect("run");
    run.advance(&data, 10, None, &ProgressBar::hidden()).expect("train");
    // Export straight from the adapted model (adapters still attached): merged on the way.
    let artifact = export(&run.model, &base(), serde_json::json!({})).expect("export");
    let difference = max_difference_at_real_positions(&run.model, &artifact.onnx);
    assert!(difference <= TOLERANCE, "LoRA: max |Δ| = {difference}");
}
