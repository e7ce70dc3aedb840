//! `tasks`: intake's record of every accepted task; `status` is the projection of the
//! task's status events.

use sea_orm::entity::prelude::*;

/// One accepted task.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    /// UUID; derived from the customer and its idempotency key, so a retried submit
    /// finds the same row.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The customer that submitted it (`c` + 40 hex digits of its key's sha256); empty for
    /// tasks stored before customers had identities.
    pub customer_id: String,
    /// The customer's key; unique per customer (with `customer_id`).
    pub idempotency_key: String,
    /// sha256 of the submit request's significant fields: a key reused for a different
    /// request is refused.
    pub request_sha256: String,
    pub name: String,
    /// `instruct`, `chat`, `dpo`, `grpo`.
    pub task_type: String,
    pub base_model: String,
    /// JSON object: canonical role → the customer's column name.
    pub columns_json: String,
    pub hours_to_complete: f64,
    /// JSON array of reward function names (GRPO).
    pub reward_functions_json: String,
    /// Lower-case `TaskStatus` label.
    pub status: String,
    pub status_reason: String,
    pub dataset_sha256: String,
    pub dataset_size: i64,
    pub dataset_rows: i64,
    pub train_sha256: String,
    pub train_size: i64,
    pub train_rows: i64,
    pub synth_sha256: String,
    pub synth_size: i64,
    pub synth_rows: i64,
    pub test_sha256: String,
    pub test_size: i64,
    pub test_rows: i64,
    pub created_at_ms: i64,
    pub deadline_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
