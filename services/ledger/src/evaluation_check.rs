//! The ledger trusts an evaluation only when the evaluator signed it and it came on its
//! task's subject. Every reward rests on an evaluation, so one published straight onto
//! the bus (a compromised service, a misconfigured permission, a test standing in for the
//! evaluator) must not reach the records: it is refused before [`EvaluationRecorder`] sees
//! it, counted (`gradients_rejections_total{code="FORGED_EVALUATION"}`), logged as an
//! error, and parked on `gradients.dlq.ledger-evaluations` with the reason in its headers.

use async_nats::jetstream;
use gradients_bus::subjects;
use gradients_bus::worker::{Handled, Handler, HandlerError};
use gradients_config::Settings;
use gradients_miner::identity::{domains, PublicKey};
use gradients_miner::Identity;
use gradients_proto::v1::EvaluationResult;
use gradients_telemetry::Metrics;
use prost::Message;

use crate::error::LedgerError;
use crate::record::EvaluationRecorder;

/// The rejection code counted for a refused evaluation.
pub const FORGED_EVALUATION: &str = "FORGED_EVALUATION";

/// The evaluator's public key: `evaluator.public_key`, else the key at
/// `evaluator.key_file` (a ledger on the evaluator's machine, as in the demo).
pub fn evaluator_key(settings: &Settings) -> Result<PublicKey, LedgerError> {
    let configured = &settings.evaluator.public_key;
    if !configured.is_empty() {
        let bad = |e: String| LedgerError::EvaluatorKey(format!("evaluator.public_key: {e}"));
        let bytes = hex::decode(configured).map_err(|e| bad(e.to_string()))?;
        return PublicKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()));
    }
    let path = &settings.evaluator.key_file;
    let key = Identity::load(path).map(|identity| identity.public_key());
    key.and_then(|key| PublicKey::from_bytes(&key)).map_err(|e| {
        LedgerError::EvaluatorKey(format!(
            "evaluator.public_key is empty and the evaluator's key {} cannot be read: {e}",
            path.display()
        ))
    })
}

/// [`EvaluationRecorder`] behind the evaluator's signature.
pub struct VerifiedEvaluations {
    /// Records what passes.
    pub recorder: EvaluationRecorder,
    /// The evaluator's public key.
    pub evaluator_key: PublicKey,
    /// Where refusals are counted.
    pub metrics: Metrics,
}

/// Why `payload`, received on `subject`, is not a genuine evaluation by the holder of
/// `evaluator_key`, if it is not.
fn refusal(evaluator_key: &PublicKey, subject: &str, payload: &[u8]) -> Option<String> {
    let Ok(result) = EvaluationResult::decode(payload) else {
        return None; // Not an evaluation at all: the recorder says so.
    };
    if evaluator_key.verify_message(domains::EVALUATION, &result, &result.signature, |r| r.signature.clear()).is_err() {
        return Some(format!(
            "evaluation {:?} (task {:?}, miner {:?}) is not signed by the evaluator: refused, nothing recorded or paid",
            result.evaluation_id, result.task_id, result.miner_id
        ));
    }
    if subject != subjects::evaluations(&result.task_id) {
        return Some(format!(
            "evaluation {:?} of task {:?} came on {subject}: refused",
            result.evaluation_id, result.task_id
        ));
    }
    None
}

impl Handler for VerifiedEvaluations {
    async fn handle(&self, message: &jetstream::Message) -> Result<Handled, HandlerError> {
        if let Some(reason) = crate::batch::Screen::refusal(self, message) {
            return Err(HandlerError::poison(reason));
        }
        self.recorder.handle(message).await
    }
}

impl crate::batch::Screen for VerifiedEvaluations {
    fn refusal(&self, message: &jetstream::Message) -> Option<String> {
        let reason = refusal(&self.evaluator_key, message.subject.as_str(), &message.payload)?;
        self.metrics.rejected(FORGED_EVALUATION);
        tracing::error!(alarm = FORGED_EVALUATION, subject = %message.subject, %reason, "refused an evaluation");
        Some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the evaluator's signature, on the evaluation's own task subject, passes.
    #[test]
    fn only_signed_evaluations_on_their_subject_pass() {
        let evaluator = Identity::generate();
        let key = PublicKey::from_bytes(&evaluator.public_key()).unwrap();
        let mut result = EvaluationResult { evaluation_id: "e".into(), task_id: "t".into(), ..Default::default() };
        let subject = subjects::evaluations("t");
        assert!(refusal(&key, &subject, &result.encode_to_vec()).is_some(), "unsigned");
        result.signature = Identity::generate().sign_message(domains::EVALUATION, &result, |r| r.signature.clear());
        assert!(refusal(&key, &subject, &result.encode_to_vec()).is_some(), "another key");
        result.signature = evaluator.sign_message(domains::EVALUATION, &result, |r| r.signature.clear());
        assert!(refusal(&key, &subject, &result.encode_to_vec()).is_none());
        assert!(refusal(&key, &subjects::evaluations("u"), &result.encode_to_vec()).is_some(), "another task");
        result.test_loss = Some(0.1);
        assert!(refusal(&key, &subject, &result.encode_to_vec()).is_some(), "changed after signing");
    }
}
