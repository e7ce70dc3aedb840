//! The evaluator, the market's validator: the only party that reads the hidden splits,
//! and the one every reward depends on.
//!
//! Stateless workers on three durable pull consumers, shared by every replica:
//! - `tasks.created`: the task is projected (type, base model, deadline, splits) and its
//!   base model evaluated once (`EvaluationKind::BASE_MODEL`);
//! - `assignments.>`: who may submit for a task, with the key they registered with;
//! - `submissions.>`: each submission is checked ([`submission`]: subject, signature,
//!   assignment, deadline, own objects, earlier copies, size and sha256; [`checks`]: the
//!   ONNX file itself against its base model), scored on the test and synthetic splits
//!   with ONNX Runtime off the async runtime ([`evaluate`], [`scoring`]), and its signed
//!   result published once on `gradients.evaluations.<task>` with the submission id as
//!   `Nats-Msg-Id`. A refusal is a result too (`INVALID`, `LATE`, `DUPLICATE`,
//!   `EVALUATION_FAILED` with a typed code), never a crashed or stuck worker.
//!
//! The projection and the "already published" markers live in one key-value bucket
//! ([`projection`]), so any replica can take any message and a redelivery repeats nothing.
//! Base models come from the `gradients-models` store ([`models_store`]) or a local folder.

pub mod base_model;
pub mod checks;
mod error;
pub mod evaluate;
pub mod generation;
pub mod grpo;
pub mod models_store;
pub mod prepared;
pub mod projection;
pub mod runtime;
pub mod scoring;
mod service;
pub mod submission;

use std::sync::Arc;

use gradients_bus::lifecycle::Lifecycle;
use gradients_bus::subjects::{consumers, streams, ASSIGNMENTS_ALL, SUBMISSIONS_ALL, TASK_CREATED};
use gradients_bus::worker::ConsumerSpec;
use gradients_config::Settings;
use gradients_miner::Identity;
use tokio_util::sync::CancellationToken;

pub use error::{BaseModelError, EvaluatorError, Refusal};

/// The service's name in metrics, logs and the NATS connection.
pub const SERVICE_NAME: &str = "evaluator";

/// The evaluator's key: read from `evaluator.key_file`, or made and saved there on first
/// start (every replica must share it).
pub fn load_or_create_identity(settings: &Settings) -> Result<Identity, EvaluatorError> {
    Ok(Identity::load_or_create(&settings.evaluator.key_file)?)
}

/// The evaluator's public key as verifiers (the ledger) take it: `evaluator.public_key`,
/// else the key at `evaluator.key_file`.
pub fn public_key(settings: &Settings) -> Result<Vec<u8>, EvaluatorError> {
    configured_key(&settings.evaluator.public_key, &settings.evaluator.key_file, "evaluator.public_key")
}

/// Dispatch's public key: `evaluator.dispatch_public_key`, else the key at `dispatch.key_file`.
pub fn dispatch_key(settings: &Settings) -> Result<Vec<u8>, EvaluatorError> {
    configured_key(
        &settings.evaluator.dispatch_public_key,
        &settings.dispatch.key_file,
        "evaluator.dispatch_public_key",
    )
}

fn configured_key(hex_key: &str, file: &std::path::Path, key: &'static str) -> Result<Vec<u8>, EvaluatorError> {
    if !hex_key.is_empty() {
        return hex::decode(hex_key).map_err(|e| EvaluatorError::Key { key, reason: e.to_string() });
    }
    Ok(Identity::load(file)?.public_key().to_vec())
}

/// Runs the evaluator until `shutdown` is cancelled, then drains.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), EvaluatorError> {
    let identity = load_or_create_identity(&settings)?;
    let dispatch_key = dispatch_key(&settings)?;
    runtime::environment()?;
    let lifecycle = Lifecycle::new(SERVICE_NAME, &settings.nats).health_on(&settings.evaluator.http_addr);
    let Some(mut running) = lifecycle.start::<EvaluatorError>(&shutdown).await? else { return Ok(()) };
    let bus = running.bus.clone();
    let projection = projection::Projection::open(&bus, &settings.nats).await?;
    let ctx = Arc::new(service::Context::new(
        settings.clone(),
        bus,
        identity.clone(),
        dispatch_key,
        projection,
        running.metrics.clone(),
    ));

    let input = |stream, durable, subject: &str| ConsumerSpec { stream, durable, filter_subject: subject.to_owned() };
    running.spawn_worker(
        input(streams::TASKS, consumers::EVALUATOR_TASKS, TASK_CREATED),
        &settings.nats,
        service::TaskHandler(ctx.clone()),
    );
    running.spawn_worker(
        input(streams::ASSIGNMENTS, consumers::EVALUATOR_ASSIGNMENTS, ASSIGNMENTS_ALL),
        &settings.nats,
        service::AssignmentHandler(ctx.clone()),
    );
    // Each evaluation is CPU-bound: as many at once as configured, not the bus default.
    let mut evaluations = settings.nats.clone();
    evaluations.worker_concurrency = settings.evaluator.concurrency;
    running.spawn_worker(
        input(streams::SUBMISSIONS, consumers::EVALUATOR_SUBMISSIONS, SUBMISSIONS_ALL),
        &evaluations,
        service::SubmissionHandler(ctx),
    );
    running.ready();
    tracing::info!(evaluator_key = %hex::encode(identity.public_key()), "evaluator ready");
    running.run().await
}
