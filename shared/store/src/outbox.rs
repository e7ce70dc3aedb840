//! The outbox relay: publishes events that were stored with the state they describe.
//!
//! A request's transaction writes its events as `outbox` rows; this relay publishes them
//! (at once when woken, and on a timer to pick up what a crash left behind) and marks them
//! published. A crash after publish but before marking republishes with the same
//! `Nats-Msg-Id`, which JetStream drops as a duplicate: the event is seen once.

use std::sync::Arc;
use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::{Bus, BusError};
use gradients_proto::v1::{TaskStatus, TaskStatusChanged, Timestamp};
use gradients_telemetry::Metrics;
use prost::Message;
use sea_orm::sea_query::{Expr, Order};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::entity::outbox;

/// An event decided inside a transaction, to be published once it commits.
pub struct PendingEvent {
    /// Its stable id (`Nats-Msg-Id`).
    pub id: String,
    /// Its subject.
    pub subject: String,
    /// The encoded message.
    pub payload: Vec<u8>,
}

impl PendingEvent {
    /// Stores the event in the outbox as part of the caller's transaction `txn`, with the
    /// current span's trace context so the published event continues the trace.
    pub async fn store(self, txn: &impl ConnectionTrait, now_ms: i64) -> Result<(), DbErr> {
        outbox::ActiveModel {
            id: Set(self.id),
            subject: Set(self.subject),
            payload: Set(self.payload),
            traceparent: Set(gradients_bus::event::current_traceparent()),
            created_at_ms: Set(now_ms),
            published_at_ms: Set(None),
        }
        .insert(txn)
        .await
        .map(|_| ())
    }
}

/// A task's status transition as an event on its status subject. The id is derived from
/// (task, new status), so the same transition is the same event whoever decides it and
/// however often.
pub fn status_event(
    task_id: &str,
    from: TaskStatus,
    to: TaskStatus,
    reason: &str,
    at_ms: i64,
    actor: &str,
) -> PendingEvent {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{task_id}:{}", to.label()).as_bytes()).to_string();
    let event = TaskStatusChanged {
        event_id: id.clone(),
        task_id: task_id.to_owned(),
        from: from as i32,
        to: to as i32,
        reason: reason.to_owned(),
        at: Some(Timestamp { unix_ms: at_ms }),
        actor: actor.to_owned(),
    };
    PendingEvent { id, subject: gradients_bus::subjects::task_status(task_id), payload: event.encode_to_vec() }
}

/// Rows published per round.
const BATCH: u64 = 100;

/// Why a relay round stopped early; the next round retries.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] DbErr),
    /// JetStream did not acknowledge.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Publishes stored events. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    db: DatabaseConnection,
    bus: Bus,
    metrics: Metrics,
    wake: Arc<Notify>,
    /// One round at a time in this process; other replicas may overlap, harmlessly.
    round: Arc<Mutex<()>>,
}

impl Relay {
    /// A relay over `db`'s outbox publishing to `bus`.
    pub fn new(db: DatabaseConnection, bus: Bus, metrics: Metrics) -> Self {
        Self { db, bus, metrics, wake: Arc::new(Notify::new()), round: Arc::new(Mutex::new(())) }
    }

    /// Asks the running relay to publish now rather than at its next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes every unpublished row, oldest first; returns how many it published.
    pub async fn flush(&self) -> Result<usize, RelayError> {
        let _round = self.round.lock().await;
        let mut published = 0;
        loop {
            let rows = outbox::Entity::find()
                .filter(outbox::Column::PublishedAtMs.is_null())
                .order_by(outbox::Column::CreatedAtMs, Order::Asc)
                .order_by(outbox::Column::Id, Order::Asc)
                .limit(BATCH)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                return Ok(published);
            }
            for row in rows {
                let id = row.id.clone();
                let subject = row.subject.clone();
                let ack = publish_event(
                    &self.bus.jetstream,
                    OutgoingEvent {
                        subject: row.subject,
                        id: row.id,
                        payload: row.payload.into(),
                        traceparent: row.traceparent,
                    },
                )
                .await?;
                outbox::Entity::update_many()
                    .col_expr(outbox::Column::PublishedAtMs, Expr::value(Timestamp::now().unix_ms))
                    .filter(outbox::Column::Id.eq(id.as_str()))
                    .exec(&self.db)
                    .await?;
                self.metrics.published(subject.split('.').nth(1).unwrap_or("other"));
                tracing::debug!(event_id = %id, %subject, sequence = ack.sequence, duplicate = ack.duplicate, "event published");
                published += 1;
            }
        }
    }

    /// Publishes whenever woken and every `poll`, until `shutdown`; then one last round.
    pub async fn run(self, poll: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "outbox relay round failed; will retry");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "last outbox round failed; the next start publishes the rest");
        }
    }
}
