//! Writes a model as ONNX (IR 10, opset 17) so anything with ONNX Runtime can run it.
//!
//! The graph takes `input_ids` and `attention_mask` (both i64 `[batch, sequence]`, padding
//! on the right) and returns `logits` (f32 `[batch, sequence, vocab]`); batch size and
//! sequence length are dynamic. It computes exactly the trainer's forward pass, including
//! its masking convention (masked scores replaced by -1e9 before the softmax).
//!
//! Every parameter is an initializer under its Hugging Face name, which is how
//! [`inspect`] counts parameters without knowing the configuration. Llama's projection
//! weights are stored transposed (`[in, out]`), GPT-2's `Conv1D` weights as they are
//! (already `[in, out]`). Nothing else (RoPE tables, shape constants) uses those names.
//!
//! - `graph`: a small graph builder over the prost types of the official `onnx.proto`;
//! - `blocks`: inputs, mask, linear layers and attention shared by both architectures;
//! - `llama`, `gpt2`: the two forward passes;
//! - `inspect`: reads a model back into an [`OnnxSummary`] for the evaluator's checks.

mod blocks;
mod gpt2;
mod graph;
mod inspect;
mod llama;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use gradients_proto::onnx::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use prost::Message;

pub use inspect::{inspect, is_parameter_name, OnnxSummary};

use crate::config::ModelConfig;
use crate::weights::{WeightError, Weights};

/// The ONNX IR version written (ONNX 1.16+, ONNX Runtime 1.18+).
pub const IR_VERSION: i64 = 10;
/// The version of the default (`ai.onnx`) operator set the graph uses.
pub const OPSET: i64 = 17;
/// `ModelProto.producer_name`.
pub const PRODUCER: &str = "gradients";
/// `GraphProto.name`.
pub const GRAPH_NAME: &str = "gradients-causal-lm";
/// Metadata key holding the model's `config.json`, so a file says what it is.
pub const CONFIG_METADATA_KEY: &str = "gradients.config";
/// The largest protobuf message that can be written or parsed (2 GiB less one byte);
/// larger models would need ONNX's external data files, which a single artifact avoids.
pub const MAX_BYTES: u64 = i32::MAX as u64;

/// Why a model could not be exported or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error("the model would take {bytes} bytes, over protobuf's 2 GiB limit for one ONNX file")]
    TooLarge { bytes: u64 },
    #[error("not an ONNX model: {0}")]
    Decode(prost::DecodeError),
    #[error("invalid model: {0}")]
    Invalid(String),
}

/// The encoded `ModelProto` of a model with these weights.
///
/// Refuses weights that do not match the configuration, and models over 2 GiB.
pub fn export(config: &ModelConfig, weights: &Weights) -> Result<Vec<u8>, ExportError> {
    weights.check(config)?;
    // Refuse before copying gigabytes into a graph that cannot be encoded anyway.
    check_size(estimated_bytes(config))?;
    let model = build_checked(config, weights)?;
    check_size(model.encoded_len() as u64)?;
    Ok(model.encode_to_vec())
}

/// The `ModelProto` of a model with these weights (see [`export`] for the encoded bytes).
pub fn build(config: &ModelConfig, weights: &Weights) -> Result<ModelProto, ExportError> {
    weights.check(config)?;
    build_checked(config, weights)
}

fn build_checked(config: &ModelConfig, weights: &Weights) -> Result<ModelProto, ExportError> {
    config.validate().map_err(|e| ExportError::Invalid(e.to_string()))?;
    let mut g = graph::GraphBuilder::new();
    match config {
        ModelConfig::Llama(c) => llama::build(&mut g, c, weights)?,
        ModelConfig::Gpt2(c) => gpt2::build(&mut g, c, weights)?,
    }
    let graph = g.finish(GRAPH_NAME, blocks::graph_inputs(), blocks::graph_outputs(config.vocab_size()));
    let config_json = String::from_utf8(config.to_json()).expect("serde_json writes UTF-8");
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some(PRODUCER.to_owned()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        graph: Some(graph),
        metadata_props: vec![StringStringEntryProto {
            key: Some(CONFIG_METADATA_KEY.to_owned()),
            value: Some(config_json),
        }],
        ..Default::default()
    })
}

/// The bytes of the initializers alone, a lower bound of the encoded size.
fn estimated_bytes(config: &ModelConfig) -> u64 {
    let rope = match config {
        ModelConfig::Llama(c) => 2 * (c.max_position_embeddings * c.head_dim()) as u64,
        ModelConfig::Gpt2(_) => 0,
    };
    4 * (config.parameter_count() + rope)
}

fn check_size(bytes: u64) -> Result<(), ExportError> {
    if bytes > MAX_BYTES {
        Err(ExportError::TooLarge { bytes })
    } else {
        Ok(())
    }
}
