//! A small real base model for every suite that submits tasks: intake refuses a task whose
//! base model is not published in the `gradients-models` store, so a test publishes one
//! first, as an operator would with `gradients model publish`.
//!
//! The model is a ~60k-parameter Llama over the byte-level tokenizer with deterministic
//! weights, written without a training framework (the same folder layout the trainer
//! writes) and exported with the project's own exporter.

use std::path::Path;

use gradients_bus::Bus;
use gradients_model::store::{self, ModelFiles, ModelIndex};
use gradients_model::{files, LlamaConfig, ModelConfig, Weight, Weights};
use gradients_text::Tokenizer;

/// The configuration of the test base model.
pub fn base_model_config() -> ModelConfig {
    ModelConfig::Llama(LlamaConfig {
        vocab_size: Tokenizer::byte_level().vocab_size(),
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_id: vec![256],
        hidden_act: "silu".into(),
        ..Default::default()
    })
}

/// The test base model's files: config, tokenizer, weights (safetensors) and ONNX export.
pub fn base_model_files() -> ModelFiles {
    let config = base_model_config();
    let mut weights = Weights::default();
    for spec in config.parameters() {
        let n: usize = spec.shape.iter().product();
        // Norms at one, the rest small and spread: a model that runs, not a trained one.
        let data = if spec.name.contains("norm") {
            vec![1.0; n]
        } else {
            (0..n).map(|i| ((i as u64 * 2_654_435_761) % 1601) as f32 / 10_000.0 - 0.08).collect()
        };
        weights.0.insert(spec.name.clone(), Weight::new(spec.shape.clone(), data));
    }
    let onnx = gradients_model::onnx::export(&config, &weights).expect("the test base model exports");
    ModelFiles {
        config: config.to_json(),
        tokenizer: Tokenizer::byte_level().to_json().into_bytes(),
        onnx: Some(onnx),
        safetensors: Some(safetensors_bytes(&weights)),
    }
}

/// Writes the test base model as a model folder (what `gradients model publish DIR` reads):
/// the trainer's files plus the ONNX export.
pub fn write_base_model_dir(dir: &Path) -> anyhow::Result<()> {
    let model = base_model_files();
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(files::CONFIG), &model.config)?;
    std::fs::write(dir.join(files::TOKENIZER), &model.tokenizer)?;
    std::fs::write(dir.join(files::WEIGHTS), model.safetensors.as_deref().unwrap_or_default())?;
    std::fs::write(dir.join(files::ONNX), model.onnx.as_deref().unwrap_or_default())?;
    Ok(())
}

/// Writes any model as the trainer writes its folder: `config.json`, the byte-level
/// `tokenizer.json` and `model.safetensors` (no ONNX export).
pub fn write_model_dir(dir: &Path, config: &ModelConfig, weights: &Weights) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(files::CONFIG), config.to_json())?;
    std::fs::write(dir.join(files::TOKENIZER), Tokenizer::byte_level().to_json())?;
    std::fs::write(dir.join(files::WEIGHTS), safetensors_bytes(weights))?;
    Ok(())
}

/// Publishes the test base model as `name` in `gradients-models` (the topology must be
/// declared: any service's start or [`gradients_bus::topology::declare`] does it).
pub async fn publish_base_model(bus: &Bus, name: &str) -> anyhow::Result<ModelIndex> {
    Ok(store::publish(bus, name, &base_model_files()).await?)
}

fn safetensors_bytes(weights: &Weights) -> Vec<u8> {
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .0
        .iter()
        .map(|(name, w)| (name.clone(), w.data.iter().flat_map(|v| v.to_le_bytes()).collect(), w.shape.clone()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = raw
        .iter()
        .map(|(name, data, shape)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data);
            (name.clone(), view.expect("a tensor view of f32 data"))
        })
        .collect();
    safetensors::serialize(views, None).expect("weights serialise")
}
