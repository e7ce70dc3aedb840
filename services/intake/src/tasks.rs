//! Intake's task records: reading them, and writing a task or a status change together
//! with its outbox events in one transaction.

use std::collections::BTreeMap;

use crate::auth::Caller;
use crate::error::RequestError;
use gradients_bus::subjects::buckets;
use gradients_proto::v1::{DatasetRef, ObjectRef, RewardFunction, Task, TaskSplits, TaskStatus, TaskType, Timestamp};
use gradients_reward::RewardSpec;
use gradients_store::entity::task;
pub use gradients_store::outbox::{status_event, PendingEvent};
use gradients_store::paging;
use gradients_store::sea_orm::sea_query::{Expr, Order};
use gradients_store::sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

/// The stored type of a checked task type.
pub fn stored_type(checked: gradients_data::TaskType) -> task::TaskType {
    match checked {
        gradients_data::TaskType::Instruct => task::TaskType::Instruct,
        gradients_data::TaskType::Chat => task::TaskType::Chat,
        gradients_data::TaskType::Dpo => task::TaskType::Dpo,
        gradients_data::TaskType::Grpo => task::TaskType::Grpo,
    }
}

/// Finds a task by id.
pub async fn find(db: &DatabaseConnection, task_id: &str) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find_by_id(task_id.to_owned()).one(db).await
}

/// The task `caller` asks for, when it exists and the caller may see it. Another
/// customer's task is answered exactly like a missing one: its existence is not told.
/// An id that is not a UUID never reaches the database (it could hold any byte).
pub async fn find_visible(
    db: &DatabaseConnection,
    caller: &Caller,
    task_id: &str,
) -> Result<task::Model, RequestError> {
    let not_found = || RequestError::NotFound(task_id.chars().take(64).collect());
    if uuid::Uuid::parse_str(task_id).is_err() {
        return Err(not_found());
    }
    match find(db, task_id).await? {
        Some(row) if caller.sees(&row.customer_id) => Ok(row),
        _ => Err(not_found()),
    }
}

/// Stores a new task and its events atomically.
pub async fn insert(db: &DatabaseConnection, row: task::Model, events: Vec<PendingEvent>) -> Result<(), DbErr> {
    let now = row.created_at_ms;
    let txn = db.begin().await?;
    row.into_active_model().insert(&txn).await?;
    for event in events {
        event.store(&txn, now).await?;
    }
    txn.commit().await
}

/// A status change of one task.
pub struct Transition<'a> {
    /// The task.
    pub task_id: &'a str,
    /// The status it must still have for the change to apply.
    pub from: TaskStatus,
    /// The new status.
    pub to: TaskStatus,
    /// Why, for people.
    pub reason: &'a str,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

/// Applies `change` unless someone else moved the task first; when `announce`, stores
/// the transition's event (with the current trace) in the same transaction. Returns
/// false when the task was no longer in `change.from` (the caller re-reads and decides).
pub async fn transition(db: &DatabaseConnection, change: &Transition<'_>, announce: bool) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let updated = task::Entity::update_many()
        .col_expr(task::Column::Status, Expr::value(change.to.label()))
        .col_expr(task::Column::StatusReason, Expr::value(change.reason))
        .col_expr(task::Column::UpdatedAtMs, Expr::value(change.at_ms))
        .filter(task::Column::Id.eq(change.task_id))
        .filter(task::Column::Status.eq(change.from.label()))
        .exec(&txn)
        .await?;
    if updated.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(false);
    }
    if announce {
        status_event(change.task_id, change.from, change.to, change.reason, change.at_ms, crate::SERVICE_NAME)
            .store(&txn, change.at_ms)
            .await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Which page of which tasks `list` reads.
pub struct Page<'a> {
    /// Only this customer's tasks; `None` for every task (operators).
    pub owner: Option<&'a str>,
    /// Only tasks in this state.
    pub status: Option<TaskStatus>,
    /// At most this many.
    pub size: u64,
    /// Where the previous page ended; empty for the first.
    pub token: &'a str,
}

/// One page of tasks, newest first, and the token of the next page.
pub async fn list(db: &DatabaseConnection, page: Page<'_>) -> Result<(Vec<task::Model>, String), PageTokenError> {
    let (status, page_size, page_token) = (page.status, page.size, page.token);
    let mut query = task::Entity::find();
    if let Some(owner) = page.owner {
        query = query.filter(task::Column::CustomerId.eq(owner));
    }
    if let Some(status) = status {
        query = query.filter(task::Column::Status.eq(status.label()));
    }
    if !page_token.is_empty() {
        let (created, id) =
            paging::parse_page_token(page_token).ok_or_else(|| PageTokenError::Malformed(page_token.to_owned()))?;
        query = query.filter(
            Condition::any()
                .add(task::Column::CreatedAtMs.lt(created))
                .add(Condition::all().add(task::Column::CreatedAtMs.eq(created)).add(task::Column::Id.lt(id))),
        );
    }
    let mut rows = query
        .order_by(task::Column::CreatedAtMs, Order::Desc)
        .order_by(task::Column::Id, Order::Desc)
        .limit(page_size + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > page_size {
        rows.truncate(page_size as usize);
        rows.last().map(|r| paging::page_token(r.created_at_ms, &r.id)).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((rows, next))
}

/// A page token that is not one this service issued, or a failed query.
#[derive(Debug, thiserror::Error)]
pub enum PageTokenError {
    /// The token is malformed.
    #[error("page_token {0:?} is not a token this service issued")]
    Malformed(String),
    /// The query failed.
    #[error(transparent)]
    Store(#[from] DbErr),
}

/// A task's reward functions as stored in `reward_functions_json`: a JSON array of specs
/// (`{"name", "weight", "params"}`); tasks stored before weights and parameters hold bare
/// names, read as weight 1 with no parameters.
pub fn stored_rewards(json: &str) -> Result<Vec<RewardSpec>, serde_json::Error> {
    /// One element of the stored array, in either form.
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Name(String),
        Spec(RewardSpec),
    }
    let stored: Vec<Stored> = serde_json::from_str(json)?;
    Ok(stored
        .into_iter()
        .map(|s| match s {
            Stored::Name(name) => RewardSpec::named(name),
            Stored::Spec(spec) => spec,
        })
        .collect())
}

/// The wire form of a stored task; stored JSON that no longer parses is an error, never an
/// empty mapping.
pub fn to_proto(row: &task::Model) -> Result<Task, DbErr> {
    let unreadable = |column: &str, e: serde_json::Error| {
        DbErr::Json(format!("task {}: stored {column} is not the JSON it was written as: {e}", row.id))
    };
    let columns: BTreeMap<String, String> =
        serde_json::from_str(&row.columns_json).map_err(|e| unreadable("columns_json", e))?;
    let reward_specs =
        stored_rewards(&row.reward_functions_json).map_err(|e| unreadable("reward_functions_json", e))?;
    let split = |bucket: &str, part: &str, sha256: &str, size: i64, rows: i64| DatasetRef {
        object: Some(ObjectRef {
            bucket: bucket.to_owned(),
            name: buckets::split_object(&row.id, part, sha256),
            sha256: sha256.to_owned(),
            size: size as u64,
        }),
        rows: rows as u64,
    };
    Ok(Task {
        id: row.id.clone(),
        name: row.name.clone(),
        r#type: TaskType::from(row.task_type) as i32,
        base_model: row.base_model.clone(),
        columns,
        hours_to_complete: row.hours_to_complete,
        reward_functions: reward_specs.iter().map(|spec| spec.name.clone()).collect(),
        rewards: reward_specs.iter().map(RewardFunction::from).collect(),
        status: TaskStatus::from(row.status) as i32,
        status_reason: row.status_reason.clone(),
        dataset: Some(ObjectRef {
            bucket: buckets::uploads(&row.customer_id),
            name: String::new(),
            sha256: row.dataset_sha256.clone(),
            size: row.dataset_size as u64,
        }),
        dataset_rows: row.dataset_rows as u64,
        splits: Some(TaskSplits {
            train: Some(split(buckets::TRAIN, "train", &row.train_sha256, row.train_size, row.train_rows)),
            synth: Some(split(buckets::VALIDATOR, "synth", &row.synth_sha256, row.synth_size, row.synth_rows)),
            test: Some(split(buckets::VALIDATOR, "test", &row.test_sha256, row.test_size, row.test_rows)),
        }),
        created_at: Some(Timestamp { unix_ms: row.created_at_ms }),
        deadline: Some(Timestamp { unix_ms: row.deadline_ms }),
        idempotency_key: row.idempotency_key.clone(),
        customer_id: row.customer_id.clone(),
    })
}
