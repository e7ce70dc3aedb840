//! `cancel`: a customer withdraws its own task that has not finished (an operator, any).

use gradients_proto::v1::{CancelTaskRequest, CancelTaskResponse, ErrorCode, TaskStatus, Timestamp};

use crate::auth::{Caller, Role};
use crate::error::RequestError;
use crate::tasks::{self, Transition};
use crate::Context;

/// How often a cancel re-reads a task that another writer moved under it.
const MAX_ATTEMPTS: usize = 5;

/// Longest cancel reason accepted.
const MAX_REASON_CHARS: usize = 500;

/// Cancels the task unless it already ended; only its owner or an operator may, and to
/// anyone else the task does not exist. Cancelling a cancelled task is answered with the
/// task as it is (a retried cancel must not fail).
pub async fn cancel(
    ctx: &Context,
    caller: &Caller,
    request: CancelTaskRequest,
) -> Result<CancelTaskResponse, RequestError> {
    if request.task_id.is_empty() {
        return Err(RequestError::bad(ErrorCode::InvalidArgument, "task_id is empty"));
    }
    crate::submit::check_text("reason", &request.reason, MAX_REASON_CHARS)?;
    let reason = match (request.reason.trim(), caller.role) {
        ("", Role::Operator) => "cancelled by an operator",
        ("", Role::Customer) => "cancelled by the customer",
        (given, _) => given,
    };
    for _ in 0..MAX_ATTEMPTS {
        let row = tasks::find_visible(&ctx.db, caller, &request.task_id).await?;
        let current = TaskStatus::from(row.status);
        if current == TaskStatus::Cancelled {
            return Ok(CancelTaskResponse { task: Some(tasks::to_proto(&row)?) });
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
            return Ok(CancelTaskResponse { task: Some(tasks::to_proto(&row)?) });
        }
    }
    Err(RequestError::bad(ErrorCode::Unavailable, "the task kept changing while cancelling; try again"))
}
