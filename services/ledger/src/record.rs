//! The ledger's three inputs, each an idempotent handler on a durable consumer: created
//! tasks (type, hours, deadline), assignments (who must be evaluated) and evaluation
//! results (the evidence). Each is stored once, byte for byte where it is evidence; a
//! stored evaluation may complete its task, which is then finalized.

use std::sync::Arc;

use async_nats::jetstream;
use gradients_bus::objects::sha256_hex;
use gradients_bus::worker::{Handled, Handler, HandlerError};
use gradients_proto::v1::{Assignment, EvaluationKind, EvaluationResult, TaskCreated, Timestamp};
use gradients_store::entity::ledger::{assignment, evaluation, task, EvaluationKind as StoredKind, TaskType};
use gradients_store::sea_orm::{ActiveModelTrait, DbErr, EntityTrait, Set};
use prost::Message;

use crate::finalize::Finalizer;

fn transient(e: DbErr) -> HandlerError {
    HandlerError::transient(e)
}

/// An insert whose key is already there is a redelivery: done, not an error.
fn inserted_once<T>(result: Result<T, DbErr>) -> Result<(), HandlerError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if gradients_store::is_unique_violation(&e) => Ok(()),
        Err(e) => Err(transient(e)),
    }
}

/// Records each created task.
pub struct TaskRecorder(pub Arc<Finalizer>);

/// The row a `TaskCreated` message records, or why it is poison.
pub fn task_row(message: &jetstream::Message) -> Result<task::ActiveModel, HandlerError> {
    let created = TaskCreated::decode(message.payload.as_ref())
        .map_err(|e| HandlerError::poison(format!("not a TaskCreated: {e}")))?;
    let task = created.task.ok_or_else(|| HandlerError::poison("TaskCreated without a task"))?;
    if task.id.is_empty() {
        return Err(HandlerError::poison("TaskCreated with an empty task id"));
    }
    // A type or deadline read as a default would score every miner wrongly: refuse instead.
    let task_type = TaskType::from_wire(task.r#type)
        .map_err(|_| HandlerError::poison(format!("task {} has no known type ({})", task.id, task.r#type)))?;
    let Some(deadline) = task.deadline.filter(|d| d.unix_ms > 0) else {
        return Err(HandlerError::poison(format!("task {} has no deadline", task.id)));
    };
    Ok(task::ActiveModel {
        task_id: Set(task.id.clone()),
        task_type: Set(task_type),
        base_model: Set(task.base_model.clone()),
        hours_to_complete: Set(task.hours_to_complete),
        deadline_ms: Set(deadline.unix_ms),
        recorded_at_ms: Set(Timestamp::now().unix_ms),
    })
}

impl Handler for TaskRecorder {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let row = task_row(message)?;
        let task_id = row.task_id.clone().unwrap();
        inserted_once(row.insert(&self.0.db).await)?;
        // Evaluations may have come first (streams are consumed independently).
        self.0.try_finalize(&task_id, Timestamp::now().unix_ms).await.map_err(transient)?;
        Ok(Handled::Done)
    }
}

/// Records which miners each task was assigned to.
pub struct AssignmentRecorder(pub Arc<Finalizer>);

/// The row an `Assignment` message records, or why it is poison.
pub fn assignment_row(message: &jetstream::Message) -> Result<assignment::ActiveModel, HandlerError> {
    let assigned = Assignment::decode(message.payload.as_ref())
        .map_err(|e| HandlerError::poison(format!("not an Assignment: {e}")))?;
    if assigned.task_id.is_empty() || assigned.miner_id.is_empty() {
        return Err(HandlerError::poison("Assignment without a task or miner id"));
    }
    Ok(assignment::ActiveModel {
        task_id: Set(assigned.task_id.clone()),
        miner_id: Set(assigned.miner_id.clone()),
        assignment_id: Set(assigned.assignment_id.clone()),
        cohort_size: Set(i64::from(assigned.cohort_size)),
        recorded_at_ms: Set(Timestamp::now().unix_ms),
    })
}

impl Handler for AssignmentRecorder {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let row = assignment_row(message)?;
        let task_id = row.task_id.clone().unwrap();
        inserted_once(row.insert(&self.0.db).await)?;
        self.0.try_finalize(&task_id, Timestamp::now().unix_ms).await.map_err(transient)?;
        Ok(Handled::Done)
    }
}

/// Records each evaluation result as evidence, then finalizes its task if it completes it.
pub struct EvaluationRecorder(pub Arc<Finalizer>);

/// The stored value of an evaluation kind.
pub fn kind_label(kind: EvaluationKind) -> StoredKind {
    kind.into()
}

/// The row an `EvaluationResult` message records (its payload byte for byte, as evidence),
/// or why it is poison.
pub fn evaluation_row(message: &jetstream::Message) -> Result<evaluation::ActiveModel, HandlerError> {
    let result = EvaluationResult::decode(message.payload.as_ref())
        .map_err(|e| HandlerError::poison(format!("not an EvaluationResult: {e}")))?;
    if result.evaluation_id.is_empty() || result.task_id.is_empty() {
        return Err(HandlerError::poison("EvaluationResult without an evaluation or task id"));
    }
    let Ok(kind) = EvaluationKind::try_from(result.kind) else {
        return Err(HandlerError::poison(format!(
            "evaluation {} has an unknown kind ({})",
            result.evaluation_id, result.kind
        )));
    };
    if kind == EvaluationKind::MinerSubmission && result.miner_id.is_empty() {
        return Err(HandlerError::poison(format!("evaluation {} names no miner", result.evaluation_id)));
    }
    Ok(evaluation::ActiveModel {
        evaluation_id: Set(result.evaluation_id.clone()),
        task_id: Set(result.task_id.clone()),
        miner_id: Set(result.miner_id.clone()),
        kind: Set(kind_label(kind)),
        payload: Set(message.payload.to_vec()),
        payload_sha256: Set(sha256_hex(&message.payload)),
        received_at_ms: Set(Timestamp::now().unix_ms),
    })
}

impl Handler for EvaluationRecorder {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        let row = evaluation_row(message)?;
        let (evaluation_id, task_id) = (row.evaluation_id.clone().unwrap(), row.task_id.clone().unwrap());
        match row.clone().insert(&self.0.db).await {
            Ok(_) => {}
            Err(e) if gradients_store::is_unique_violation(&e) => {
                let same =
                    evaluation::Entity::find_by_id(evaluation_id.clone()).one(&self.0.db).await.map_err(transient)?;
                if same.is_none() {
                    // Another evaluation of the same miner on the same task: the first stands.
                    return Err(HandlerError::poison(format!(
                        "a second evaluation ({evaluation_id}) of miner {} on task {task_id}; the first one stands",
                        row.miner_id.unwrap()
                    )));
                }
            }
            Err(e) => return Err(transient(e)),
        }
        self.0.try_finalize(&task_id, Timestamp::now().unix_ms).await.map_err(transient)?;
        Ok(Handled::Done)
    }
}
