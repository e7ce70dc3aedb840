//! The `gradients-models` store as the evaluator uses it. The store itself (layout, index,
//! publish, list, fetch) is [`gradients_model::store`], shared with the CLI and intake;
//! here a model is checked as the evaluator will run it before it is published, and the
//! store's errors become [`BaseModelError`]s.

use std::path::Path;

use gradients_bus::Bus;
use gradients_model::store::{self, StoreError};

pub use gradients_model::store::{list, object_name, read_index, valid_name, IndexedFile, ModelIndex, INDEX};

use crate::base_model::{BaseModel, ModelFiles};
use crate::error::BaseModelError;

impl From<StoreError> for BaseModelError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::File { name, file, reason } => Self::File { name, file, reason },
            StoreError::Checksum { name, file } => Self::Checksum { name, file },
            StoreError::Invalid { name, reason } => Self::Invalid { name, reason },
            listing @ StoreError::Listing(_) => {
                Self::Invalid { name: gradients_bus::subjects::buckets::MODELS.into(), reason: listing.to_string() }
            }
            StoreError::Bus(bus) => Self::Bus(bus),
        }
    }
}

/// Publishes the model folder `dir` as `name`: its files, its ONNX export (made here from
/// the weights when the folder has none) and the index. The model must load as a base model
/// the evaluator can score against, so nothing is published that would fail every task.
pub async fn publish(bus: &Bus, dir: &Path, name: &str) -> Result<ModelIndex, BaseModelError> {
    if !valid_name(name) {
        return Err(BaseModelError::Invalid { name: name.to_owned(), reason: "not a valid model name".into() });
    }
    let dir_files = store::read_dir_files(name, dir)?;
    let weights = dir_files.safetensors.clone().ok_or_else(|| BaseModelError::File {
        name: name.to_owned(),
        file: gradients_model::files::WEIGHTS.into(),
        reason: "missing".into(),
    })?;
    let (config, tokenizer) = (dir_files.config.clone(), dir_files.tokenizer.clone());
    let owned = name.to_owned();
    let model = tokio::task::spawn_blocking(move || BaseModel::from_files(&owned, dir_files))
        .await
        .map_err(|e| BaseModelError::Invalid { name: name.to_owned(), reason: e.to_string() })??;
    let files = ModelFiles { config, tokenizer, onnx: Some(model.onnx.to_vec()), safetensors: Some(weights) };
    Ok(store::publish(bus, name, &files).await?)
}

/// The files of published model `name` the evaluator needs, each checked against the index.
pub async fn fetch_files(bus: &Bus, name: &str) -> Result<Option<ModelFiles>, BaseModelError> {
    Ok(store::fetch_files(bus, name).await?)
}
