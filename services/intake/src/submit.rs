//! `submit`: check the request, read and validate the upload, split it, store the task
//! with its events, answer. Idempotent by key: the task id is derived from the key, so a
//! retry (or a concurrent twin) finds the same task and never makes a second one.

use std::collections::BTreeMap;

use gradients_bus::objects;
use gradients_bus::subjects::{self, buckets};
use gradients_data::{ColumnMap, Limits, SplitPlan};
use gradients_proto::v1::{
    ErrorCode, SubmitTaskRequest, SubmitTaskResponse, TaskCreated, TaskStatus, TaskType, Timestamp,
};
use gradients_store::entity::task;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::RequestError;
use crate::tasks::{self, PendingEvent};
use crate::Context;

/// Longest task name and idempotency key accepted.
const MAX_NAME_CHARS: usize = 200;

/// Handles one submit request. Once the request is settled (accepted, replayed or
/// rejected) the upload is removed: the splits hold the data, and nothing of a rejected
/// task is kept. After a failure of our own the upload stays, for the client's retry.
pub async fn submit(ctx: &Context, request: SubmitTaskRequest) -> Result<SubmitTaskResponse, RequestError> {
    let upload = request.dataset.clone();
    let result = accept(ctx, request).await;
    let settled = match &result {
        Ok(_) => true,
        Err(e) => e.is_rejection(),
    };
    if let (true, Some(upload)) = (settled, upload) {
        if upload.bucket == buckets::UPLOADS && !upload.name.is_empty() {
            let removed = async {
                objects::delete(&objects::bucket(&ctx.bus, buckets::UPLOADS).await?, buckets::UPLOADS, &upload.name)
                    .await
            };
            if let Err(e) = removed.await {
                tracing::warn!(error = %e, object = %upload.name, "could not remove the upload; it expires on its own");
            }
        }
    }
    result
}

async fn accept(ctx: &Context, request: SubmitTaskRequest) -> Result<SubmitTaskResponse, RequestError> {
    let checked = check_request(ctx, &request)?;
    let key = if request.idempotency_key.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        request.idempotency_key.clone()
    };
    let task_id = task_id_for_key(&key);
    let fingerprint = fingerprint(&request);
    tracing::Span::current().record("task_id", task_id.as_str());

    if let Some(existing) = tasks::find(&ctx.db, &task_id).await? {
        return replay(existing, &key, &fingerprint);
    }

    let uploads = objects::bucket(&ctx.bus, buckets::UPLOADS).await?;
    let limits = &ctx.settings.intake.limits;
    let dataset_ref = request.dataset.clone().unwrap_or_default();
    let data = objects::read_verified(&uploads, &dataset_ref, limits.max_bytes).await?;
    let dataset = gradients_data::parse(checked.task_type, &checked.columns, &data, &data_limits(limits))?;
    let split_settings = &ctx.settings.intake.split;
    let plan = SplitPlan {
        test_fraction: split_settings.test_fraction,
        test_max_rows: split_settings.test_max_rows,
        synth_fraction: split_settings.synth_fraction,
        synth_max_rows: split_settings.synth_max_rows,
    };
    let splits = gradients_data::split(&dataset, task_id.as_bytes(), &plan);

    // Split objects are named by task id and their bytes depend only on the task id and
    // the data, so a concurrent twin writes the very same objects: no clean-up is needed.
    let train = gradients_data::to_jsonl(&splits.train);
    let synth = gradients_data::to_jsonl(&splits.synth);
    let test = gradients_data::to_jsonl(&splits.test);
    let train_bucket = objects::bucket(&ctx.bus, buckets::TRAIN).await?;
    let validator_bucket = objects::bucket(&ctx.bus, buckets::VALIDATOR).await?;
    let train_ref =
        objects::put_bytes(&train_bucket, buckets::TRAIN, &buckets::split_object(&task_id, "train"), &train).await?;
    let synth_ref =
        objects::put_bytes(&validator_bucket, buckets::VALIDATOR, &buckets::split_object(&task_id, "synth"), &synth)
            .await?;
    let test_ref =
        objects::put_bytes(&validator_bucket, buckets::VALIDATOR, &buckets::split_object(&task_id, "test"), &test)
            .await?;

    let now = Timestamp::now().unix_ms;
    let row = task::Model {
        id: task_id.clone(),
        idempotency_key: key.clone(),
        request_sha256: fingerprint.clone(),
        name: request.name.trim().to_owned(),
        task_type: checked.task_type.as_str().to_owned(),
        base_model: request.base_model.clone(),
        columns_json: serde_json::to_string(&request.columns.iter().collect::<BTreeMap<_, _>>()).unwrap_or_default(),
        hours_to_complete: request.hours_to_complete,
        reward_functions_json: serde_json::to_string(&request.reward_functions).unwrap_or_default(),
        status: TaskStatus::Accepted.label(),
        status_reason: String::new(),
        dataset_sha256: dataset_ref.sha256.to_ascii_lowercase(),
        dataset_size: dataset_ref.size as i64,
        dataset_rows: dataset.len() as i64,
        train_sha256: train_ref.sha256,
        train_size: train_ref.size as i64,
        train_rows: splits.train.len() as i64,
        synth_sha256: synth_ref.sha256,
        synth_size: synth_ref.size as i64,
        synth_rows: splits.synth.len() as i64,
        test_sha256: test_ref.sha256,
        test_size: test_ref.size as i64,
        test_rows: splits.test.len() as i64,
        created_at_ms: now,
        deadline_ms: now + (request.hours_to_complete * 3_600_000.0) as i64,
        updated_at_ms: now,
    };
    let task = tasks::to_proto(&row);
    let created =
        TaskCreated { event_id: task_id.clone(), task: Some(task.clone()), at: Some(Timestamp { unix_ms: now }) };
    let events = vec![
        // The task id is the created event's id: one task, one event, whatever the retries.
        PendingEvent {
            id: task_id.clone(),
            subject: subjects::TASK_CREATED.to_owned(),
            payload: created.encode_to_vec(),
        },
        tasks::status_event(
            &task_id,
            TaskStatus::Pending,
            TaskStatus::Accepted,
            "validated and split",
            now,
            crate::SERVICE_NAME,
        ),
    ];
    match tasks::insert(&ctx.db, row, events).await {
        Ok(()) => {}
        Err(e) if gradients_store::is_unique_violation(&e) => {
            // A concurrent request with the same key won the race.
            let existing = tasks::find(&ctx.db, &task_id).await?.ok_or(RequestError::Store(e))?;
            return replay(existing, &key, &fingerprint);
        }
        Err(e) => return Err(e.into()),
    }
    if ctx.settings.intake.faults.crash_after_store {
        ctx.crash.fire("crash_after_store");
        // Killed processes do not answer: park here until the service is torn down.
        std::future::pending::<()>().await;
    }
    ctx.outbox.wake();
    tracing::info!(
        task_id,
        rows = dataset.len(),
        train = splits.train.len(),
        synth = splits.synth.len(),
        test = splits.test.len(),
        "task accepted"
    );
    Ok(SubmitTaskResponse { task: Some(task), created: true })
}

/// The request's fields, checked; everything the data set is read with.
struct CheckedRequest {
    task_type: gradients_data::TaskType,
    columns: ColumnMap,
}

fn check_request(ctx: &Context, request: &SubmitTaskRequest) -> Result<CheckedRequest, RequestError> {
    let intake = &ctx.settings.intake;
    let task_type = match TaskType::try_from(request.r#type) {
        Ok(TaskType::Instruct) => gradients_data::TaskType::Instruct,
        Ok(TaskType::Chat) => gradients_data::TaskType::Chat,
        Ok(TaskType::Dpo) => gradients_data::TaskType::Dpo,
        Ok(TaskType::Grpo) => gradients_data::TaskType::Grpo,
        _ => {
            return Err(RequestError::bad(
                ErrorCode::UnknownTaskType,
                format!("task type {} is not one of instruct, chat, dpo, grpo", request.r#type),
            ))
        }
    };
    if !ctx.settings.models.contains_key(&request.base_model) {
        return Err(RequestError::bad(
            ErrorCode::UnknownBaseModel,
            format!(
                "base model {:?} is not one of {}",
                request.base_model,
                ctx.settings.models.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let hours = request.hours_to_complete;
    if !(hours.is_finite() && hours >= intake.min_hours && hours <= intake.max_hours) {
        return Err(RequestError::bad(
            ErrorCode::InvalidHours,
            format!("hours_to_complete is {hours}; it must be between {} and {}", intake.min_hours, intake.max_hours),
        ));
    }
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(RequestError::bad(
            ErrorCode::InvalidArgument,
            format!("name must have 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if request.idempotency_key.chars().count() > MAX_NAME_CHARS {
        return Err(RequestError::bad(
            ErrorCode::InvalidArgument,
            format!("idempotency_key is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    check_reward_functions(intake, task_type, &request.reward_functions)?;
    let dataset = request
        .dataset
        .as_ref()
        .ok_or_else(|| RequestError::bad(ErrorCode::InvalidArgument, "dataset is missing: upload it first"))?;
    if dataset.bucket != buckets::UPLOADS || dataset.name.is_empty() {
        return Err(RequestError::bad(
            ErrorCode::InvalidArgument,
            format!("dataset must name an object in the {} bucket", buckets::UPLOADS),
        ));
    }
    if dataset.sha256.len() != 64 || !dataset.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(RequestError::bad(ErrorCode::InvalidArgument, "dataset.sha256 must be 64 hex digits"));
    }
    let columns = ColumnMap::with_overrides(&request.columns)?;
    Ok(CheckedRequest { task_type, columns })
}

fn check_reward_functions(
    intake: &gradients_config::IntakeSettings,
    task_type: gradients_data::TaskType,
    names: &[String],
) -> Result<(), RequestError> {
    let is_grpo = task_type == gradients_data::TaskType::Grpo;
    if is_grpo && names.is_empty() {
        return Err(RequestError::bad(
            ErrorCode::UnknownRewardFunction,
            "a GRPO task needs at least one reward function",
        ));
    }
    if !is_grpo && !names.is_empty() {
        return Err(RequestError::bad(ErrorCode::InvalidArgument, "reward functions apply only to GRPO tasks"));
    }
    match names.iter().find(|n| !intake.reward_functions.contains(n)) {
        Some(unknown) => Err(RequestError::bad(
            ErrorCode::UnknownRewardFunction,
            format!("reward function {unknown:?} is not one of {}", intake.reward_functions.join(", ")),
        )),
        None => Ok(()),
    }
}

/// What a retry gets: the stored task, unless the key was used for something else.
fn replay(existing: task::Model, key: &str, fingerprint: &str) -> Result<SubmitTaskResponse, RequestError> {
    if existing.request_sha256 != fingerprint {
        return Err(RequestError::IdempotencyConflict(key.to_owned()));
    }
    Ok(SubmitTaskResponse { task: Some(tasks::to_proto(&existing)), created: false })
}

/// The task id an idempotency key stands for.
pub fn task_id_for_key(key: &str) -> String {
    uuid::Uuid::new_v5(&TASK_ID_NAMESPACE, key.as_bytes()).to_string()
}

/// Namespace of task ids (a fixed random UUID; changing it changes every id).
const TASK_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1f_2c47_93a5_4f0e_9d1b_7c6e_2a44_5e01);

/// sha256 over the request's significant fields in a fixed order. Protobuf bytes would
/// not do: map fields have no defined order on the wire.
fn fingerprint(request: &SubmitTaskRequest) -> String {
    let dataset = request.dataset.clone().unwrap_or_default();
    let canonical = serde_json::json!({
        "name": request.name.trim(),
        "type": request.r#type,
        "base_model": request.base_model,
        "columns": request.columns.iter().collect::<BTreeMap<_, _>>(),
        "hours": request.hours_to_complete.to_bits(),
        "reward_functions": request.reward_functions,
        "dataset_sha256": dataset.sha256.to_ascii_lowercase(),
        "dataset_size": dataset.size,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

fn data_limits(limits: &gradients_config::LimitSettings) -> Limits {
    Limits {
        max_bytes: limits.max_bytes,
        max_row_bytes: limits.max_row_bytes,
        max_rows: limits.max_rows,
        min_rows: limits.min_rows,
    }
}
