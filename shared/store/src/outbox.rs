//! The outbox relay: publishes events that were stored with the state they describe.
//!
//! A request's transaction writes its events as `outbox` rows; this relay publishes them
//! (at once when woken, and on a timer to pick up what a crash left behind) and marks them
//! published. A crash after publish but before marking republishes with the same
//! `Nats-Msg-Id`, which JetStream drops as a duplicate: the event is seen once.

use std::sync::Arc;
use std::time::Duration;

use gradients_bus::event::{publish_events, OutgoingEvent};
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

impl PendingEvent {
    /// Stores `events` in the outbox with one multi-row insert inside `txn` (nothing when
    /// there are none), each with the current span's trace context.
    pub async fn store_all(events: Vec<PendingEvent>, txn: &impl ConnectionTrait, now_ms: i64) -> Result<(), DbErr> {
        if events.is_empty() {
            return Ok(());
        }
        let traceparent = gradients_bus::event::current_traceparent();
        let rows = events.into_iter().map(|event| outbox::ActiveModel {
            id: Set(event.id),
            subject: Set(event.subject),
            payload: Set(event.payload),
            traceparent: Set(traceparent.clone()),
            created_at_ms: Set(now_ms),
            published_at_ms: Set(None),
        });
        outbox::Entity::insert_many(rows).exec_without_returning(txn).await.map(|_| ())
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

/// Rows published per round: one finalization of the ledger's batch writes a few hundred,
/// and each round costs a SELECT and an UPDATE whatever its size.
const BATCH: u64 = 500;

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
            // The whole batch goes out before any ack is awaited; what JetStream confirmed is
            // marked with one UPDATE, the rest stays for the next round.
            let subjects: Vec<String> = rows.iter().map(|r| r.subject.clone()).collect();
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let events = rows
                .into_iter()
                .map(|row| OutgoingEvent {
                    subject: row.subject,
                    id: row.id,
                    payload: row.payload.into(),
                    traceparent: row.traceparent,
                })
                .collect();
            let acks = publish_events(&self.bus.jetstream, events).await;
            let mut confirmed = Vec::with_capacity(ids.len());
            let mut failure = None;
            for ((id, subject), ack) in ids.into_iter().zip(&subjects).zip(acks) {
                match ack {
                    Ok(ack) => {
                        self.metrics.published(subject.split('.').nth(1).unwrap_or("other"));
                        tracing::debug!(event_id = %id, %subject, sequence = ack.sequence, duplicate = ack.duplicate, "event published");
                        confirmed.push(id);
                    }
                    Err(e) => failure = Some(e),
                }
            }
            if !confirmed.is_empty() {
                published += confirmed.len();
                outbox::Entity::update_many()
                    .col_expr(outbox::Column::PublishedAtMs, Expr::value(Timestamp::now().unix_ms))
                    .filter(outbox::Column::Id.is_in(confirmed))
                    .exec(&self.db)
                    .await?;
            }
            if let Some(e) = failure {
                return Err(e.into());
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
