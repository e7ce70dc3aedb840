//! Cancellations: when intake announces a task `cancelled`, dispatch stops placing it.
//!
//! The task's row moves to `cancelled` (or is created so, when the cancellation overtakes
//! `tasks.created`), and assigning only ever moves a task that is still `offering`, so a
//! task cancelled while its offers are out gets no assignment, whichever comes first. The
//! event is trusted only for the task its subject names.

use std::sync::Arc;

use async_nats::jetstream;
use gradients_bus::subjects;
use gradients_bus::worker::{Handled, Handler, HandlerError};
use gradients_proto::v1::{TaskStatus, TaskStatusChanged, Timestamp};
use gradients_store::entity::dispatch::{task, TaskState};
use gradients_store::sea_orm::sea_query::Expr;
use gradients_store::sea_orm::{ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};

use crate::Context;

/// The handler of `tasks.status.>`.
pub struct Canceller(pub Arc<Context>);

impl Handler for Canceller {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let change = prost::Message::decode(message.payload.as_ref())
            .map_err(|e| HandlerError::poison(format!("not a TaskStatusChanged: {e}")))?;
        let change: TaskStatusChanged = change;
        if change.to != TaskStatus::Cancelled as i32 {
            return Ok(Handled::Done);
        }
        if message.subject.as_str() != subjects::task_status(&change.task_id) {
            return Err(HandlerError::poison(format!(
                "a cancellation of task {:?} came on {}",
                change.task_id, message.subject
            )));
        }
        cancel(&self.0, &change.task_id, &change.reason).await.map_err(HandlerError::transient)?;
        Ok(Handled::Done)
    }
}

/// Marks the task cancelled, unless it already ended.
async fn cancel(ctx: &Context, task_id: &str, reason: &str) -> Result<(), DbErr> {
    let now = Timestamp::now().unix_ms;
    let reason = format!("cancelled: {reason}");
    let row = task::Model {
        task_id: task_id.to_owned(),
        task_proto: Vec::new(),
        state: TaskState::Cancelled,
        reason: reason.clone(),
        deadline_ms: now,
        updated_at_ms: now,
    };
    match row.into_active_model().insert(&ctx.db).await {
        Ok(_) => {
            tracing::info!(task_id, "cancelled before dispatch saw it");
            return Ok(());
        }
        Err(e) if gradients_store::is_unique_violation(&e) => {}
        Err(e) => return Err(e),
    }
    let moved = task::Entity::update_many()
        .col_expr(task::Column::State, Expr::value(TaskState::Cancelled))
        .col_expr(task::Column::Reason, Expr::value(reason))
        .col_expr(task::Column::UpdatedAtMs, Expr::value(now))
        .filter(task::Column::TaskId.eq(task_id))
        .filter(task::Column::State.is_in([TaskState::Offering, TaskState::Training]))
        .exec(&ctx.db)
        .await?;
    tracing::info!(task_id, moved = moved.rows_affected, "task cancelled");
    Ok(())
}
