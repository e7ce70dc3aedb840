//! The manifest that travels with an exported model: what it was trained from and how.
//!
//! The evaluator reads it to check a submission against its task (same base model, the
//! parameter count it implies); auditors read it to see how a winner was trained.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ModelConfig;

/// The version of this manifest's layout.
pub const MANIFEST_VERSION: u32 = 1;

/// What an exported model claims about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub manifest_version: u32,
    /// The base model's name (`tiny-10m`) or folder.
    pub base_model: String,
    /// sha256 of the base model's `model.safetensors`.
    pub base_model_sha256: String,
    /// sha256 of the tokenizer.json the model was trained with.
    pub tokenizer_sha256: String,
    /// The architecture and sizes (equal to the base model's).
    pub config: ModelConfig,
    pub parameter_count: u64,
    /// sha256 and size of `model.onnx`.
    pub onnx_sha256: String,
    pub onnx_bytes: u64,
    /// The training run: strategy, hyperparameters, steps, losses (free-form JSON written
    /// by the trainer; not interpreted by the market).
    pub training: serde_json::Value,
    /// Who produced it (`gradients-trainer 0.1.0`).
    pub produced_by: String,
    /// The files delivered beside the ONNX model, each stored content-named in the miner's
    /// bucket: the HF folder the model was exported from (`model/config.json`,
    /// `model/model.safetensors`, `model/tokenizer.json`) and the training report. What a
    /// customer downloads; the evaluator does not need them. Absent in older manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ManifestFile>,
}

/// One file delivered with a model, pinned by its sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Where it goes in the model's folder, relative (`model/config.json`, `report.json`).
    pub path: String,
    /// Lower-case hex sha256 of its bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

impl ManifestFile {
    /// Describes `data`, delivered at `path`.
    pub fn of(path: &str, data: &[u8]) -> Self {
        Self { path: path.to_owned(), sha256: sha256_hex(data), bytes: data.len() as u64 }
    }
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Lowercase hex sha256, the digest format used across Gradients.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
