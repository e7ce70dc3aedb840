//! Small real models for the tests, made without a training framework: a Llama-style
//! config over the byte-level tokenizer, seeded random weights, the HF folder written as
//! the trainer writes it (`gradients_testkit::write_model_dir`), and the exporter's ONNX; plus the raw protobuf to tamper with.

use gradients_model::{LlamaConfig, ModelConfig, Weight, Weights};
use gradients_proto::onnx::ModelProto;
use gradients_text::Tokenizer;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A ~60k-parameter Llama over the byte-level vocabulary (258).
pub fn config() -> ModelConfig {
    llama(32, 2)
}

/// Another architecture of the same family: a valid model of a different base.
pub fn other_config() -> ModelConfig {
    llama(48, 2)
}

fn llama(hidden: usize, layers: usize) -> ModelConfig {
    ModelConfig::Llama(LlamaConfig {
        vocab_size: Tokenizer::byte_level().vocab_size(),
        hidden_size: hidden,
        intermediate_size: hidden * 2,
        num_hidden_layers: layers,
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

/// Seeded weights: norms at one, the rest small and random.
pub fn weights(config: &ModelConfig, seed: u64) -> Weights {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut weights = Weights::default();
    for spec in config.parameters() {
        let n: usize = spec.shape.iter().product();
        let data = if spec.name.contains("norm") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| rng.random_range(-0.08f32..0.08)).collect()
        };
        weights.0.insert(spec.name.clone(), Weight::new(spec.shape.clone(), data));
    }
    weights
}

/// The same weights with every embedding value nudged: a "fine-tune".
pub fn nudged(weights: &Weights, by: f32) -> Weights {
    let mut out = weights.clone();
    for (name, weight) in out.0.iter_mut() {
        if name.contains("embed") {
            weight.data.iter_mut().for_each(|v| *v += by);
        }
    }
    out
}

pub fn export(config: &ModelConfig, weights: &Weights) -> Vec<u8> {
    gradients_model::onnx::export(config, weights).expect("export")
}

/// Decodes, changes and re-encodes an ONNX file.
pub fn tamper(onnx: &[u8], change: impl FnOnce(&mut ModelProto)) -> Vec<u8> {
    let mut model = ModelProto::decode(onnx).unwrap();
    change(&mut model);
    model.encode_to_vec()
}
