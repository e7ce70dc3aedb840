//! `submit`: check the request, read and validate the caller's upload, split it, store the
//! task with its events, answer. Idempotent by key: the task id is derived from the
//! customer and its key, so a retry (or a concurrent twin) finds the same task and never
//! makes a second one. Split objects are named by their content: two different requests
//! racing with one key write different objects, the loser removes its own, and the stored
//! task always names the objects holding exactly its rows.

use std::collections::BTreeMap;

use gradients_bus::objects::{self, ObjectError};
use gradients_bus::subjects::{self, buckets};
use gradients_data::{ColumnMap, Limits, SplitPlan};
use gradients_model::store::{self, StoreError};
use gradients_proto::v1::{
    ErrorCode, ObjectRef, SubmitTaskRequest, SubmitTaskResponse, TaskCreated, TaskStatus, TaskType, Timestamp,
};
use gradients_reward::{specs_from_wire, RewardSet, SpecError};
use gradients_store::entity::task;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::RequestError;
use crate::tasks::{self, PendingEvent};
use crate::{ingest, upload, Context};

/// Longest task name and idempotency key accepted.
const MAX_NAME_CHARS: usize = 200;
/// Longest reward function parameter accepted (a pattern is at most 1 KiB anyway).
const MAX_PARAM_CHARS: usize = 2048;

/// Handles one submit request, in one of the process's submit slots. Once the request
/// is settled (accepted, replayed or rejected) the upload is removed: the splits hold the
/// data, and nothing of a rejected task is kept. After a failure of our own the upload
/// stays, for the client's retry.
pub async fn submit(
    ctx: &Context,
    caller: &Caller,
    request: SubmitTaskRequest,
) -> Result<SubmitTaskResponse, RequestError> {
    let _slot = ctx.submits.try_take(&caller.customer_id)?;
    let upload = request.dataset.clone();
    let result = accept(ctx, caller, request).await;
    let settled = match &result {
        Ok(_) => true,
        Err(e) => e.is_rejection(),
    };
    if let (true, Some(upload)) = (settled, upload) {
        upload::remove(ctx, caller, &upload).await;
    }
    result
}

/// One split as written: where, and its bytes' sha256.
struct WrittenSplit {
    reference: ObjectRef,
    rows: usize,
}

async fn accept(
    ctx: &Context,
    caller: &Caller,
    request: SubmitTaskRequest,
) -> Result<SubmitTaskResponse, RequestError> {
    let checked = check_request(ctx, caller, &request)?;
    let key = if request.idempotency_key.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        request.idempotency_key.clone()
    };
    let task_id = task_id_for(&caller.customer_id, &key);
    let fingerprint = fingerprint(&request);
    tracing::Span::current().record("task_id", task_id.as_str());

    if let Some(existing) = tasks::find(&ctx.db, &task_id).await? {
        return replay(existing, &key, &fingerprint);
    }
    // After the replay: a task accepted once stays answerable even if its model is
    // withdrawn later; before the upload is read, which is the expensive part.
    check_published(ctx, &request.base_model).await?;

    let dataset_ref = request.dataset.clone().unwrap_or_default();
    let limits = data_limits(&ctx.settings.intake.limits);
    // Declared sizes over the limit are refused before any budget is waited for; the
    // reader holds the object to exactly the declared size.
    if dataset_ref.size > limits.max_bytes {
        return Err(ObjectError::TooLarge { size: dataset_ref.size, limit: limits.max_bytes }.into());
    }
    let _budget = ctx.data_budget.reserve(dataset_ref.size).await?;
    let split_settings = &ctx.settings.intake.split;
    let recipe = ingest::Recipe {
        task_type: checked.task_type,
        columns: checked.columns,
        limits,
        plan: SplitPlan {
            test_fraction: split_settings.test_fraction,
            test_max_rows: split_settings.test_max_rows,
            synth_fraction: split_settings.synth_fraction,
            synth_max_rows: split_settings.synth_max_rows,
        },
        seed: task_id.clone(),
        rewards: checked.rewards.clone(),
    };
    let prepared = ingest::prepare(ctx, &dataset_ref, recipe).await?;

    let train_bucket = objects::bucket(&ctx.bus, buckets::TRAIN).await?;
    let validator_bucket = objects::bucket(&ctx.bus, buckets::VALIDATOR).await?;
    let mut written = Vec::with_capacity(3);
    for split in &prepared.splits {
        let store = if split.bucket == buckets::TRAIN { &train_bucket } else { &validator_bucket };
        let name = buckets::split_object(&task_id, split.part, &split.sha256);
        let reference = objects::put_hashed(store, split.bucket, &name, &split.jsonl, split.sha256.clone()).await?;
        written.push(WrittenSplit { reference, rows: split.rows });
    }
    let [train_ref, synth_ref, test_ref] = [&written[0], &written[1], &written[2]];

    let now = Timestamp::now().unix_ms;
    let row = task::Model {
        id: task_id.clone(),
        customer_id: caller.customer_id.clone(),
        idempotency_key: key.clone(),
        request_sha256: fingerprint.clone(),
        name: request.name.trim().to_owned(),
        task_type: tasks::stored_type(checked.task_type),
        base_model: request.base_model.clone(),
        columns_json: serde_json::to_string(&request.columns.iter().collect::<BTreeMap<_, _>>()).unwrap_or_default(),
        hours_to_complete: request.hours_to_complete,
        reward_functions_json: serde_json::to_string(checked.rewards.as_ref().map_or(&[][..], RewardSet::specs))
            .unwrap_or_default(),
        status: task::TaskStatus::Accepted,
        status_reason: String::new(),
        dataset_sha256: dataset_ref.sha256.to_ascii_lowercase(),
        dataset_size: dataset_ref.size as i64,
        dataset_rows: prepared.rows as i64,
        train_sha256: train_ref.reference.sha256.clone(),
        train_size: train_ref.reference.size as i64,
        train_rows: train_ref.rows as i64,
        synth_sha256: synth_ref.reference.sha256.clone(),
        synth_size: synth_ref.reference.size as i64,
        synth_rows: synth_ref.rows as i64,
        test_sha256: test_ref.reference.sha256.clone(),
        test_size: test_ref.reference.size as i64,
        test_rows: test_ref.rows as i64,
        created_at_ms: now,
        deadline_ms: now + (request.hours_to_complete * 3_600_000.0) as i64,
        updated_at_ms: now,
    };
    let task = tasks::to_proto(&row)?;
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
            // A concurrent request with the same key won the race: its row names its own
            // split objects; ours are removed unless they are the very same objects.
            let existing = tasks::find(&ctx.db, &task_id).await?.ok_or(RequestError::Store(e))?;
            remove_losing_splits(ctx, &existing, &written).await;
            return replay(existing, &key, &fingerprint);
        }
        Err(e) => return Err(e.into()),
    }
    #[cfg(feature = "test-faults")]
    if ctx.settings.intake.faults.crash_after_store {
        ctx.crash.fire("crash_after_store");
        // Killed processes do not answer: park here until the service is torn down.
        std::future::pending::<()>().await;
    }
    ctx.outbox.wake();
    tracing::info!(
        task_id,
        customer_id = %caller.customer_id,
        rows = prepared.rows,
        train = train_ref.rows,
        synth = synth_ref.rows,
        test = test_ref.rows,
        "task accepted"
    );
    Ok(SubmitTaskResponse { task: Some(task), created: true })
}

/// Refuses a base model that is not published in the `gradients-models` store: dispatch
/// would assign the task and every miner and the evaluator would fail to fetch the model.
async fn check_published(ctx: &Context, base_model: &str) -> Result<(), RequestError> {
    let not_published = |why: String| {
        RequestError::bad(
            ErrorCode::BaseModelNotPublished,
            format!(
                "base model {base_model:?} {why}; an operator publishes it with `gradients model publish DIR --name {base_model}`"
            ),
        )
    };
    match store::read_index(&ctx.bus, base_model).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(not_published(format!("is not published in {}", buckets::MODELS))),
        Err(StoreError::Bus(e)) => Err(RequestError::Bus(e)),
        // An index that does not read is no model anyone can fetch.
        Err(e) => Err(not_published(format!("has an unusable index ({e})"))),
    }
}

/// The request's fields, checked; everything the data set is read with.
struct CheckedRequest {
    task_type: gradients_data::TaskType,
    columns: ColumnMap,
    /// A GRPO task's reward functions; `None` for every other type.
    rewards: Option<RewardSet>,
}

/// Removes the split objects this attempt wrote that the winning task does not name.
/// A failure is logged: the winner's task is intact either way, and what is left is
/// unreferenced.
async fn remove_losing_splits(ctx: &Context, winner: &task::Model, written: &[WrittenSplit]) {
    let winner_shas = [&winner.train_sha256, &winner.synth_sha256, &winner.test_sha256];
    for (split, winner_sha) in written.iter().zip(winner_shas) {
        if &split.reference.sha256 == winner_sha {
            continue;
        }
        let bucket = &split.reference.bucket;
        let removed =
            async { objects::delete(&objects::bucket(&ctx.bus, bucket).await?, bucket, &split.reference.name).await };
        if let Err(e) = removed.await {
            tracing::warn!(error = %e, object = %split.reference.name, "could not remove a losing attempt's split");
        }
    }
}

/// Refuses text a field must not hold: control characters (NUL and the like break
/// storage, logs and terminals) and more than `max_chars` characters.
pub(crate) fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), RequestError> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(RequestError::bad(
            ErrorCode::InvalidArgument,
            format!("{field} holds the control character U+{:04X}; use printable text", c as u32),
        ));
    }
    if value.chars().count() > max_chars {
        return Err(RequestError::bad(
            ErrorCode::InvalidArgument,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    Ok(())
}

fn check_request(ctx: &Context, caller: &Caller, request: &SubmitTaskRequest) -> Result<CheckedRequest, RequestError> {
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
    check_text("name", &request.name, MAX_NAME_CHARS)?;
    if request.name.trim().is_empty() {
        return Err(RequestError::bad(
            ErrorCode::InvalidArgument,
            format!("name must have 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    check_text("idempotency_key", &request.idempotency_key, MAX_NAME_CHARS)?;
    for (role, column) in &request.columns {
        check_text("columns", role, MAX_NAME_CHARS)?;
        check_text("columns", column, MAX_NAME_CHARS)?;
    }
    let rewards = check_rewards(intake, task_type, request)?;
    let dataset = request
        .dataset
        .as_ref()
        .ok_or_else(|| RequestError::bad(ErrorCode::InvalidArgument, "dataset is missing: upload it first"))?;
    upload::check_own(caller, dataset)?;
    // The name travels into subjects, logs and error headers: printable text only.
    check_text("dataset.name", &dataset.name, MAX_NAME_CHARS)?;
    if dataset.name.is_empty() {
        return Err(RequestError::bad(ErrorCode::InvalidArgument, "dataset.name is empty: name the uploaded object"));
    }
    if dataset.sha256.len() != 64 || !dataset.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(RequestError::bad(ErrorCode::InvalidArgument, "dataset.sha256 must be 64 hex digits"));
    }
    let columns = ColumnMap::with_overrides(&request.columns)?;
    columns.check_for(task_type)?;
    Ok(CheckedRequest { task_type, columns, rewards })
}

/// Checks a request's reward functions: only GRPO has them and it needs at least one,
/// given either as names (`reward_functions`, weight 1) or as `rewards` with weights and
/// parameters, each a function this intake offers, with a finite positive weight and
/// parameters the function reads and can use. The columns they read are checked against
/// every row later, when the data set is parsed.
fn check_rewards(
    intake: &gradients_config::IntakeSettings,
    task_type: gradients_data::TaskType,
    request: &SubmitTaskRequest,
) -> Result<Option<RewardSet>, RequestError> {
    let given = !request.reward_functions.is_empty() || !request.rewards.is_empty();
    if task_type != gradients_data::TaskType::Grpo {
        if given {
            return Err(RequestError::bad(ErrorCode::InvalidArgument, "reward functions apply only to GRPO tasks"));
        }
        return Ok(None);
    }
    if !request.reward_functions.is_empty() && !request.rewards.is_empty() {
        return Err(RequestError::bad(
            ErrorCode::InvalidArgument,
            "give the reward functions either as reward_functions (names) or as rewards, not both",
        ));
    }
    let specs = specs_from_wire(&request.rewards, &request.reward_functions);
    for spec in &specs {
        check_text("reward function name", &spec.name, MAX_NAME_CHARS)?;
        for (key, value) in &spec.params {
            check_text(&format!("reward function {:?} parameter name", spec.name), key, MAX_NAME_CHARS)?;
            check_text(&format!("reward function {:?} parameter {key:?}", spec.name), value, MAX_PARAM_CHARS)?;
        }
    }
    if let Some(unknown) = specs.iter().find(|spec| !intake.reward_functions.contains(&spec.name)) {
        return Err(RequestError::bad(
            ErrorCode::UnknownRewardFunction,
            format!("reward function {:?} is not one of {}", unknown.name, intake.reward_functions.join(", ")),
        ));
    }
    RewardSet::new(specs).map(Some).map_err(|e| {
        let code = match e {
            SpecError::Empty | SpecError::UnknownFunction { .. } => ErrorCode::UnknownRewardFunction,
            _ => ErrorCode::InvalidRewardFunction,
        };
        RequestError::bad(code, e.to_string())
    })
}

/// What a retry gets: the stored task, unless the key was used for something else.
fn replay(existing: task::Model, key: &str, fingerprint: &str) -> Result<SubmitTaskResponse, RequestError> {
    if existing.request_sha256 != fingerprint {
        return Err(RequestError::IdempotencyConflict(key.to_owned()));
    }
    Ok(SubmitTaskResponse { task: Some(tasks::to_proto(&existing)?), created: false })
}

/// The task id a customer's idempotency key stands for. Keys are the customer's own:
/// two customers using one key get two tasks, and neither learns of the other.
pub fn task_id_for(customer_id: &str, key: &str) -> String {
    let scoped = format!("{customer_id}\0{key}");
    uuid::Uuid::new_v5(&TASK_ID_NAMESPACE, scoped.as_bytes()).to_string()
}

/// Namespace of task ids (a fixed random UUID; changing it changes every id).
const TASK_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1f_2c47_93a5_4f0e_9d1b_7c6e_2a44_5e01);

/// sha256 over the request's significant fields in a fixed order. Protobuf bytes would
/// not do: map fields have no defined order on the wire.
fn fingerprint(request: &SubmitTaskRequest) -> String {
    let dataset = request.dataset.clone().unwrap_or_default();
    let mut canonical = serde_json::json!({
        "name": request.name.trim(),
        "type": request.r#type,
        "base_model": request.base_model,
        "columns": request.columns.iter().collect::<BTreeMap<_, _>>(),
        "hours": request.hours_to_complete.to_bits(),
        "reward_functions": request.reward_functions,
        "dataset_sha256": dataset.sha256.to_ascii_lowercase(),
        "dataset_size": dataset.size,
    });
    // Only present when given, so a request without it has the fingerprint it always had.
    if !request.rewards.is_empty() {
        let rewards: Vec<_> = request
            .rewards
            .iter()
            .map(|f| serde_json::json!({ "name": f.name, "weight": f.weight.map(f64::to_bits), "params": f.params }))
            .collect();
        canonical["rewards"] = rewards.into();
    }
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
