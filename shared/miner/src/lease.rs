//! An assignment a miner has taken but not yet settled.
//!
//! The miner's durable consumer redelivers an assignment until it is acknowledged, so the
//! acknowledgement waits until the submission is published: a trainer that dies while it
//! trains gets the assignment back when it restarts (after the consumer's ack wait), instead
//! of losing it. While the work goes on, [`AssignmentLease::keep_alive`] resets the ack wait.
//! An assignment that can never be done is terminated, not redelivered.

use std::ops::Deref;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use gradients_proto::v1::Assignment;

use crate::client::MinerError;

/// How long JetStream waits for a miner to settle or renew an assignment before handing it
/// out again: long enough for a stalled step, short enough for a restart to resume soon.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(60);
/// Deliveries of one assignment before JetStream gives up on it (a miner crashing on it
/// every time stops trying; the task then fails for this miner at its deadline).
pub const MAX_DELIVERIES: i64 = 10;

/// A taken, verified assignment and the message to settle it with. Reads as the
/// [`Assignment`] it holds.
pub struct AssignmentLease {
    assignment: Assignment,
    message: jetstream::Message,
}

impl AssignmentLease {
    pub(crate) fn new(assignment: Assignment, message: jetstream::Message) -> Self {
        Self { assignment, message }
    }

    /// How many times JetStream has delivered this assignment (1 the first time; more after
    /// a crash of this miner).
    pub fn deliveries(&self) -> u64 {
        self.message.info().map(|info| info.delivered.max(1) as u64).unwrap_or(1)
    }

    /// A span for the work on this assignment, in the trace its message carries (the task's,
    /// begun at intake): what the miner publishes inside it, its submission above all,
    /// carries that trace on to the evaluator, the ledger and the audit.
    pub fn span(&self) -> tracing::Span {
        let span = tracing::info_span!(
            "assignment",
            task_id = %self.assignment.task_id,
            assignment_id = %self.assignment.assignment_id
        );
        gradients_bus::event::continue_trace(&span, self.message.headers.as_ref());
        span
    }

    /// Tells JetStream the work is still going, resetting the ack wait.
    pub async fn keep_alive(&self) -> Result<(), MinerError> {
        self.message.ack_with(AckKind::Progress).await.map_err(MinerError::transport("renewing an assignment"))
    }

    /// The submission is published: the assignment is done and never delivered again.
    pub async fn finish(self) -> Result<(), MinerError> {
        self.message.double_ack().await.map_err(MinerError::transport("finishing an assignment"))
    }

    /// The assignment cannot be done by this miner (an untrainable task, a missed deadline):
    /// it is never delivered again.
    pub async fn give_up(self) -> Result<(), MinerError> {
        self.message.ack_with(AckKind::Term).await.map_err(MinerError::transport("giving up an assignment"))
    }

    /// The work stopped before it was done (the miner is shutting down): the assignment
    /// goes back to the miner's consumer at once, to be delivered again to its next start
    /// (or, without that, after the ack wait), never submitted half-trained.
    pub async fn hand_back(self) -> Result<(), MinerError> {
        self.message.ack_with(AckKind::Nak(None)).await.map_err(MinerError::transport("handing back an assignment"))
    }

    /// Keeps the lease alive every `every` until `done` resolves, then returns its output.
    pub async fn renewed_while<T>(&self, every: Duration, done: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(done);
        loop {
            tokio::select! {
                output = &mut done => return output,
                _ = tokio::time::sleep(every) => {
                    if let Err(e) = self.keep_alive().await {
                        tracing::warn!(assignment_id = %self.assignment.assignment_id, error = %e, "could not renew the assignment");
                    }
                }
            }
        }
    }
}

impl Deref for AssignmentLease {
    type Target = Assignment;

    fn deref(&self) -> &Assignment {
        &self.assignment
    }
}
