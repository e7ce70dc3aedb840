//! The ledger trusts an assignment only when dispatch signed it and it came on the subject
//! of the miner it names. An assignment decides who is paid for a task, so one published
//! straight onto the bus (a compromised service, a misconfigured permission) must not
//! reach the records: it is refused before [`AssignmentRecorder`] sees it, counted
//! (`gradients_rejections_total{code="FORGED_ASSIGNMENT"}`), logged as an error, and parked
//! on the dead-letter subject `gradients.dlq.ledger-assignments` with the reason in its
//! headers, where an operator can list every refused event.

use async_nats::jetstream;
use gradients_bus::subjects;
use gradients_bus::worker::{Handled, Handler, HandlerError};
use gradients_config::Settings;
use gradients_miner::identity::{domains, PublicKey};
use gradients_miner::Identity;
use gradients_proto::v1::Assignment;
use gradients_telemetry::Metrics;
use prost::Message;

use crate::error::LedgerError;
use crate::record::AssignmentRecorder;

/// The rejection code counted for a refused assignment.
pub const FORGED_ASSIGNMENT: &str = "FORGED_ASSIGNMENT";

/// Dispatch's public key: `ledger.dispatch_public_key`, else the key at `dispatch.key_file`
/// (read the way the trainer reads it).
pub fn dispatch_key(settings: &Settings) -> Result<PublicKey, LedgerError> {
    let configured = &settings.ledger.dispatch_public_key;
    if !configured.is_empty() {
        let bad = |e: String| LedgerError::DispatchKey(format!("ledger.dispatch_public_key: {e}"));
        let bytes = hex::decode(configured).map_err(|e| bad(e.to_string()))?;
        return PublicKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()));
    }
    let path = &settings.dispatch.key_file;
    let key = Identity::load(path).map(|identity| identity.public_key());
    key.and_then(|key| PublicKey::from_bytes(&key)).map_err(|e| {
        LedgerError::DispatchKey(format!(
            "ledger.dispatch_public_key is empty and dispatch's key {} cannot be read: {e}",
            path.display()
        ))
    })
}

/// [`AssignmentRecorder`] behind dispatch's signature.
pub struct VerifiedAssignments {
    /// Records what passes.
    pub recorder: AssignmentRecorder,
    /// Dispatch's public key.
    pub dispatch_key: PublicKey,
    /// Where refusals are counted.
    pub metrics: Metrics,
}

impl VerifiedAssignments {
    /// Why `payload`, received on `subject`, is not a genuine assignment, if it is not.
    fn refusal(&self, subject: &str, payload: &[u8]) -> Option<String> {
        let Ok(assignment) = Assignment::decode(payload) else {
            return None; // Not an assignment at all: the recorder says so.
        };
        if self
            .dispatch_key
            .verify_message(domains::ASSIGNMENT, &assignment, &assignment.signature, |a| a.signature.clear())
            .is_err()
        {
            return Some(format!(
                "assignment {:?} (task {:?}, miner {:?}) is not signed by dispatch: refused, nothing recorded or paid",
                assignment.assignment_id, assignment.task_id, assignment.miner_id
            ));
        }
        if subject != subjects::assignments(&assignment.miner_id) {
            return Some(format!(
                "assignment {:?} names miner {:?} but came on {subject}: refused",
                assignment.assignment_id, assignment.miner_id
            ));
        }
        None
    }
}

impl Handler for VerifiedAssignments {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        if let Some(reason) = crate::batch::Screen::refusal(self, message) {
            return Err(HandlerError::poison(reason));
        }
        self.recorder.handle(message).await
    }
}

impl crate::batch::Screen for VerifiedAssignments {
    fn refusal(&self, message: &jetstream::Message) -> Option<String> {
        let reason = VerifiedAssignments::refusal(self, message.subject.as_str(), &message.payload)?;
        self.metrics.rejected(FORGED_ASSIGNMENT);
        tracing::error!(alarm = FORGED_ASSIGNMENT, subject = %message.subject, %reason, "refused an assignment");
        Some(reason)
    }
}
