//! The project's own base models, by name: sizes of the Llama-style decoders that
//! `gradients-trainer pretrain` builds (byte-level vocabulary of 258 tokens).
//!
//! The names match `models` in the market configuration (`tiny-1m`, `tiny-10m`), where
//! dispatch reads their parameter counts; a test keeps the two in step.

use gradients_model::{Gpt2Config, LlamaConfig, ModelConfig};

/// The byte-level tokenizer's vocabulary: 256 bytes, end-of-text, padding.
pub const BYTE_VOCAB: usize = 258;

/// The preset names, smallest first.
pub const NAMES: [&str; 2] = ["tiny-1m", "tiny-10m"];

/// A Llama-style decoder over the byte-level vocabulary (the presets, and tests' small ones).
pub fn byte_llama(
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    intermediate: usize,
    max_positions: usize,
    tied: bool,
) -> ModelConfig {
    ModelConfig::Llama(LlamaConfig {
        vocab_size: BYTE_VOCAB,
        hidden_size: hidden,
        intermediate_size: intermediate,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: max_positions,
        tie_word_embeddings: tied,
        bos_token_id: None,
        eos_token_id: vec![256],
        hidden_act: "silu".into(),
        ..Default::default()
    })
}

/// The configuration of a preset, or `None` for an unknown name.
pub fn config(name: &str) -> Option<ModelConfig> {
    match name {
        // ~0.94M parameters.
        "tiny-1m" => Some(byte_llama(128, 5, 4, 2, 344, 256, true)),
        // ~9.5M parameters.
        "tiny-10m" => Some(byte_llama(384, 6, 6, 2, 1024, 256, true)),
        _ => None,
    }
}

/// A GPT-2 of about the same size as `tiny-1m`, for tests of the second architecture.
pub fn tiny_gpt2() -> ModelConfig {
    ModelConfig::Gpt2(Gpt2Config {
        vocab_size: BYTE_VOCAB,
        n_positions: 256,
        n_embd: 128,
        n_layer: 4,
        n_head: 4,
        n_inner: None,
        layer_norm_epsilon: 1e-5,
        activation_function: "gelu_new".into(),
        bos_token_id: None,
        eos_token_id: Some(256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_about_their_names_size() {
        let small = config("tiny-1m").expect("preset").parameter_count();
        let large = config("tiny-10m").expect("preset").parameter_count();
        assert!((800_000..1_200_000).contains(&small), "{small}");
        assert!((8_000_000..12_000_000).contains(&large), "{large}");
        assert!(config("tiny-100m").is_none());
        for name in NAMES {
            config(name).expect("preset").validate().expect("valid");
        }
    }
}
