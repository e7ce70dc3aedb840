//! The `gradients-models` object store: base models by name, where every party can fetch
//! them and check them by hash.
//!
//! A published model is `<name>/config.json`, `<name>/tokenizer.json`,
//! `<name>/model.safetensors`, `<name>/model.onnx` (the exporter's output for those
//! weights) and, written last, `<name>/index.json` listing each file's size and sha256. A
//! model without an index is not published (an interrupted upload); readers check every
//! file against the index.

use std::path::Path;

use gradients_bus::subjects::buckets;
use gradients_bus::{objects, Bus};
use gradients_model::files;
use gradients_proto::v1::ObjectRef;
use serde::{Deserialize, Serialize};

use crate::base_model::{read_dir_files, BaseModel, ModelFiles};
use crate::error::BaseModelError;

/// The index object's file name.
pub const INDEX: &str = "index.json";
/// Largest file of a base model read back.
const MAX_FILE_BYTES: u64 = 4 << 30;

/// What `index.json` says about a published model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelIndex {
    pub name: String,
    pub architecture: String,
    pub parameter_count: u64,
    /// File name -> where it is, its size and sha256.
    pub files: std::collections::BTreeMap<String, IndexedFile>,
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

/// Publishes the model folder `dir` as `name`: its files, its ONNX export and the index.
/// Publishing the same folder again writes the same index (files are content-addressed
/// by their sha256 in it).
pub async fn publish(bus: &Bus, dir: &Path, name: &str) -> Result<ModelIndex, BaseModelError> {
    if !valid_name(name) {
        return Err(BaseModelError::Invalid { name: name.to_owned(), reason: "not a valid model name".into() });
    }
    let dir_files = read_dir_files(name, dir)?;
    let weights = dir_files.safetensors.clone().ok_or_else(|| BaseModelError::File {
        name: name.to_owned(),
        file: files::WEIGHTS.into(),
        reason: "missing".into(),
    })?;
    let (config, tokenizer) = (dir_files.config.clone(), dir_files.tokenizer.clone());
    let owned = name.to_owned();
    let model = tokio::task::spawn_blocking(move || BaseModel::from_files(&owned, dir_files))
        .await
        .map_err(|e| BaseModelError::Invalid { name: name.to_owned(), reason: e.to_string() })??;
    let store = objects::bucket(bus, buckets::MODELS).await?;
    let mut index = ModelIndex {
        name: name.to_owned(),
        architecture: model.config.architecture().to_owned(),
        parameter_count: model.config.parameter_count(),
        files: Default::default(),
        published_at_ms: gradients_proto::v1::Timestamp::now().unix_ms,
    };
    for (file, bytes) in [
        (files::CONFIG, &config[..]),
        (files::TOKENIZER, &tokenizer[..]),
        (files::WEIGHTS, &weights[..]),
        (files::ONNX, &model.onnx[..]),
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
pub async fn list(bus: &Bus) -> Result<Vec<ModelIndex>, BaseModelError> {
    use futures::StreamExt;
    // No bucket yet (no service has declared the topology): nothing is published.
    let Ok(store) = objects::bucket(bus, buckets::MODELS).await else { return Ok(Vec::new()) };
    let fail = |reason: String| gradients_bus::BusError::Object { bucket: buckets::MODELS.into(), reason };
    let mut listing = store.list().await.map_err(|e| fail(e.to_string()))?;
    let mut names = Vec::new();
    while let Some(info) = listing.next().await {
        let info = info.map_err(|e| fail(e.to_string()))?;
        if let Some(name) = info.name.strip_suffix(&format!("/{INDEX}")) {
            if !info.deleted {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        if let Some(index) = read_index(bus, &name).await? {
            out.push(index);
        }
    }
    Ok(out)
}

/// The index of model `name`, or `None` when it is not published.
pub async fn read_index(bus: &Bus, name: &str) -> Result<Option<ModelIndex>, BaseModelError> {
    if !valid_name(name) {
        return Ok(None);
    }
    let store = objects::bucket(bus, buckets::MODELS).await?;
    let object = object_name(name, INDEX);
    let info = match store.info(&object).await {
        Ok(info) if !info.deleted => info,
        _ => return Ok(None),
    };
    let reference = ObjectRef {
        bucket: buckets::MODELS.into(),
        name: object.clone(),
        sha256: String::new(),
        size: info.size as u64,
    };
    let bytes = read_unpinned(&store, &reference).await?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| BaseModelError::Invalid { name: name.to_owned(), reason: format!("index.json: {e}") })
}

/// The files of published model `name` the evaluator needs, each checked against the index.
pub async fn fetch_files(bus: &Bus, name: &str) -> Result<Option<ModelFiles>, BaseModelError> {
    let Some(index) = read_index(bus, name).await? else { return Ok(None) };
    let store = objects::bucket(bus, buckets::MODELS).await?;
    let read = |file: &'static str| {
        let entry = index.files.get(file).cloned();
        let store = store.clone();
        async move {
            let entry = entry.ok_or_else(|| BaseModelError::File {
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
                    BaseModelError::Checksum { name: name.to_owned(), file: file.into() }
                }
                objects::ObjectError::Bus(bus) => BaseModelError::Bus(bus),
                other => BaseModelError::File { name: name.to_owned(), file: file.into(), reason: other.to_string() },
            })
        }
    };
    let config = read(files::CONFIG).await?;
    let tokenizer = read(files::TOKENIZER).await?;
    let onnx = read(files::ONNX).await?;
    Ok(Some(ModelFiles { config, tokenizer, onnx: Some(onnx), safetensors: None }))
}

/// Reads an object whose sha256 is not known in advance (the index itself), size-bounded.
async fn read_unpinned(
    store: &async_nats::jetstream::object_store::ObjectStore,
    reference: &ObjectRef,
) -> Result<Vec<u8>, BaseModelError> {
    use tokio::io::AsyncReadExt;
    let fail = |reason: String| {
        BaseModelError::Bus(gradients_bus::BusError::Object { bucket: reference.bucket.clone(), reason })
    };
    if reference.size > 1 << 20 {
        return Err(fail(format!("{} is {} bytes, too large for an index", reference.name, reference.size)));
    }
    let mut object = store.get(&reference.name).await.map_err(|e| fail(e.to_string()))?;
    let mut data = Vec::new();
    object.read_to_end(&mut data).await.map_err(|e| fail(e.to_string()))?;
    Ok(data)
}
