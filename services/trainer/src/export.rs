//! A trained model as a market artifact: `model.onnx` plus `manifest.json`.

use std::path::Path;

use gradients_model::manifest::{sha256_hex, MANIFEST_VERSION};
use gradients_model::onnx::{self, ExportError};
use gradients_model::{files, Manifest};

use crate::model::CausalLm;

/// What the trainer knows about the base a model was fine-tuned from.
#[derive(Debug, Clone)]
pub struct BaseModel {
    pub name: String,
    pub weights_sha256: String,
    pub tokenizer_sha256: String,
}

/// The ONNX bytes and the manifest that describes them.
pub struct Artifact {
    pub onnx: Vec<u8>,
    pub manifest: Manifest,
}

/// Exports `model` (adapters merged) with a manifest recording `training`.
pub fn export(model: &CausalLm, base: &BaseModel, training: serde_json::Value) -> Result<Artifact, ExportError> {
    let onnx = onnx::export(&model.config, &model.weights())?;
    let manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        base_model: base.name.clone(),
        base_model_sha256: base.weights_sha256.clone(),
        tokenizer_sha256: base.tokenizer_sha256.clone(),
        config: model.config.clone(),
        parameter_count: model.config.parameter_count(),
        onnx_sha256: sha256_hex(&onnx),
        onnx_bytes: onnx.len() as u64,
        training,
        produced_by: format!("gradients-trainer {}", env!("CARGO_PKG_VERSION")),
    };
    Ok(Artifact { onnx, manifest })
}

impl Artifact {
    /// Writes `model.onnx` and `manifest.json` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(files::ONNX), &self.onnx)?;
        std::fs::write(dir.join(files::MANIFEST), self.manifest.to_json())
    }
}
