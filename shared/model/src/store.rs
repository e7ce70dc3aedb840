//! The `gradients-models` object store: base models by name, where every party can fetch
//! them and check them by hash. One module for every reader and writer: the CLI publishes
//! and lists, intake refuses a task naming a model not published here, the evaluator (and
//! a miner lacking a base model) fetches the files.
//!
//! A published model is `<name>/config.json`, `<name>/tokenizer.json`,
//! `<name>/model.safetensors`, `<name>/model.onnx` (the exporter's output for those
//! weights) and, written last, `<name>/index.json` listing each file's size and sha256. A
//! model without an index is not published (an interrupted upload); readers check every
//! file against the index.

use std::collections::BTreeMap;
use std::path::Path;

use async_nats::jetstream::object_store::ObjectStore;
use gradients_bus::subjects::buckets;
use gradients_bus::{objects, Bus, BusError};
use gradients_proto::v1::ObjectRef;
use serde::{Deserialize, Serialize};

use crate::{files, ModelConfig};

/// The index object's file name.
pub const INDEX: &str = "index.json";
/// Largest file of a base model read back.
const MAX_FILE_BYTES: u64 = 4 << 30;
/// Largest index read back.
const MAX_INDEX_BYTES: u64 = 1 << 20;

/// Why a model could not be published, listed or fetched.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the model could not be read.
    #[error("base model {name}: {file}: {reason}")]
    File { name: String, file: String, reason: String },
    /// A stored file does not hash to the sha256 its index records.
    #[error("base model {name}: {file} does not match its published sha256")]
    Checksum { name: String, file: String },
    /// The name, configuration or index is not one of a model we can use.
    #[error("base model {name}: {reason}")]
    Invalid { name: String, reason: String },
    /// The store's listing failed (worth retrying).
    #[error("listing the gradients-models store")]
    Listing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The bus failed (worth retrying).
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// What `index.json` says about a published model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIndex {
    pub name: String,
    pub architecture: String,
    pub parameter_count: u64,
    /// File name -> where it is, its size and sha256.
    pub files: BTreeMap<String, IndexedFile>,
    pub published_at_ms: i64,
}

/// One file of a published model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedFile {
    pub object: String,
    pub size: u64,
    pub sha256: String,
}

/// The files of a base model, as read from a folder or the store.
pub struct ModelFiles {
    pub config: Vec<u8>,
    pub tokenizer: Vec<u8>,
    /// `model.onnx` when the source has it.
    pub onnx: Option<Vec<u8>>,
    /// `model.safetensors` when the source has it (the store's readers need only ONNX).
    pub safetensors: Option<Vec<u8>>,
}

/// The object name of `file` of model `name`.
pub fn object_name(name: &str, file: &str) -> String {
    format!("{name}/{file}")
}

/// Whether `name` can be a model's name: one path segment of letters, digits, `-_.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Reads a model folder in the Hugging Face layout: config and tokenizer required, the
/// ONNX export and the weights when present.
pub fn read_dir_files(name: &str, dir: &Path) -> Result<ModelFiles, StoreError> {
    let read = |file: &str| -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(dir.join(file)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::File { name: name.to_owned(), file: file.to_owned(), reason: e.to_string() }),
        }
    };
    let required = |file: &str| -> Result<Vec<u8>, StoreError> {
        read(file)?.ok_or_else(|| StoreError::File {
            name: name.to_owned(),
            file: dir.join(file).display().to_string(),
            reason: "missing".into(),
        })
    };
    Ok(ModelFiles {
        config: required(files::CONFIG)?,
        tokenizer: required(files::TOKENIZER)?,
        onnx: read(files::ONNX)?,
        safetensors: read(files::WEIGHTS)?,
    })
}

/// Publishes `files` as `name`: every file (weights and ONNX export required), then the
/// index, written last, which makes the model published. Publishing the same files again
/// writes the same objects (each is named by its file and recorded with its sha256).
/// The caller vouches that the ONNX file is the export of those weights.
pub async fn publish(bus: &Bus, name: &str, files: &ModelFiles) -> Result<ModelIndex, StoreError> {
    let invalid = |reason: &str| StoreError::Invalid { name: name.to_owned(), reason: reason.to_owned() };
    if !valid_name(name) {
        return Err(invalid("not a valid model name"));
    }
    let config = ModelConfig::from_json(&files.config).map_err(|e| invalid(&format!("config.json: {e}")))?;
    let missing =
        |file: &str| StoreError::File { name: name.to_owned(), file: file.to_owned(), reason: "missing".into() };
    let weights = files.safetensors.as_deref().ok_or_else(|| missing(files::WEIGHTS))?;
    let onnx = files.onnx.as_deref().ok_or_else(|| missing(files::ONNX))?;
    let store = objects::bucket(bus, buckets::MODELS).await?;
    let mut index = ModelIndex {
        name: name.to_owned(),
        architecture: config.architecture().to_owned(),
        parameter_count: config.parameter_count(),
        files: BTreeMap::new(),
        published_at_ms: gradients_proto::v1::Timestamp::now().unix_ms,
    };
    for (file, bytes) in [
        (files::CONFIG, &files.config[..]),
        (files::TOKENIZER, &files.tokenizer[..]),
        (files::WEIGHTS, weights),
        (files::ONNX, onnx),
    ] {
        let stored = objects::put_bytes(&store, buckets::MODELS, &object_name(name, file), bytes).await?;
        index
            .files
            .insert(file.to_owned(), IndexedFile { object: stored.name, size: stored.size, sha256: stored.sha256 });
    }
    let json = serde_json::to_vec_pretty(&index).expect("an index serialises");
    objects::put_bytes(&store, buckets::MODELS, &object_name(name, INDEX), &json).await?;
    Ok(index)
}

/// Every published model (those with an index), by name.
pub async fn list(bus: &Bus) -> Result<Vec<ModelIndex>, StoreError> {
    use futures::StreamExt;
    // No bucket yet (no service has declared the topology): nothing is published.
    let Ok(store) = objects::bucket(bus, buckets::MODELS).await else { return Ok(Vec::new()) };
    let mut listing = store.list().await.map_err(|e| StoreError::Listing(e.into()))?;
    let mut names = Vec::new();
    while let Some(info) = listing.next().await {
        let info = info.map_err(|e| StoreError::Listing(e.into()))?;
        if let Some(name) = info.name.strip_suffix(&format!("/{INDEX}")) {
            if !info.deleted {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        if let Some(index) = read_index_from(&store, &name).await? {
            out.push(index);
        }
    }
    Ok(out)
}

/// The index of model `name`, or `None` when it is not published.
pub async fn read_index(bus: &Bus, name: &str) -> Result<Option<ModelIndex>, StoreError> {
    if !valid_name(name) {
        return Ok(None);
    }
    let store = objects::bucket(bus, buckets::MODELS).await?;
    read_index_from(&store, name).await
}

async fn read_index_from(store: &ObjectStore, name: &str) -> Result<Option<ModelIndex>, StoreError> {
    let object = object_name(name, INDEX);
    let info = match store.info(&object).await {
        Ok(info) if !info.deleted => info,
        _ => return Ok(None),
    };
    let invalid = |reason: String| StoreError::Invalid { name: name.to_owned(), reason };
    if info.size as u64 > MAX_INDEX_BYTES {
        return Err(invalid(format!("{object} is {} bytes, too large for an index", info.size)));
    }
    // The index is what pins every other file; its own hash is the object store's digest.
    let reference =
        ObjectRef { bucket: buckets::MODELS.into(), name: object, sha256: String::new(), size: info.size as u64 };
    let mut bytes = Vec::new();
    objects::stream_plain_within(store, &reference, MAX_INDEX_BYTES, objects::READ_STALL, &mut bytes).await.map_err(
        |e| match e {
            objects::ObjectError::NotFound { .. } => invalid("index.json disappeared while read".into()),
            objects::ObjectError::Bus(bus) => StoreError::Bus(bus),
            other => invalid(format!("index.json: {other}")),
        },
    )?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| invalid(format!("index.json: {e}")))
}

/// The files of published model `name` a runtime needs (config, tokenizer, ONNX), each
/// checked against the index; `None` when it is not published.
pub async fn fetch_files(bus: &Bus, name: &str) -> Result<Option<ModelFiles>, StoreError> {
    let Some(index) = read_index(bus, name).await? else { return Ok(None) };
    let store = objects::bucket(bus, buckets::MODELS).await?;
    let read = |file: &'static str| {
        let entry = index.files.get(file).cloned();
        let store = store.clone();
        async move {
            let entry = entry.ok_or_else(|| StoreError::File {
                name: name.to_owned(),
                file: file.into(),
                reason: "not in the index".into(),
            })?;
            let reference = ObjectRef {
                bucket: buckets::MODELS.into(),
                name: entry.object,
                sha256: entry.sha256,
                size: entry.size,
            };
            objects::read_verified(&store, &reference, MAX_FILE_BYTES).await.map(|b| b.to_vec()).map_err(|e| match e {
                objects::ObjectError::ChecksumMismatch { .. } | objects::ObjectError::Incomplete { .. } => {
                    StoreError::Checksum { name: name.to_owned(), file: file.into() }
                }
                objects::ObjectError::Bus(bus) => StoreError::Bus(bus),
                other => StoreError::File { name: name.to_owned(), file: file.into(), reason: other.to_string() },
            })
        }
    };
    let config = read(files::CONFIG).await?;
    let tokenizer = read(files::TOKENIZER).await?;
    let onnx = read(files::ONNX).await?;
    Ok(Some(ModelFiles { config, tokenizer, onnx: Some(onnx), safetensors: None }))
}
