//! The evaluator's three handlers, each idempotent on its durable consumer: created tasks
//! (projected, then the base model evaluated once), assignments (projected), and
//! submissions (checked, scored, published once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::{self, buckets};
use gradients_bus::worker::{Handled, Handler, HandlerError};
use gradients_bus::{objects, Bus};
use gradients_config::Settings;
use gradients_miner::identity::domains;
use gradients_miner::Identity;
use gradients_proto::v1::{
    Assignment, ErrorCode, EvaluationKind, EvaluationResult, EvaluationStatus, Submission, TaskCreated, TaskType,
    Timestamp,
};
use gradients_telemetry::Metrics;
use prost::Message;
use tokio::sync::Mutex;

use crate::base_model::BaseModel;
use crate::error::{BaseModelError, Refusal};
use crate::evaluate::check_artifact;
use crate::prepared::{scored_type, Prepared};
use crate::projection::{registered_key, safe_id, verify_assignment, Projection, TaskRecord};
use crate::submission::{admit, arrival_ms};

/// Largest split read from the validators' bucket.
const MAX_SPLIT_BYTES: u64 = 512 << 20;
/// Entries kept in each in-memory cache before it is emptied (a replica works on few
/// tasks at a time; this only bounds memory).
const CACHE_ENTRIES: usize = 32;

/// What every handler shares.
pub struct Context {
    pub settings: Settings,
    pub bus: Bus,
    pub identity: Identity,
    pub dispatch_key: Vec<u8>,
    pub projection: Projection,
    pub metrics: Metrics,
    models: Mutex<HashMap<String, Arc<BaseModel>>>,
    /// Per task: the splits ready to score ([`Prepared`]).
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
}

fn transient(e: impl Into<gradients_bus::Cause>) -> HandlerError {
    HandlerError::transient(e)
}

impl Context {
    pub fn new(
        settings: Settings,
        bus: Bus,
        identity: Identity,
        dispatch_key: Vec<u8>,
        projection: Projection,
        metrics: Metrics,
    ) -> Self {
        Self {
            settings,
            bus,
            identity,
            dispatch_key,
            projection,
            metrics,
            models: Mutex::default(),
            prepared: Mutex::default(),
        }
    }

    /// The base model `name`: from `gradients-models` (checked against its index), else
    /// the local models folder.
    pub async fn base_model(&self, name: &str) -> Result<Arc<BaseModel>, BaseModelError> {
        if let Some(model) = self.models.lock().await.get(name) {
            return Ok(model.clone());
        }
        let owned = name.to_owned();
        let model = match crate::models_store::fetch_files(&self.bus, name).await? {
            Some(files) => tokio::task::spawn_blocking(move || BaseModel::from_files(&owned, files)).await,
            None => {
                let dir = self.settings.evaluator.models_dir.join(name);
                if !crate::models_store::valid_name(name) || !dir.is_dir() {
                    return Err(BaseModelError::NotFound {
                        name: name.to_owned(),
                        dir: self.settings.evaluator.models_dir.display().to_string(),
                    });
                }
                tokio::task::spawn_blocking(move || BaseModel::from_dir(&owned, &dir)).await
            }
        }
        .map_err(|e| BaseModelError::Invalid { name: name.to_owned(), reason: e.to_string() })??;
        let model = Arc::new(model);
        let mut models = self.models.lock().await;
        if models.len() >= CACHE_ENTRIES {
            models.clear();
        }
        models.insert(name.to_owned(), model.clone());
        Ok(model)
    }

    /// The task's splits, read from the validators' bucket and made ready to score
    /// ([`Prepared::build`]). `Ok(Err(..))`: the task cannot be scored (not the miner's fault).
    async fn prepared(&self, task: &TaskRecord) -> Result<Result<Arc<Prepared>, Refusal>, HandlerError> {
        if let Some(prepared) = self.prepared.lock().await.get(&task.task_id) {
            return Ok(Ok(prepared.clone()));
        }
        let Some(task_type) = TaskType::from_label(&task.task_type).and_then(scored_type) else {
            return Ok(Err(Refusal::failed(
                ErrorCode::UnknownTaskType,
                format!("task type {} is not scored by the evaluator", task.task_type),
            )));
        };
        let base = match self.base_model(&task.base_model).await {
            Ok(base) => base,
            Err(BaseModelError::Bus(e)) => return Err(transient(e)),
            Err(e) => return Ok(Err(Refusal::failed(ErrorCode::UnknownBaseModel, e.to_string()))),
        };
        let mut rows = Vec::new();
        for (name, reference) in [("test", &task.test), ("synth", &task.synth)] {
            let Some(reference) = reference else { continue };
            let store = objects::bucket(&self.bus, buckets::VALIDATOR).await.map_err(transient)?;
            let data = match objects::read_verified(&store, &reference.into(), MAX_SPLIT_BYTES).await {
                Ok(data) => data,
                Err(objects::ObjectError::Bus(e)) => return Err(transient(e)),
                Err(e) => return Ok(Err(Refusal::failed(ErrorCode::Internal, format!("the {name} split: {e}")))),
            };
            match gradients_data::from_jsonl(&data) {
                Ok(parsed) => rows.push((name, parsed)),
                Err(e) => return Ok(Err(Refusal::failed(ErrorCode::Internal, format!("the {name} split: {e}")))),
            }
        }
        if rows.is_empty() {
            return Ok(Err(Refusal::failed(ErrorCode::Internal, "the task has no test split".to_owned())));
        }
        let settings = self.settings.evaluator.clone();
        let rewards = task.rewards.clone();
        let built = tokio::task::spawn_blocking(move || -> Result<Prepared, Refusal> {
            let borrowed: Vec<(&'static str, &[gradients_data::Row])> =
                rows.iter().map(|(n, r)| (*n, r.as_slice())).collect();
            Prepared::build(base, task_type, &rewards, &borrowed, &settings)
        })
        .await
        .map_err(transient)?;
        let prepared = match built {
            Ok(prepared) => Arc::new(prepared),
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mut cache = self.prepared.lock().await;
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(task.task_id.clone(), prepared.clone());
        Ok(Ok(prepared))
    }

    /// Signs `result`, stores its evidence, publishes it once (`Nats-Msg-Id` = `message_id`)
    /// and remembers it under `marker`.
    async fn publish(
        &self,
        mut result: EvaluationResult,
        message_id: &str,
        marker: &str,
        evidence: Option<serde_json::Value>,
    ) -> Result<(), HandlerError> {
        if let Some(evidence) = evidence {
            let store = objects::bucket(&self.bus, buckets::EVIDENCE).await.map_err(transient)?;
            let json = serde_json::to_vec(&evidence).expect("evidence serialises");
            let name = format!("tasks/{}/{}.json", result.task_id, result.evaluation_id);
            result.evidence =
                Some(objects::put_bytes(&store, buckets::EVIDENCE, &name, &json).await.map_err(transient)?);
        }
        result.signature = self.identity.sign_message(domains::EVALUATION, &result, |r| r.signature.clear());
        let payload = bytes::Bytes::from(result.encode_to_vec());
        let event = OutgoingEvent {
            subject: subjects::evaluations(&result.task_id),
            id: message_id.to_owned(),
            payload: payload.clone(),
            traceparent: None,
        };
        publish_event(&self.bus.jetstream, event).await.map_err(transient)?;
        self.metrics.published(EvaluationStatus::try_from(result.status).unwrap_or_default().as_str_name());
        self.projection.mark_published(marker, payload).await
    }
}

/// Tells JetStream the message is still being worked on while `work` runs, so a long
/// evaluation is not handed to another replica; a killed worker stops telling, and the
/// message goes to another replica after `ack_wait`.
async fn with_progress<T>(
    message: &jetstream::Message,
    ack_wait: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(100)));
    ticker.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => { let _ = message.ack_with(AckKind::Progress).await; }
        }
    }
}

/// Projects created tasks and evaluates each task's base model once.
pub struct TaskHandler(pub Arc<Context>);

impl Handler for TaskHandler {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let created = TaskCreated::decode(message.payload.as_ref())
            .map_err(|e| HandlerError::poison(format!("not a TaskCreated: {e}")))?;
        let task = self.0.projection.record_task(&created).await?;
        if TaskType::from_label(&task.task_type).and_then(scored_type).is_none() {
            return Ok(Handled::Done);
        }
        let ack_wait = self.0.settings.nats.ack_wait();
        with_progress(message, ack_wait, evaluate_base(&self.0, &task)).await?;
        Ok(Handled::Done)
    }
}

/// The base model's evaluation of `task` (`EvaluationKind::BASE_MODEL`), published once.
async fn evaluate_base(ctx: &Context, task: &TaskRecord) -> Result<(), HandlerError> {
    let marker = format!("base.{}", task.task_id);
    if ctx.projection.published(&marker).await?.is_some() {
        return Ok(());
    }
    let mut result = EvaluationResult {
        evaluation_id: format!("base-{}", task.task_id),
        task_id: task.task_id.clone(),
        kind: EvaluationKind::BaseModel as i32,
        ..Default::default()
    };
    let outcome = match ctx.prepared(task).await? {
        Err(refusal) => Err(refusal),
        Ok(prepared) => {
            result.artifact_sha256 = prepared.base.onnx_sha256.clone();
            let (settings, prepared) = (ctx.settings.evaluator.clone(), prepared.clone());
            tokio::task::spawn_blocking(move || prepared.score(prepared.base.onnx.clone(), &settings))
                .await
                .map_err(HandlerError::from_join)?
        }
    };
    result.evaluated_at = Some(Timestamp::now());
    let evidence = match outcome {
        Ok(scores) => {
            result.status = EvaluationStatus::Valid as i32;
            scores.fill(&mut result);
            Some(scores.evidence(&result))
        }
        Err(refusal) => {
            tracing::warn!(task_id = %task.task_id, reason = %refusal, "the base model could not be evaluated");
            result.status = refusal.status as i32;
            result.error = Some(refusal.to_api());
            None
        }
    };
    let id = result.evaluation_id.clone();
    ctx.publish(result, &id, &marker, evidence).await
}

/// Projects assignments (dispatch's signature checked) with the assigned miner's key.
pub struct AssignmentHandler(pub Arc<Context>);

impl Handler for AssignmentHandler {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let assignment = Assignment::decode(message.payload.as_ref())
            .map_err(|e| HandlerError::poison(format!("not an Assignment: {e}")))?;
        if !safe_id(&assignment.task_id) || !safe_id(&assignment.miner_id) {
            return Err(HandlerError::poison("an assignment without a usable task or miner id"));
        }
        verify_assignment(&assignment, &self.0.dispatch_key)?;
        let key = registered_key(&self.0.bus, &assignment.miner_id).await?.map(hex::encode).unwrap_or_default();
        self.0.projection.record_assignment(&assignment, key).await?;
        Ok(Handled::Done)
    }
}

/// A submission that arrived before what it depends on (its task, its cohort's assignments)
/// was projected. Usually that is milliseconds away, so the first retry is quick; but the
/// missing event may be held by a replica that died, and comes back only after the ack wait,
/// so later retries wait that long (a short back-off would use up `max_deliver` first and
/// dead-letter a valid submission).
fn not_yet(ctx: &Context, message: &jetstream::Message, reason: String) -> Handled {
    let delivered = message.info().map(|info| info.delivered.max(1) as u64).unwrap_or(1);
    let nats = &ctx.settings.nats;
    let after =
        if delivered <= 1 { nats.retry_backoff(delivered) } else { nats.retry_backoff(delivered).max(nats.ack_wait()) };
    Handled::RetryLater { after, reason }
}

/// Checks, scores and publishes each submission once.
pub struct SubmissionHandler(pub Arc<Context>);

impl Handler for SubmissionHandler {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let submission = Submission::decode(message.payload.as_ref())
            .map_err(|e| HandlerError::poison(format!("not a Submission: {e}")))?;
        if !safe_id(&submission.submission_id) || !safe_id(&submission.task_id) || !safe_id(&submission.miner_id) {
            return Err(HandlerError::poison("a submission without usable ids"));
        }
        let marker = format!("done.{}", submission.submission_id);
        if self.0.projection.published(&marker).await?.is_some() {
            return Ok(Handled::Done);
        }
        let ack_wait = self.0.settings.nats.ack_wait();
        with_progress(message, ack_wait, evaluate_submission(&self.0, message, submission, &marker)).await
    }
}

async fn evaluate_submission(
    ctx: &Context,
    message: &jetstream::Message,
    submission: Submission,
    marker: &str,
) -> Result<Handled, HandlerError> {
    let Some(task) = ctx.projection.task(&submission.task_id).await? else {
        // Its `tasks.created` is on another stream and not projected yet: nothing failed.
        return Ok(not_yet(ctx, message, format!("task {} is not known yet", submission.task_id)));
    };
    let arrived_ms = arrival_ms(message)?;
    let cohort = ctx.projection.cohort(&submission.task_id).await?;
    if !cohort.is_complete() && !cohort.miners.contains_key(&submission.miner_id) {
        // Assignments travel on another stream: wait for the whole cohort before deciding
        // whether this miner was assigned.
        return Ok(not_yet(
            ctx,
            message,
            format!("the assignments of task {} are not all known yet", submission.task_id),
        ));
    }
    let artifact = submission.artifact.clone().unwrap_or_default();
    let mut result = EvaluationResult {
        evaluation_id: format!("eval-{}", submission.submission_id),
        task_id: submission.task_id.clone(),
        miner_id: submission.miner_id.clone(),
        submission_id: submission.submission_id.clone(),
        artifact_sha256: artifact.sha256.clone(),
        kind: EvaluationKind::MinerSubmission as i32,
        submitted_at: Some(Timestamp { unix_ms: arrived_ms }),
        // Where the model is, for the ledger's result (a customer downloads the winner's).
        artifact: submission.artifact.clone(),
        manifest: submission.manifest.clone(),
        ..Default::default()
    };
    let max_bytes = ctx.settings.evaluator.max_artifact_bytes;
    let outcome = match admit(&ctx.bus, message, &submission, &task, &cohort, arrived_ms, max_bytes).await? {
        Err(refusal) => Err(refusal),
        Ok(admitted) => match ctx.prepared(&task).await? {
            Err(refusal) => Err(refusal),
            Ok(prepared) => {
                let settings = ctx.settings.evaluator.clone();
                tokio::task::spawn_blocking(move || {
                    check_artifact(&admitted.artifact, &prepared.base, &settings)?;
                    prepared.score(admitted.artifact.to_vec().into(), &settings)
                })
                .await
                .map_err(HandlerError::from_join)?
            }
        },
    };
    result.evaluated_at = Some(Timestamp::now());
    let evidence = match outcome {
        Ok(scores) => {
            result.status = EvaluationStatus::Valid as i32;
            scores.fill(&mut result);
            tracing::info!(task_id = %result.task_id, miner_id = %result.miner_id, test_loss = ?result.test_loss, "evaluated");
            Some(scores.evidence(&result))
        }
        Err(refusal) => {
            tracing::warn!(task_id = %result.task_id, miner_id = %result.miner_id, reason = %refusal, "submission refused");
            ctx.metrics.rejected(refusal.code.as_str_name());
            result.status = refusal.status as i32;
            result.error = Some(refusal.to_api());
            None
        }
    };
    ctx.publish(result, &submission.submission_id, marker, evidence).await?;
    Ok(Handled::Done)
}
