//! Deadlines: when a task's deadline passes, dispatch closes it for submissions and says
//! so (`training -> evaluating`); a task still waiting for miners at its deadline fails.
//! The evaluator refuses (and records) anything that arrives later.

use std::time::Duration;

use gradients_proto::v1::{TaskStatus, Timestamp};
use gradients_store::entity::dispatch::{task, TaskState};
use gradients_store::outbox::status_event;
use gradients_store::sea_orm::sea_query::Expr;
use gradients_store::sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, TransactionTrait};
use tokio_util::sync::CancellationToken;

use crate::{Context, SERVICE_NAME};

/// Closes due tasks every `interval` until `stop`.
pub async fn sweep(ctx: &Context, interval: Duration, stop: CancellationToken) {
    loop {
        if let Err(e) = close_due(ctx, Timestamp::now().unix_ms).await {
            tracing::warn!(error = %e, "deadline sweep failed; will retry");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Closes every task whose deadline is at or before `now_ms`; returns how many.
pub async fn close_due(ctx: &Context, now_ms: i64) -> Result<usize, DbErr> {
    let due = task::Entity::find()
        .filter(task::Column::DeadlineMs.lte(now_ms))
        .filter(task::Column::State.is_in([TaskState::Offering, TaskState::Training]))
        .all(&ctx.db)
        .await?;
    let mut closed = 0;
    for row in due {
        let (next, from, to, reason) = if row.state == TaskState::Training {
            (TaskState::Closed, TaskStatus::Training, TaskStatus::Evaluating, "deadline passed: closed for submissions")
        } else {
            (
                TaskState::Failed,
                TaskStatus::Dispatching,
                TaskStatus::Failed,
                "deadline passed before any miner was assigned",
            )
        };
        let txn = ctx.db.begin().await?;
        let moved = task::Entity::update_many()
            .col_expr(task::Column::State, Expr::value(next))
            .col_expr(task::Column::Reason, Expr::value(reason))
            .col_expr(task::Column::UpdatedAtMs, Expr::value(now_ms))
            .filter(task::Column::TaskId.eq(row.task_id.as_str()))
            .filter(task::Column::State.eq(row.state))
            .exec(&txn)
            .await?;
        if moved.rows_affected == 1 {
            status_event(&row.task_id, from, to, reason, now_ms, SERVICE_NAME).store(&txn, now_ms).await?;
            closed += 1;
        }
        txn.commit().await?;
    }
    if closed > 0 {
        ctx.outbox.wake();
    }
    Ok(closed)
}
