//! `cancel`: a customer withdraws a task that has not finished.

use gradients_proto::v1::{CancelTaskRequest, CancelTaskResponse, ErrorCode, TaskStatus, Timestamp};

use crate::error::RequestError;
use crate::tasks::{self, Transition};
use crate::Context;

/// How often a cancel re-reads a task that another writer moved under it.
const MAX_ATTEMPTS: usize = 5;

/// Cancels the task unless it already ended. Cancelling a cancelled task is answered
/// with the task as it is (a retried cancel must not fail).
pub async fn cancel(ctx: &Context, request: CancelTaskRequest) -> Result<CancelTaskResponse, RequestError> {
    if request.task_id.is_empty() {
        return Err(RequestError::bad(ErrorCode::InvalidArgument, "task_id is empty"));
    }
    let reason = if request.reason.trim().is_empty() { "cancelled by the customer" } else { request.reason.trim() };
    for _ in 0..MAX_ATTEMPTS {
        let row = tasks::find(&ctx.db, &request.task_id)
            .await?
            .ok_or_else(|| RequestError::NotFound(request.task_id.clone()))?;
        let current = TaskStatus::from_label(&row.status).unwrap_or_default();
        if current == TaskStatus::Cancelled {
            return Ok(CancelTaskResponse { task: Some(tasks::to_proto(&row)) });
        }
        if current.is_terminal() {
            return Err(RequestError::InvalidTransition { from: current, to: TaskStatus::Cancelled });
        }
        let change = Transition {
            task_id: &row.id,
            from: current,
            to: TaskStatus::Cancelled,
            reason,
            at_ms: Timestamp::now().unix_ms,
        };
        if tasks::transition(&ctx.db, &change, true).await? {
            ctx.outbox.wake();
            let row = tasks::find(&ctx.db, &row.id).await?.ok_or_else(|| RequestError::NotFound(row.id.clone()))?;
            tracing::info!(task_id = %row.id, from = %current.label(), "task cancelled");
            return Ok(CancelTaskResponse { task: Some(tasks::to_proto(&row)) });
        }
    }
    Err(RequestError::bad(ErrorCode::Unavailable, "the task kept changing while cancelling; try again"))
}
