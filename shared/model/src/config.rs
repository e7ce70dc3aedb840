//! The Hugging Face `config.json` of the architectures Gradients trains, and the parameter
//! list each implies.
//!
//! Only the keys that change the computation are read; the rest of a real HF config
//! (`torch_dtype`, `transformers_version`, ...) is ignored, so real checkpoints load.

use serde::{Deserialize, Serialize};

/// A model configuration, told apart by HF's `model_type` key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model_type", rename_all = "lowercase")]
pub enum ModelConfig {
    /// A Llama-style decoder: RMSNorm, RoPE, SwiGLU, grouped-query attention.
    Llama(LlamaConfig),
    /// GPT-2: learned positions, LayerNorm, GELU (tanh), fused QKV `Conv1D` layers.
    Gpt2(Gpt2Config),
}

/// `LlamaForCausalLM`'s configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Fewer key/value heads than query heads is grouped-query attention; HF's default is
    /// the number of attention heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    /// HF's default for Llama is untied (a separate `lm_head.weight`).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Only SiLU (SwiGLU) is implemented; kept so a config naming another is refused.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
}

/// `GPT2LMHeadModel`'s configuration (the output layer is always tied to `wte`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// The MLP width; HF's default is 4 × `n_embd`.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_gpt2_activation")]
    pub activation_function: String,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_hidden_act() -> String {
    "silu".into()
}
fn default_layer_norm_epsilon() -> f64 {
    1e-5
}
fn default_gpt2_activation() -> String {
    "gelu_new".into()
}

/// A configuration that cannot describe a model we can build.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json is not valid for a supported architecture (llama, gpt2): {0}")]
    Parse(#[from] serde_json::Error),
    #[error("config.json: {key} = {value} is invalid: {reason}")]
    Invalid { key: &'static str, value: String, reason: String },
}

/// One parameter a checkpoint of a configuration holds, under its Hugging Face name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// What a tensor name found in a checkpoint means for a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointName {
    /// A parameter, under its canonical name.
    Parameter(String),
    /// A buffer HF sometimes saves that we recompute (causal masks, RoPE frequencies) or a
    /// tied output layer saved anyway.
    Ignored,
}

impl ModelConfig {
    /// Parses and validates a `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: ModelConfig = serde_json::from_slice(bytes)?;
        config.validate()?;
        Ok(config)
    }

    /// The `config.json` bytes for this configuration (pretty, with `architectures`, as HF
    /// writes it, so `transformers` can load our checkpoints too).
    pub fn to_json(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).expect("a config serialises");
        let architecture = match self {
            ModelConfig::Llama(_) => "LlamaForCausalLM",
            ModelConfig::Gpt2(_) => "GPT2LMHeadModel",
        };
        value["architectures"] = serde_json::json!([architecture]);
        serde_json::to_vec_pretty(&value).expect("a JSON value serialises")
    }

    /// `llama` or `gpt2`.
    pub fn architecture(&self) -> &'static str {
        match self {
            ModelConfig::Llama(_) => "llama",
            ModelConfig::Gpt2(_) => "gpt2",
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.vocab_size,
            ModelConfig::Gpt2(c) => c.vocab_size,
        }
    }

    /// The longest sequence the model accepts.
    pub fn max_positions(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.max_position_embeddings,
            ModelConfig::Gpt2(c) => c.n_positions,
        }
    }

    /// Checks the sizes fit together, naming the key that does not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, value: &dyn std::fmt::Display, reason: &str| ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason: reason.to_owned(),
        };
        match self {
            ModelConfig::Llama(c) => {
                for (key, value) in [
                    ("vocab_size", c.vocab_size),
                    ("hidden_size", c.hidden_size),
                    ("intermediate_size", c.intermediate_size),
                    ("num_hidden_layers", c.num_hidden_layers),
                    ("num_attention_heads", c.num_attention_heads),
                    ("max_position_embeddings", c.max_position_embeddings),
                ] {
                    if value == 0 {
                        return Err(invalid(key, &value, "must be positive"));
                    }
                }
                if c.hidden_size % c.num_attention_heads != 0 {
                    return Err(invalid("hidden_size", &c.hidden_size, "must be a multiple of num_attention_heads"));
                }
                let kv = c.kv_heads();
                if kv == 0 || c.num_attention_heads % kv != 0 {
                    return Err(invalid("num_key_value_heads", &kv, "must divide num_attention_heads"));
                }
                if c.head_dim() % 2 != 0 {
                    return Err(invalid("hidden_size", &c.hidden_size, "head size must be even for RoPE"));
                }
                if c.hidden_act != "silu" {
                    return Err(invalid("hidden_act", &c.hidden_act, "only silu (SwiGLU) is supported"));
                }
                if !(c.rms_norm_eps > 0.0 && c.rope_theta > 0.0) {
                    return Err(invalid("rms_norm_eps", &c.rms_norm_eps, "eps and rope_theta must be positive"));
                }
            }
            ModelConfig::Gpt2(c) => {
                for (key, value) in [
                    ("vocab_size", c.vocab_size),
                    ("n_positions", c.n_positions),
                    ("n_embd", c.n_embd),
                    ("n_layer", c.n_layer),
                    ("n_head", c.n_head),
                ] {
                    if value == 0 {
                        return Err(invalid(key, &value, "must be positive"));
                    }
                }
                if c.n_embd % c.n_head != 0 {
                    return Err(invalid("n_embd", &c.n_embd, "must be a multiple of n_head"));
                }
                if c.activation_function != "gelu_new" {
                    return Err(invalid(
                        "activation_function",
                        &c.activation_function,
                        "only gelu_new (tanh approximation) is supported",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every parameter of the model, by HF name, in a fixed order.
    pub fn parameters(&self) -> Vec<ParameterSpec> {
        let mut out = Vec::new();
        let mut push = |name: String, shape: &[usize]| out.push(ParameterSpec { name, shape: shape.to_vec() });
        match self {
            ModelConfig::Llama(c) => {
                let (h, i, v, kv) = (c.hidden_size, c.intermediate_size, c.vocab_size, c.kv_heads() * c.head_dim());
                push("model.embed_tokens.weight".into(), &[v, h]);
                for layer in 0..c.num_hidden_layers {
                    let p = format!("model.layers.{layer}");
                    push(format!("{p}.input_layernorm.weight"), &[h]);
                    push(format!("{p}.self_attn.q_proj.weight"), &[h, h]);
                    push(format!("{p}.self_attn.k_proj.weight"), &[kv, h]);
                    push(format!("{p}.self_attn.v_proj.weight"), &[kv, h]);
                    push(format!("{p}.self_attn.o_proj.weight"), &[h, h]);
                    push(format!("{p}.post_attention_layernorm.weight"), &[h]);
                    push(format!("{p}.mlp.gate_proj.weight"), &[i, h]);
                    push(format!("{p}.mlp.up_proj.weight"), &[i, h]);
                    push(format!("{p}.mlp.down_proj.weight"), &[h, i]);
                }
                push("model.norm.weight".into(), &[h]);
                if !c.tie_word_embeddings {
                    push("lm_head.weight".into(), &[v, h]);
                }
            }
            ModelConfig::Gpt2(c) => {
                let (e, inner) = (c.n_embd, c.inner());
                push("transformer.wte.weight".into(), &[c.vocab_size, e]);
                push("transformer.wpe.weight".into(), &[c.n_positions, e]);
                for layer in 0..c.n_layer {
                    let p = format!("transformer.h.{layer}");
                    push(format!("{p}.ln_1.weight"), &[e]);
                    push(format!("{p}.ln_1.bias"), &[e]);
                    // HF's Conv1D stores weights as [in, out], the transpose of nn.Linear.
                    push(format!("{p}.attn.c_attn.weight"), &[e, 3 * e]);
                    push(format!("{p}.attn.c_attn.bias"), &[3 * e]);
                    push(format!("{p}.attn.c_proj.weight"), &[e, e]);
                    push(format!("{p}.attn.c_proj.bias"), &[e]);
                    push(format!("{p}.ln_2.weight"), &[e]);
                    push(format!("{p}.ln_2.bias"), &[e]);
                    push(format!("{p}.mlp.c_fc.weight"), &[e, inner]);
                    push(format!("{p}.mlp.c_fc.bias"), &[inner]);
                    push(format!("{p}.mlp.c_proj.weight"), &[inner, e]);
                    push(format!("{p}.mlp.c_proj.bias"), &[e]);
                }
                push("transformer.ln_f.weight".into(), &[e]);
                push("transformer.ln_f.bias".into(), &[e]);
            }
        }
        out
    }

    /// The number of scalar parameters.
    pub fn parameter_count(&self) -> u64 {
        self.parameters().iter().map(|p| p.shape.iter().product::<usize>() as u64).sum()
    }

    /// Maps a tensor name found in a HF checkpoint to our canonical name.
    ///
    /// GPT-2 checkpoints exist with and without the `transformer.` prefix (the original
    /// OpenAI conversion has none), and some carry the attention mask buffers.
    pub fn checkpoint_name(&self, raw: &str) -> CheckpointName {
        match self {
            ModelConfig::Llama(c) => {
                if raw.ends_with("rotary_emb.inv_freq") || (c.tie_word_embeddings && raw == "lm_head.weight") {
                    CheckpointName::Ignored
                } else {
                    CheckpointName::Parameter(raw.to_owned())
                }
            }
            ModelConfig::Gpt2(_) => {
                if raw.ends_with(".attn.bias") || raw.ends_with(".attn.masked_bias") || raw == "lm_head.weight" {
                    CheckpointName::Ignored
                } else if raw.starts_with("transformer.") {
                    CheckpointName::Parameter(raw.to_owned())
                } else {
                    CheckpointName::Parameter(format!("transformer.{raw}"))
                }
            }
        }
    }
}

impl LlamaConfig {
    /// Key/value heads (grouped-query attention when fewer than attention heads).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

impl Gpt2Config {
    /// The MLP width.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config.json of HF's `TinyLlama/TinyLlama-1.1B-Chat-v1.0`, abridged only of
    /// keys that do not matter, to prove real configs parse.
    const TINYLLAMA: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1,
      "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
      "intermediate_size": 5632, "max_position_embeddings": 2048, "model_type": "llama",
      "num_attention_heads": 32, "num_hidden_layers": 22, "num_key_value_heads": 4,
      "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
      "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.35.0",
      "use_cache": true, "vocab_size": 32000 }"#;

    /// `openai-community/gpt2`'s config.json.
    const GPT2: &str = r#"{
      "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
      "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
      "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
      "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": null,
      "vocab_size": 50257 }"#;

    #[test]
    fn real_hf_configs_parse_and_count_their_parameters() {
        let llama = ModelConfig::from_json(TINYLLAMA.as_bytes()).expect("tinyllama");
        assert_eq!(llama.architecture(), "llama");
        // TinyLlama's published size.
        assert_eq!(llama.parameter_count(), 1_100_048_384);
        let gpt2 = ModelConfig::from_json(GPT2.as_bytes()).expect("gpt2");
        // GPT-2 small: 124,439,808 parameters with the tied head.
        assert_eq!(gpt2.parameter_count(), 124_439_808);
    }

    #[test]
    fn config_round_trips_through_json() {
        let llama = ModelConfig::from_json(TINYLLAMA.as_bytes()).expect("tinyllama");
        let again = ModelConfig::from_json(&llama.to_json()).expect("again");
        assert_eq!(again, llama);
        let json: serde_json::Value = serde_json::from_slice(&llama.to_json()).expect("json");
        assert_eq!(json["architectures"][0], "LlamaForCausalLM");
        assert_eq!(json["model_type"], "llama");
    }

    #[test]
    fn bad_configs_name_the_key() {
        let bad = TINYLLAMA.replace("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5");
        let err = ModelConfig::from_json(bad.as_bytes()).expect_err("5 does not divide 32");
        assert!(err.to_string().contains("num_key_value_heads = 5"), "{err}");
        let err = ModelConfig::from_json(br#"{"model_type": "bert", "vocab_size": 3}"#).expect_err("bert");
        assert!(err.to_string().contains("llama, gpt2"), "{err}");
        let err = ModelConfig::from_json(b"{not json").expect_err("garbage");
        assert!(matches!(err, ConfigError::Parse(_)));
        let bad = GPT2.replace("gelu_new", "relu");
        let err = ModelConfig::from_json(bad.as_bytes()).expect_err("relu");
        assert!(err.to_string().contains("activation_function"), "{err}");
    }

    #[test]
    fn checkpoint_names_are_canonicalised() {
        let gpt2 = ModelConfig::from_json(GPT2.as_bytes()).expect("gpt2");
        assert_eq!(
            gpt2.checkpoint_name("h.0.ln_1.weight"),
            CheckpointName::Parameter("transformer.h.0.ln_1.weight".into())
        );
        assert_eq!(gpt2.checkpoint_name("h.0.attn.bias"), CheckpointName::Ignored);
        assert_eq!(gpt2.checkpoint_name("lm_head.weight"), CheckpointName::Ignored);
        let llama = ModelConfig::from_json(TINYLLAMA.as_bytes()).expect("llama");
        assert_eq!(llama.checkpoint_name("lm_head.weight"), CheckpointName::Parameter("lm_head.weight".into()));
    }
}
