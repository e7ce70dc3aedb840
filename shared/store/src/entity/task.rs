//! `tasks`: intake's record of every accepted task; `status` is the projection of the
//! task's status events.

use gradients_proto::v1;
use sea_orm::entity::prelude::*;

pub use super::task_type::TaskType;
use crate::label::{stored_label, Unspecified};

stored_label! {
    /// Where a task stands: the lower-case label of each `TaskStatus` but unspecified.
    pub enum TaskStatus {
        Pending => "pending",
        Accepted => "accepted",
        Dispatching => "dispatching",
        Training => "training",
        Evaluating => "evaluating",
        Scored => "scored",
        Rejected => "rejected",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

impl From<TaskStatus> for v1::TaskStatus {
    fn from(stored: TaskStatus) -> Self {
        match stored {
            TaskStatus::Pending => Self::Pending,
            TaskStatus::Accepted => Self::Accepted,
            TaskStatus::Dispatching => Self::Dispatching,
            TaskStatus::Training => Self::Training,
            TaskStatus::Evaluating => Self::Evaluating,
            TaskStatus::Scored => Self::Scored,
            TaskStatus::Rejected => Self::Rejected,
            TaskStatus::Failed => Self::Failed,
            TaskStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl TaskStatus {
    /// The stored value of a wire value; unspecified is never stored.
    pub fn from_proto(wire: v1::TaskStatus) -> Result<Self, Unspecified> {
        Ok(match wire {
            v1::TaskStatus::Pending => Self::Pending,
            v1::TaskStatus::Accepted => Self::Accepted,
            v1::TaskStatus::Dispatching => Self::Dispatching,
            v1::TaskStatus::Training => Self::Training,
            v1::TaskStatus::Evaluating => Self::Evaluating,
            v1::TaskStatus::Scored => Self::Scored,
            v1::TaskStatus::Rejected => Self::Rejected,
            v1::TaskStatus::Failed => Self::Failed,
            v1::TaskStatus::Cancelled => Self::Cancelled,
            v1::TaskStatus::Unspecified => return Err(Unspecified { kind: "TaskStatus", value: wire as i32 }),
        })
    }
}

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
    pub task_type: TaskType,
    pub base_model: String,
    /// JSON object: canonical role → the customer's column name.
    pub columns_json: String,
    pub hours_to_complete: f64,
    /// GRPO: JSON array of reward specs (`{"name", "weight", "params"}`, gradients-reward);
    /// tasks stored before weights and parameters hold bare names (weight 1).
    pub reward_functions_json: String,
    pub status: TaskStatus,
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
