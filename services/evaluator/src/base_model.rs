//! Base models as the evaluator needs them: configuration, tokenizer, the ONNX export of
//! the untouched weights (the reference for DPO, the "not a fine-tune" and architecture
//! checks, and the base model's own evaluation), and the facts the checks read from it.
//!
//! A base model comes from the `gradients-models` store by name (every file checked against
//! the sha256 its index publishes), or else from a local folder in the Hugging Face layout;
//! a folder without `model.onnx` is exported here from `model.safetensors`, with the same
//! exporter the trainer uses, so the bytes are the same on both sides.

use std::path::Path;
use std::sync::Arc;

use gradients_model::{ModelConfig, Weight, Weights};
use gradients_text::Tokenizer;

use crate::checks::{Limits, ModelFacts};
use crate::error::BaseModelError;

/// A base model ready to evaluate against.
#[derive(Clone)]
pub struct BaseModel {
    pub name: String,
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    /// The ONNX export of the untouched weights.
    pub onnx: Arc<[u8]>,
    pub onnx_sha256: String,
    pub facts: ModelFacts,
}

impl std::fmt::Debug for BaseModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseModel").field("name", &self.name).field("onnx_sha256", &self.onnx_sha256).finish()
    }
}

pub use gradients_model::store::ModelFiles;

impl BaseModel {
    /// Builds the base model from its files; exports ONNX from the weights when needed.
    pub fn from_files(name: &str, files: ModelFiles) -> Result<Self, BaseModelError> {
        let bad = |reason: String| BaseModelError::Invalid { name: name.to_owned(), reason };
        let config = ModelConfig::from_json(&files.config).map_err(|e| bad(format!("config.json: {e}")))?;
        let tokenizer_json =
            std::str::from_utf8(&files.tokenizer).map_err(|_| bad("tokenizer.json is not UTF-8".into()))?;
        let tokenizer = Tokenizer::from_json(tokenizer_json).map_err(|e| bad(e.to_string()))?;
        let onnx = match (files.onnx, files.safetensors) {
            (Some(onnx), _) => onnx,
            (None, Some(weights)) => export_from_safetensors(&config, &weights).map_err(bad)?,
            (None, None) => return Err(bad("neither model.onnx nor model.safetensors".into())),
        };
        // The base model's own file must pass the structural checks with room to spare.
        let limits = Limits { max_nodes: usize::MAX, max_initializer_bytes: u64::MAX, max_dimension: i64::MAX };
        let facts = ModelFacts::read(&onnx, &limits).map_err(|r| bad(format!("its ONNX export: {}", r.message)))?;
        if facts.declared_vocab() != Some(config.vocab_size() as i64) {
            return Err(bad("its ONNX export does not declare the configured vocabulary".into()));
        }
        Ok(Self {
            name: name.to_owned(),
            config,
            tokenizer,
            onnx_sha256: gradients_bus::objects::sha256_hex(&onnx),
            onnx: onnx.into(),
            facts,
        })
    }

    /// Reads a model folder in the Hugging Face layout.
    pub fn from_dir(name: &str, dir: &Path) -> Result<Self, BaseModelError> {
        Self::from_files(name, read_dir_files(name, dir)?)
    }
}

/// The files of a model folder: config and tokenizer required, ONNX or weights.
pub fn read_dir_files(name: &str, dir: &Path) -> Result<ModelFiles, BaseModelError> {
    Ok(gradients_model::store::read_dir_files(name, dir)?)
}

/// The ONNX export of a `model.safetensors` (f32 tensors under Hugging Face names).
pub fn export_from_safetensors(config: &ModelConfig, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("model.safetensors: {e}"))?;
    let mut weights = Weights::default();
    for (raw_name, view) in tensors.tensors() {
        let gradients_model::CheckpointName::Parameter(name) = config.checkpoint_name(&raw_name) else {
            continue;
        };
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format!("{raw_name} is {:?}; only f32 weights are read", view.dtype()));
        }
        let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        weights.0.insert(name, Weight::new(view.shape().to_vec(), data));
    }
    gradients_model::onnx::export(config, &weights).map_err(|e| e.to_string())
}
