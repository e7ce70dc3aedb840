//! What a model is in Gradients, independent of the framework that trains or runs it.
//!
//! - [`config`]: the Hugging Face `config.json` of the supported architectures (Llama-style
//!   decoders: Llama 2/3.x, SmolLM2, TinyLlama, Qwen2/2.5; and GPT-2), every key checked
//!   (an unknown one is refused by name), with the exact parameter names and shapes a
//!   checkpoint of each holds ([`ModelConfig::parameters`]). The trainer (tch) creates its
//!   variables from that list and the exporter reads weights by it, so names live here once.
//! - [`Weights`]: named f32 tensors, the hand-over format between a framework and the
//!   exporter.
//! - [`manifest`]: what a submitted artifact claims about itself (base model, training
//!   configuration, sha256 of the ONNX file).
//! - [`store`]: the `gradients-models` object store, where base models are published by
//!   name for every party (the CLI publishes, intake checks, the evaluator fetches).
//! - [`onnx`]: writes a model as ONNX (IR 10, opset 17; inputs `input_ids` and
//!   `attention_mask`, output `logits`) with prost from the official `onnx.proto`.

pub mod config;
mod config_keys;
pub mod manifest;
pub mod onnx;
pub mod store;
mod weights;

pub use config::{
    CheckpointName, ConfigError, Gpt2Config, LlamaConfig, LlamaFamily, ModelConfig, ParameterSpec, RopeScaling,
};
pub use manifest::{Manifest, ManifestFile};
pub use weights::{Weight, WeightError, Weights};

/// The file names of a model folder in the Hugging Face layout.
pub mod files {
    /// The architecture and sizes.
    pub const CONFIG: &str = "config.json";
    /// The parameters, in safetensors format.
    pub const WEIGHTS: &str = "model.safetensors";
    /// The tokenizer, in the `tokenizers` library's JSON format.
    pub const TOKENIZER: &str = "tokenizer.json";
    /// An exported model.
    pub const ONNX: &str = "model.onnx";
    /// What an exported model claims about itself.
    pub const MANIFEST: &str = "manifest.json";
}
