//! The ledger's inputs a fetched batch at a time: the batch's rows go in with one multi-row
//! `INSERT … ON CONFLICT DO NOTHING` per table and one commit, the tasks it touched are
//! checked with one readiness statement, and those ready are finalized in one transaction
//! (see [`Finalizer::finalize_ready`]). The worker acks after both commits. When the batch
//! fails as a whole (a second evaluation of one miner, a database hiccup), it falls back to
//! the single-message handlers, so one bad message never dead-letters its neighbours.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_nats::jetstream;
use gradients_bus::batch_worker::BatchHandler;
use gradients_bus::worker::{Handled, Handler, HandlerError};
use gradients_proto::v1::Timestamp;
use gradients_store::sea_orm::{ActiveModelTrait, DbErr, EntityTrait};

use crate::finalize::Finalizer;
use crate::record::{self, AssignmentRecorder, EvaluationRecorder, TaskRecorder};

/// A check a message must pass before it is recorded (dispatch's signature on an
/// assignment, the evaluator's on an evaluation). `Some(reason)` refuses it as poison; the
/// screen itself counts and logs what it refuses.
pub trait Screen: Send + Sync + 'static {
    /// Why `message` must not be recorded, if it must not.
    fn refusal(&self, message: &jetstream::Message) -> Option<String>;
}

/// Lets every message through.
pub struct Unscreened;

impl Screen for Unscreened {
    fn refusal(&self, _: &jetstream::Message) -> Option<String> {
        None
    }
}

/// One of the ledger's three inputs: how a message becomes a row, and the single-message
/// handler the batch falls back to.
pub trait Input: Send + Sync + 'static {
    /// The table's entity.
    type Entity: EntityTrait;
    /// The row `message` records, or why it is poison.
    fn row(message: &jetstream::Message) -> Result<<Self::Entity as EntityTrait>::ActiveModel, HandlerError>;
    /// The task a row belongs to.
    fn task_of(row: &<Self::Entity as EntityTrait>::ActiveModel) -> String;
    /// Handles one message the way the single-message worker does.
    fn handle_one(
        finalizer: &Arc<Finalizer>,
        message: &jetstream::Message,
    ) -> impl std::future::Future<Output = Result<Handled, HandlerError>> + Send;
}

/// Created tasks.
pub struct Tasks;
/// Assignments.
pub struct Assignments;
/// Evaluation results.
pub struct Evaluations;

impl Input for Tasks {
    type Entity = gradients_store::entity::ledger::task::Entity;
    fn row(message: &jetstream::Message) -> Result<<Self::Entity as EntityTrait>::ActiveModel, HandlerError> {
        record::task_row(message)
    }
    fn task_of(row: &<Self::Entity as EntityTrait>::ActiveModel) -> String {
        row.task_id.as_ref().clone()
    }
    async fn handle_one(finalizer: &Arc<Finalizer>, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        TaskRecorder(finalizer.clone()).handle(message).await
    }
}

impl Input for Assignments {
    type Entity = gradients_store::entity::ledger::assignment::Entity;
    fn row(message: &jetstream::Message) -> Result<<Self::Entity as EntityTrait>::ActiveModel, HandlerError> {
        record::assignment_row(message)
    }
    fn task_of(row: &<Self::Entity as EntityTrait>::ActiveModel) -> String {
        row.task_id.as_ref().clone()
    }
    async fn handle_one(finalizer: &Arc<Finalizer>, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        AssignmentRecorder(finalizer.clone()).handle(message).await
    }
}

impl Input for Evaluations {
    type Entity = gradients_store::entity::ledger::evaluation::Entity;
    fn row(message: &jetstream::Message) -> Result<<Self::Entity as EntityTrait>::ActiveModel, HandlerError> {
        record::evaluation_row(message)
    }
    fn task_of(row: &<Self::Entity as EntityTrait>::ActiveModel) -> String {
        row.task_id.as_ref().clone()
    }
    async fn handle_one(finalizer: &Arc<Finalizer>, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        EvaluationRecorder(finalizer.clone()).handle(message).await
    }
}

/// Records one input a batch at a time, behind a [`Screen`].
pub struct Batched<I: Input, S: Screen> {
    /// Finalizes what the batch completes.
    pub finalizer: Arc<Finalizer>,
    /// What a message must pass to be recorded.
    pub screen: S,
    /// Which input.
    pub input: std::marker::PhantomData<I>,
}

impl<I: Input, S: Screen> Batched<I, S> {
    /// A batch handler for input `I` behind `screen`.
    pub fn new(finalizer: Arc<Finalizer>, screen: S) -> Self {
        Self { finalizer, screen, input: std::marker::PhantomData }
    }

    /// Inserts `rows` with one statement (atomic and committed on its own, without a
    /// transaction's two extra round trips), then finalizes what they made ready.
    async fn write(&self, rows: Vec<<I::Entity as EntityTrait>::ActiveModel>) -> Result<(), DbErr>
    where
        <I::Entity as EntityTrait>::ActiveModel: ActiveModelTrait<Entity = I::Entity> + Send,
    {
        let touched: BTreeSet<String> = rows.iter().map(I::task_of).collect();
        // A redelivered message finds its row already there: nothing to do for it.
        I::Entity::insert_many(rows).on_conflict_do_nothing().exec_without_returning(&self.finalizer.db).await?;
        let touched: Vec<String> = touched.into_iter().collect();
        self.finalizer.finalize_ready(&touched, Timestamp::now().unix_ms).await?;
        Ok(())
    }
}

impl<I: Input, S: Screen> BatchHandler for Batched<I, S>
where
    <I::Entity as EntityTrait>::ActiveModel: ActiveModelTrait<Entity = I::Entity> + Send,
{
    async fn handle_batch(&self, messages: &[jetstream::Message]) -> Vec<Result<Handled, HandlerError>> {
        let decided: Vec<Result<<I::Entity as EntityTrait>::ActiveModel, HandlerError>> = messages
            .iter()
            .map(|message| match self.screen.refusal(message) {
                Some(reason) => Err(HandlerError::poison(reason)),
                None => I::row(message),
            })
            .collect();
        let rows: Vec<_> = decided.iter().filter_map(|d| d.as_ref().ok().cloned()).collect();
        if rows.is_empty() {
            return decided.into_iter().map(|d| d.map(|_| Handled::Done)).collect();
        }
        match self.write(rows).await {
            Ok(()) => decided.into_iter().map(|d| d.map(|_| Handled::Done)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, messages = messages.len(), "batch failed; handling its messages one at a time");
                let mut results = Vec::with_capacity(messages.len());
                for (message, decided) in messages.iter().zip(decided) {
                    results.push(match decided {
                        Err(refused) => Err(refused),
                        Ok(_) => I::handle_one(&self.finalizer, message).await,
                    });
                }
                results
            }
        }
    }
}
