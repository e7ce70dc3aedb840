//! Model folders in the Hugging Face layout: `config.json`, `model.safetensors`,
//! `tokenizer.json`. Reads real HF checkpoints of the supported architectures (f32, f16
//! or bf16; GPT-2 names with or without `transformer.`) and writes ones `transformers`
//! can read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use gradients_model::{files, CheckpointName, ConfigError, ModelConfig};
use gradients_text::{TextError, Tokenizer};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use crate::model::CausalLm;

/// Why a model folder could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: missing (a model folder needs config.json, model.safetensors and tokenizer.json)")]
    MissingFile { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("{path}: {source}")]
    Tokenizer { path: PathBuf, source: TextError },
    #[error("{path}: not a readable safetensors file: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: parameter {name} is missing")]
    MissingParameter { path: PathBuf, name: String },
    #[error("{path}: tensor {name} is not a parameter of this {architecture} configuration")]
    UnexpectedParameter { path: PathBuf, name: String, architecture: &'static str },
    #[error("{path}: parameter {name} has shape {found:?}, config.json implies {expected:?}")]
    Shape { path: PathBuf, name: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("{path}: tokenizer has {tokenizer} tokens, more than the model's vocab_size {model}")]
    Vocabulary { path: PathBuf, tokenizer: usize, model: usize },
}

/// A loaded model folder.
pub struct Checkpoint {
    pub model: CausalLm,
    pub tokenizer: Tokenizer,
    /// sha256 of `model.safetensors` and of `tokenizer.json`, for manifests.
    pub weights_sha256: String,
    pub tokenizer_sha256: String,
}

fn read(path: PathBuf) -> Result<Vec<u8>, CheckpointError> {
    std::fs::read(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CheckpointError::MissingFile { path: path.clone() },
        _ => CheckpointError::Io { path: path.clone(), source },
    })
}

/// Loads a model folder onto `device`.
pub fn load(dir: &Path, device: Device) -> Result<Checkpoint, CheckpointError> {
    let config_path = dir.join(files::CONFIG);
    let config = ModelConfig::from_json(&read(config_path.clone())?)
        .map_err(|source| CheckpointError::Config { path: config_path, source })?;
    let tokenizer_path = dir.join(files::TOKENIZER);
    let tokenizer_json = read(tokenizer_path.clone())?;
    let tokenizer = std::str::from_utf8(&tokenizer_json)
        .map_err(|e| TextError::Tokenizer(e.to_string()))
        .and_then(Tokenizer::from_json)
        .map_err(|source| CheckpointError::Tokenizer { path: tokenizer_path.clone(), source })?;
    if tokenizer.vocab_size() > config.vocab_size() {
        return Err(CheckpointError::Vocabulary {
            path: tokenizer_path,
            tokenizer: tokenizer.vocab_size(),
            model: config.vocab_size(),
        });
    }
    let weights_path = dir.join(files::WEIGHTS);
    let weights_bytes = read(weights_path.clone())?;
    let tensors = Tensor::read_safetensors(&weights_path)
        .map_err(|e| CheckpointError::Unreadable { path: weights_path.clone(), reason: e.to_string() })?;

    let model = CausalLm::new(&config, device, 0);
    let variables = model.base_variables();
    let mut seen = HashSet::new();
    for (raw, tensor) in tensors {
        let name = match config.checkpoint_name(&raw) {
            CheckpointName::Ignored => continue,
            CheckpointName::Parameter(name) => name,
        };
        let Some(var) = variables.get(&name) else {
            return Err(CheckpointError::UnexpectedParameter {
                path: weights_path,
                name: raw,
                architecture: config.architecture(),
            });
        };
        if var.size() != tensor.size() {
            return Err(CheckpointError::Shape {
                path: weights_path,
                name,
                expected: var.size(),
                found: tensor.size(),
            });
        }
        tch::no_grad(|| var.shallow_clone().copy_(&tensor.to_kind(Kind::Float)));
        seen.insert(name);
    }
    if let Some(missing) = config.parameters().into_iter().find(|spec| !seen.contains(&spec.name)) {
        return Err(CheckpointError::MissingParameter { path: weights_path, name: missing.name });
    }
    Ok(Checkpoint {
        model,
        tokenizer,
        weights_sha256: hex::encode(Sha256::digest(&weights_bytes)),
        tokenizer_sha256: hex::encode(Sha256::digest(&tokenizer_json)),
    })
}

/// Writes `model` (adapters merged) and `tokenizer` as a model folder, creating `dir`.
pub fn save(model: &CausalLm, tokenizer: &Tokenizer, dir: &Path) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let config_path = dir.join(files::CONFIG);
    std::fs::write(&config_path, model.config.to_json()).map_err(io(&config_path))?;
    let tokenizer_path = dir.join(files::TOKENIZER);
    std::fs::write(&tokenizer_path, tokenizer.to_json()).map_err(io(&tokenizer_path))?;
    let weights_path = dir.join(files::WEIGHTS);
    let tensors: Vec<(String, Tensor)> = model
        .weights()
        .0
        .into_iter()
        .map(|(name, w)| {
            let shape: Vec<i64> = w.shape.iter().map(|&d| d as i64).collect();
            (name, Tensor::from_slice(&w.data).view(shape.as_slice()))
        })
        .collect();
    Tensor::write_safetensors(&tensors, &weights_path)
        .map_err(|e| CheckpointError::Unreadable { path: weights_path, reason: e.to_string() })
}
