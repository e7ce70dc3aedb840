//! Model folders: bit-exact round trips of both architectures, real HF layouts, and clear
//! errors for broken folders.

use std::path::Path;

use gradients_model::ModelConfig;
use gradients_text::Tokenizer;
use gradients_trainer::checkpoint::{self, CheckpointError};
use gradients_trainer::model::{CausalLm, LoraConfig};
use gradients_trainer::presets;
use tch::{Device, Kind, Tensor};

fn small_llama(tied: bool) -> ModelConfig {
    presets::byte_llama(32, 2, 4, 2, 48, 64, tied)
}

/// Qwen2: its query/key/value biases are parameters of the folder too.
fn qwen2() -> ModelConfig {
    let ModelConfig::Llama(c) = small_llama(true) else { unreachable!() };
    ModelConfig::Llama(gradients_model::LlamaConfig { family: gradients_model::LlamaFamily::Qwen2, ..c })
}

fn sample_inputs() -> (Tensor, Tensor) {
    let ids = Tensor::from_slice(&[5i64, 80, 81, 82, 9, 10, 72, 105, 256, 257, 257, 257]).view([2, 6]);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]).view([2, 6]);
    (ids, mask)
}

fn assert_same_parameters(a: &CausalLm, b: &CausalLm) {
    let (va, vb) = (a.base_variables(), b.base_variables());
    assert_eq!(va.len(), vb.len());
    for (name, tensor) in &va {
        assert!(tensor.equal(&vb[name]), "{name} differs");
    }
}

#[test]
fn both_architectures_round_trip_bit_exactly() {
    for config in [small_llama(true), small_llama(false), qwen2(), presets::tiny_gpt2()] {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = CausalLm::new(&config, Device::Cpu, 7);
        let tokenizer = Tokenizer::byte_level();
        checkpoint::save(&model, &tokenizer, dir.path()).expect("save");
        let loaded = checkpoint::load(dir.path(), Device::Cpu).expect("load");
        assert_eq!(loaded.model.config, config);
        assert_same_parameters(&model, &loaded.model);
        let (ids, mask) = sample_inputs();
        let before = model.forward(&ids, &mask, false);
        assert!(before.equal(&loaded.model.forward(&ids, &mask, false)), "{} logits differ", config.architecture());
        // Saving what was loaded gives the same bytes again.
        let again = tempfile::tempdir().expect("tempdir");
        checkpoint::save(&loaded.model, &loaded.tokenizer, again.path()).expect("save again");
        let bytes = |d: &Path| std::fs::read(d.join("model.safetensors")).expect("read");
        assert_eq!(bytes(dir.path()), bytes(again.path()));
    }
}

#[test]
fn a_hf_gpt2_folder_without_prefix_with_buffers_in_bf16_loads() {
    let config = presets::tiny_gpt2();
    let model = CausalLm::new(&config, Device::Cpu, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    // The layout of the original OpenAI conversion: no `transformer.` prefix, the causal
    // mask saved as `h.N.attn.bias`, and here half-precision storage.
    let mut tensors: Vec<(String, Tensor)> = model
        .base_variables()
        .into_iter()
        .map(|(name, t)| (name.trim_start_matches("transformer.").to_owned(), t.to_kind(Kind::BFloat16)))
        .collect();
    tensors.push(("h.0.attn.bias".into(), Tensor::ones([1, 1, 256, 256], (Kind::Float, Device::Cpu))));
    Tensor::write_safetensors(&tensors, dir.path().join("model.safetensors")).expect("write");
    std::fs::write(dir.path().join("config.json"), config.to_json()).expect("config");
    std::fs::write(dir.path().join("tokenizer.json"), Tokenizer::byte_level().to_json()).expect("tokenizer");
    let loaded = checkpoint::load(dir.path(), Device::Cpu).expect("load");
    let original =
        model.base_variables()["transformer.h.1.mlp.c_fc.weight"].to_kind(Kind::BFloat16).to_kind(Kind::Float);
    assert!(loaded.model.base_variables()["transformer.h.1.mlp.c_fc.weight"].equal(&original));
}

fn saved_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    checkpoint::save(&CausalLm::new(&small_llama(true), Device::Cpu, 1), &Tokenizer::byte_level(), dir.path())
        .expect("save");
    dir
}

#[test]
fn broken_folders_give_errors_naming_the_file() {
    let dir = saved_folder();
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).expect("read");
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = checkpoint::load(dir.path(), Device::Cpu).err().expect("truncated weights");
    assert!(matches!(err, CheckpointError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    let dir = saved_folder();
    std::fs::write(dir.path().join("config.json"), br#"{"model_type": "llama", "vocab_size": 258}"#).expect("config");
    let err = checkpoint::load(dir.path(), Device::Cpu).err().expect("bad config");
    assert!(matches!(err, CheckpointError::Config { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");

    let dir = saved_folder();
    std::fs::remove_file(dir.path().join("tokenizer.json")).expect("remove");
    let err = checkpoint::load(dir.path(), Device::Cpu).err().expect("no tokenizer");
    assert!(matches!(err, CheckpointError::MissingFile { .. }), "{err}");

    // A config we cannot run exactly is refused naming the key, before any weight is read.
    let dir = saved_folder();
    let mut config: serde_json::Value = serde_json::from_slice(&small_llama(true).to_json()).expect("json");
    config["rope_scaling"] =
        serde_json::json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32});
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
    let err = checkpoint::load(dir.path(), Device::Cpu).err().expect("yarn");
    assert!(matches!(err, CheckpointError::Config { .. }), "{err}");
    assert!(err.to_string().contains("rope_scaling.rope_type = \"yarn\""), "{err}");

    // A config that disagrees with the weights: more layers than were saved.
    let dir = saved_folder();
    let ModelConfig::Llama(mut bigger) = small_llama(true) else { unreachable!() };
    bigger.intermediate_size = 64;
    std::fs::write(dir.path().join("config.json"), ModelConfig::Llama(bigger).to_json()).expect("config");
    let err = checkpoint::load(dir.path(), Device::Cpu).err().expect("shape mismatch");
    assert!(matches!(err, CheckpointError::Shape { .. }), "{err}");
    assert!(err.to_string().contains("mlp"), "{err}");
}

#[test]
fn lora_starts_equal_to_its_base_and_trains_only_adapters() {
    let mut model = CausalLm::new(&small_llama(false), Device::Cpu, 5);
    let (ids, mask) = sample_inputs();
    let base_logits = model.forward(&ids, &mask, false);
    let base_trainable = model.trainable_count();
    let adapted = model.add_lora(&LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0, ..LoraConfig::default() }, 1);
    assert_eq!(adapted, 2 * 7, "q, k, v, o, gate, up, down in each of 2 layers");
    assert!(model.forward(&ids, &mask, false).allclose(&base_logits, 0.0, 0.0, false));
    let adapter_count = model.trainable_count();
    assert!(adapter_count > 0 && adapter_count < base_trainable / 2, "{adapter_count} of {base_trainable}");
}
