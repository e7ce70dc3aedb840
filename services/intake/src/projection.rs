//! Keeps each task's `status` up to date from the status events other services publish
//! (dispatch, the ledger...). Only forward moves apply, so redelivered, repeated and
//! reordered events all leave the same result; an event counts only for the task its
//! subject names.

use async_nats::jetstream;
use gradients_bus::subjects;
use gradients_bus::worker::{Handled, Handler, HandlerError};
use gradients_proto::v1::{TaskStatus, TaskStatusChanged};
use gradients_store::sea_orm::DatabaseConnection;
use prost::Message;

use crate::tasks::{self, Transition};

/// How often to re-read a task that changed while applying an event.
const MAX_ATTEMPTS: usize = 5;

/// Applies status events to the task records.
pub struct StatusProjection {
    /// Intake's database.
    pub db: DatabaseConnection,
}

impl Handler for StatusProjection {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let event = TaskStatusChanged::decode(message.payload.as_ref())
            .map_err(|e| HandlerError::poison(format!("not a TaskStatusChanged: {e}")))?;
        // A status event is trusted only for the task its subject names: a publisher
        // allowed on one task's subject cannot move another task through the payload.
        if message.subject.as_str() != subjects::task_status(&event.task_id) {
            return Err(HandlerError::poison(format!(
                "status event {} names task {:?} but came on {}",
                event.event_id, event.task_id, message.subject
            )));
        }
        let to = TaskStatus::try_from(event.to)
            .ok()
            .filter(|s| *s != TaskStatus::Unspecified)
            .ok_or_else(|| HandlerError::poison(format!("event {} has no target status", event.event_id)))?;
        // Control characters (a NUL from whoever wrote the reason) would fail the database
        // write on every redelivery; they carry nothing a person reads.
        let reason: String = event.reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        for _ in 0..MAX_ATTEMPTS {
            let row =
                tasks::find(&self.db, &event.task_id).await.map_err(HandlerError::transient)?.ok_or_else(|| {
                    HandlerError::poison(format!("status event {} for unknown task {}", event.event_id, event.task_id))
                })?;
            let current = TaskStatus::from(row.status);
            if current.progress() >= to.progress() {
                return Ok(Handled::Done); // Already there or past it: a repeat or a late arrival.
            }
            let at_ms = event.at.map(|t| t.unix_ms).unwrap_or_default();
            let change = Transition { task_id: &row.id, from: current, to, reason: &reason, at_ms };
            // The event is already on the bus: only the projection moves, nothing is announced.
            if tasks::transition(&self.db, &change, false).await.map_err(HandlerError::transient)? {
                tracing::info!(task_id = %row.id, from = %current.label(), to = %to.label(), actor = %event.actor, "task status projected");
                return Ok(Handled::Done);
            }
        }
        Err(HandlerError::transient(format!("task {} kept changing", event.task_id)))
    }
}
