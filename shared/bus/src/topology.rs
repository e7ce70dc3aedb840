//! Declares the streams and buckets the system owns, idempotently: every service calls
//! this at start-up, in any order and any number of replicas, and gets the same result.

use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream};
use gradients_config::NatsSettings;

use crate::subjects::{buckets, streams};
use crate::{Bus, BusError, Cause};

/// The streams of the system, each with the subjects it captures.
fn stream_configs(settings: &NatsSettings) -> Vec<stream::Config> {
    let base = |name: &str, subjects: &str, description: &str| stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        description: Some(description.to_owned()),
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window(),
        ..Default::default()
    };
    vec![
        base(streams::TASKS, streams::TASKS_SUBJECTS, "Task lifecycle events"),
        base(streams::DEAD_LETTERS, streams::DEAD_LETTERS_SUBJECTS, "Messages given up on, with the reason"),
        base(streams::ASSIGNMENTS, streams::ASSIGNMENTS_SUBJECTS, "Tasks assigned to miners"),
        base(streams::EVALUATIONS, streams::EVALUATIONS_SUBJECTS, "Evaluation results of submissions"),
        base(streams::LEDGER, streams::LEDGER_SUBJECTS, "Ledger entries and miner weights"),
        base(streams::SUBMISSIONS, streams::SUBMISSIONS_SUBJECTS, "Signed submissions of fine-tuned models"),
    ]
}

/// Creates every stream and bucket that is missing and brings changed settings up to
/// date (replicas, de-duplication window). Safe to run concurrently from many replicas.
pub async fn declare(bus: &Bus, settings: &NatsSettings) -> Result<(), BusError> {
    for config in stream_configs(settings) {
        ensure_stream(&bus.jetstream, config).await?;
    }
    for (bucket, description, max_age) in [
        (buckets::TRAIN, "Train splits; miners with a grant read these", Duration::ZERO),
        (buckets::VALIDATOR, "Synthetic and test splits; validators only", Duration::ZERO),
        (buckets::MODELS, "Base models by name: HF files, ONNX export, sha256 index", Duration::ZERO),
        (buckets::EVIDENCE, "Per-row losses behind each evaluation", Duration::ZERO),
    ] {
        ensure_object_store(&bus.jetstream, bucket, description, max_age, settings.replicas).await?;
    }
    Ok(())
}

async fn ensure_stream(js: &jetstream::Context, wanted: stream::Config) -> Result<(), BusError> {
    let name = wanted.name.clone();
    let fail = |source: Cause| BusError::Declare { what: format!("stream {name}"), source };
    let mut stream = js.get_or_create_stream(wanted.clone()).await.map_err(|e| fail(e.into()))?;
    let current = stream.info().await.map_err(|e| fail(e.into()))?.config.clone();
    let drifted = current.subjects != wanted.subjects
        || current.duplicate_window != wanted.duplicate_window
        || current.num_replicas != wanted.num_replicas;
    if drifted {
        tracing::info!(stream = %name, "updating stream settings");
        js.update_stream(wanted).await.map_err(|e| fail(e.into()))?;
    }
    Ok(())
}

/// Opens the key-value bucket `bucket`, creating it when missing. `max_age` bounds how
/// long a key lives without being written again (zero: forever).
pub async fn key_value(
    bus: &Bus,
    bucket: &str,
    description: &str,
    max_age: Duration,
    settings: &NatsSettings,
) -> Result<jetstream::kv::Store, BusError> {
    if let Ok(store) = bus.jetstream.get_key_value(bucket).await {
        return Ok(store);
    }
    let config = jetstream::kv::Config {
        bucket: bucket.to_owned(),
        description: description.to_owned(),
        max_age,
        history: 1,
        num_replicas: settings.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    bus.jetstream
        .create_key_value(config)
        .await
        .map_err(|e| BusError::Declare { what: format!("key-value bucket {bucket}"), source: e.into() })
}

/// Creates a miner's own artifacts bucket ([`buckets::artifacts`]) when missing, holding at
/// most `max_bytes` (so one miner cannot fill the server). Dispatch calls it when it assigns
/// the miner a task (registering is open to anyone and must reserve nothing); a miner's user
/// may write its bucket but create none.
pub async fn miner_artifacts(
    bus: &Bus,
    miner_id: &str,
    max_bytes: i64,
    settings: &NatsSettings,
) -> Result<(), BusError> {
    let bucket = buckets::artifacts(miner_id);
    if bus.jetstream.get_object_store(&bucket).await.is_ok() {
        return Ok(());
    }
    let config = object_store::Config {
        bucket: bucket.clone(),
        description: Some(format!("Models and manifests submitted by miner {miner_id}")),
        max_bytes,
        num_replicas: settings.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    bus.jetstream
        .create_object_store(config)
        .await
        .map(|_| ())
        .map_err(|e| BusError::Declare { what: format!("object store {bucket}"), source: e.into() })
}

async fn ensure_object_store(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<(), BusError> {
    if js.get_object_store(bucket).await.is_ok() {
        return Ok(());
    }
    let config = object_store::Config {
        bucket: bucket.to_owned(),
        description: Some(description.to_owned()),
        max_age,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    // Another replica may create it between our check and this call; creation of an
    // identical bucket is accepted by the server, so this stays idempotent.
    js.create_object_store(config)
        .await
        .map(|_| ())
        .map_err(|e| BusError::Declare { what: format!("object store {bucket}"), source: e.into() })
}
