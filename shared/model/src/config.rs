//! The Hugging Face `config.json` of the architectures Gradients trains, and the parameter
//! list each implies.
//!
//! Supported: Llama-style decoders (`model_type` `llama`: Llama 2/3.x, SmolLM2, TinyLlama;
//! `qwen2`: Qwen2 and Qwen2.5, whose query/key/value projections carry biases) and GPT-2.
//! A config is read key by key (the `config_keys` module): every key either changes nothing
//! the model computes (`torch_dtype`, dropout rates, ...), is read, or must hold the one
//! value we implement (`use_sliding_window: false`, `rope_scaling` of type `llama3` or none,
//! ...). Anything else is refused with [`ConfigError::Unsupported`] naming the key, so a
//! checkpoint is never loaded to compute something other than what its authors trained.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A model configuration, told apart by HF's `model_type` key.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// A Llama-style decoder: RMSNorm, RoPE, SwiGLU, grouped-query attention (`llama` or
    /// `qwen2`, see [`LlamaConfig::family`]).
    Llama(LlamaConfig),
    /// GPT-2: learned positions, LayerNorm, GELU (tanh), fused QKV `Conv1D` layers.
    Gpt2(Gpt2Config),
}

/// Which HF model class a Llama-style config belongs to: the same computation except that
/// Qwen2 always has biases on its query, key and value projections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LlamaFamily {
    /// `LlamaForCausalLM`.
    #[default]
    Llama,
    /// `Qwen2ForCausalLM`.
    Qwen2,
}

/// `LlamaForCausalLM`'s (and `Qwen2ForCausalLM`'s) configuration. `Default` is HF's
/// `LlamaConfig()`, for building small configs with `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Set from `model_type`, not a key of its own.
    #[serde(skip)]
    pub family: LlamaFamily,
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
    /// RoPE frequency scaling; only Llama 3's (`rope_type` `llama3`) is implemented.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    /// HF's default for Llama is untied (a separate `lm_head.weight`).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's `attention_bias`: biases on all four attention projections (Qwen2's
    /// query/key/value biases come from its family, not from this key).
    #[serde(default, skip_serializing_if = "is_false")]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// One id or a list (Llama 3 instruct models end a turn with any of three).
    #[serde(default, with = "token_ids")]
    pub eos_token_id: Vec<u32>,
    /// Only SiLU (SwiGLU) is implemented; kept so a config naming another is refused.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
}

/// Llama 3's RoPE scaling (`rope_scaling` with `rope_type` `llama3`): long wavelengths are
/// divided by `factor`, short ones kept, the band between interpolated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    pub rope_type: String,
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
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
fn is_false(value: &bool) -> bool {
    !value
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self {
            family: LlamaFamily::Llama,
            vocab_size: 32_000,
            hidden_size: 4096,
            intermediate_size: 11_008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            rms_norm_eps: default_rms_norm_eps(),
            rope_theta: default_rope_theta(),
            rope_scaling: None,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: Vec::new(),
            hidden_act: default_hidden_act(),
        }
    }
}

/// `eos_token_id` as HF writes it: absent or null (none), one number, or a list.
mod token_ids {
    use super::*;

    pub fn serialize<S: Serializer>(ids: &[u32], s: S) -> Result<S::Ok, S::Error> {
        match ids {
            [] => s.serialize_none(),
            [one] => s.serialize_u32(*one),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Ids {
            One(u32),
            Many(Vec<u32>),
        }
        Ok(match Option::<Ids>::deserialize(d)? {
            None => Vec::new(),
            Some(Ids::One(id)) => vec![id],
            Some(Ids::Many(ids)) => ids,
        })
    }
}

/// A configuration that cannot describe a model we can build.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json is not valid for a supported architecture (llama, qwen2, gpt2): {0}")]
    Parse(#[from] serde_json::Error),
    #[error("config.json: {key} = {value} is invalid: {reason}")]
    Invalid { key: &'static str, value: String, reason: String },
    /// A key we cannot run exactly as HF would: the model is not loaded.
    #[error("config.json: {key} = {value} is not supported: {reason}")]
    Unsupported { key: String, value: String, reason: String },
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

/// The serialised form: HF's `model_type` tag around the fields.
#[derive(Serialize, Deserialize)]
#[serde(tag = "model_type", rename_all = "lowercase")]
enum Tagged {
    Llama(LlamaConfig),
    Qwen2(LlamaConfig),
    Gpt2(Gpt2Config),
}

impl Serialize for ModelConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.clone() {
            ModelConfig::Llama(c) if c.family == LlamaFamily::Qwen2 => Tagged::Qwen2(c),
            ModelConfig::Llama(c) => Tagged::Llama(c),
            ModelConfig::Gpt2(c) => Tagged::Gpt2(c),
        }
        .serialize(s)
    }
}

/// Deserialising checks the keys as [`ModelConfig::from_json`] does.
impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ModelConfig::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl ModelConfig {
    /// Parses and validates a `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::from_value(serde_json::from_slice(bytes)?)
    }

    /// Parses and validates a `config.json` already read as JSON.
    pub fn from_value(mut value: Value) -> Result<Self, ConfigError> {
        crate::config_keys::check(&mut value)?;
        let config = match serde_json::from_value(value)? {
            Tagged::Llama(c) => ModelConfig::Llama(c),
            Tagged::Qwen2(c) => ModelConfig::Llama(LlamaConfig { family: LlamaFamily::Qwen2, ..c }),
            Tagged::Gpt2(c) => ModelConfig::Gpt2(c),
        };
        config.validate()?;
        Ok(config)
    }

    /// The `config.json` bytes for this configuration (pretty, with `architectures`, as HF
    /// writes it, so `transformers` can load our checkpoints too).
    pub fn to_json(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).expect("a config serialises");
        let architecture = match self {
            ModelConfig::Llama(c) if c.family == LlamaFamily::Qwen2 => "Qwen2ForCausalLM",
            ModelConfig::Llama(_) => "LlamaForCausalLM",
            ModelConfig::Gpt2(_) => "GPT2LMHeadModel",
        };
        value["architectures"] = serde_json::json!([architecture]);
        serde_json::to_vec_pretty(&value).expect("a JSON value serialises")
    }

    /// `llama`, `qwen2` or `gpt2` (HF's `model_type`).
    pub fn architecture(&self) -> &'static str {
        match self {
            ModelConfig::Llama(c) if c.family == LlamaFamily::Qwen2 => "qwen2",
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

    /// The config's end-of-text ids (none, one, or several); generation stops at any.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        match self {
            ModelConfig::Llama(c) => c.eos_token_id.clone(),
            ModelConfig::Gpt2(c) => c.eos_token_id.into_iter().collect(),
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
                if let Some(s) = &c.rope_scaling {
                    if s.rope_type != "llama3" {
                        return Err(ConfigError::Unsupported {
                            key: "rope_scaling.rope_type".into(),
                            value: format!("{:?}", s.rope_type),
                            reason: "only llama3 RoPE scaling is implemented".into(),
                        });
                    }
                    if !(s.factor >= 1.0 && s.factor.is_finite()) {
                        return Err(invalid("rope_scaling.factor", &s.factor, "must be at least 1"));
                    }
                    if !(s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor) {
                        return Err(invalid(
                            "rope_scaling.high_freq_factor",
                            &s.high_freq_factor,
                            "must exceed low_freq_factor, which must be positive",
                        ));
                    }
                    if s.original_max_position_embeddings == 0 {
                        return Err(invalid("rope_scaling.original_max_position_embeddings", &0, "must be positive"));
                    }
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
                    for (name, out) in [("q_proj", h), ("k_proj", kv), ("v_proj", kv)] {
                        push(format!("{p}.self_attn.{name}.weight"), &[out, h]);
                        if c.qkv_bias() {
                            push(format!("{p}.self_attn.{name}.bias"), &[out]);
                        }
                    }
                    push(format!("{p}.self_attn.o_proj.weight"), &[h, h]);
                    if c.o_bias() {
                        push(format!("{p}.self_attn.o_proj.bias"), &[h]);
                    }
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

    /// Whether the query, key and value projections have biases (always for Qwen2).
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.family == LlamaFamily::Qwen2
    }

    /// Whether the output projection of attention has a bias (Llama's `attention_bias`).
    pub fn o_bias(&self) -> bool {
        self.attention_bias
    }

    /// RoPE's inverse frequencies `θ^(-2j/D)` for `j < D/2`, in f64, with the configured
    /// scaling applied as HF's `_compute_llama3_parameters` does. The trainer's and the
    /// exporter's cos/sin tables are both built from these.
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim();
        (0..d / 2)
            .map(|j| 1.0 / self.rope_theta.powf((2 * j) as f64 / d as f64))
            .map(|f| match &self.rope_scaling {
                None => f,
                Some(s) => s.scale(f),
            })
            .collect()
    }
}

impl LlamaConfig {
    /// RoPE's `cos` and `sin` tables, `[max_position_embeddings, head_dim]` each, row-major,
    /// in HF's `rotate_half` layout (the frequencies repeated for both halves). Angles are
    /// computed in f64 and rounded once; the trainer and the exporter both use these.
    pub fn rope_tables(&self) -> (Vec<f32>, Vec<f32>) {
        let inv_freq = self.inv_freq();
        let d = self.head_dim();
        let mut cos = Vec::with_capacity(self.max_position_embeddings * d);
        let mut sin = Vec::with_capacity(self.max_position_embeddings * d);
        for p in 0..self.max_position_embeddings {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = p as f64 * f;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        (cos, sin)
    }
}

impl RopeScaling {
    /// One inverse frequency under Llama 3's scaling.
    pub fn scale(&self, inv_freq: f64) -> f64 {
        let old = self.original_max_position_embeddings as f64;
        let (low_wavelen, high_wavelen) = (old / self.low_freq_factor, old / self.high_freq_factor);
        let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
        if wavelen < high_wavelen {
            inv_freq
        } else if wavelen > low_wavelen {
            inv_freq / self.factor
        } else {
            let smooth = (old / wavelen - self.low_freq_factor) / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - smooth) * inv_freq / self.factor + smooth * inv_freq
        }
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
