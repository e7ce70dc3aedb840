//! A trained model as a market artifact: `model.onnx` plus `manifest.json`.

use std::path::Path;

use gradients_model::manifest::{sha256_hex, MANIFEST_VERSION};
use gradients_model::onnx::{self, ExportError};
use gradients_model::{files, Manifest, ManifestFile};

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
        files: Vec::new(),
    };
    Ok(Artifact { onnx, manifest })
}

/// The folder the model's HF files are saved in, under the job's output folder.
pub const MODEL_FOLDER: &str = "model";
/// The training report, under the job's output folder.
pub const REPORT: &str = "report.json";

/// The files delivered beside the ONNX model, relative to the job's output folder: the HF
/// folder it was exported from and the training report (what the customer downloads).
pub fn delivered_paths() -> [String; 4] {
    [
        format!("{MODEL_FOLDER}/{}", files::CONFIG),
        format!("{MODEL_FOLDER}/{}", files::WEIGHTS),
        format!("{MODEL_FOLDER}/{}", files::TOKENIZER),
        REPORT.to_owned(),
    ]
}

/// Each delivered file under `dir`, with its sha256 and size, for the manifest.
pub fn describe_delivered(dir: &Path) -> std::io::Result<Vec<ManifestFile>> {
    delivered_paths().iter().map(|path| Ok(ManifestFile::of(path, &std::fs::read(dir.join(path))?))).collect()
}

impl Artifact {
    /// Writes `model.onnx` and `manifest.json` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(files::ONNX), &self.onnx)?;
        std::fs::write(dir.join(files::MANIFEST), self.manifest.to_json())
    }
}
