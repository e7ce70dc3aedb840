//! Is a captured payload the message its stream and subject promise? A payload that is not
//! becomes an alarm record (kept byte for byte), never a dropped message.

use gradients_bus::subjects::{streams, LEDGER_ENTRIES, LEDGER_WEIGHTS, TASK_CREATED};
use gradients_proto::v1::{
    Assignment, EvaluationResult, LedgerEntry, Submission, TaskCreated, TaskStatusChanged, WeightsPublished,
};
use prost::Message;

/// Checks `payload` against the type `stream` carries on `subject`; the error says why not.
pub fn check(stream: &str, subject: &str, payload: &[u8]) -> Result<(), String> {
    match stream {
        // Dead letters carry whatever failed elsewhere; the reason is in their headers.
        streams::DEAD_LETTERS => Ok(()),
        streams::TASKS if subject == TASK_CREATED => typed::<TaskCreated>(payload),
        streams::TASKS if subject.starts_with("gradients.tasks.status.") => typed::<TaskStatusChanged>(payload),
        streams::ASSIGNMENTS => typed::<Assignment>(payload),
        streams::SUBMISSIONS => typed::<Submission>(payload),
        streams::EVALUATIONS => typed::<EvaluationResult>(payload),
        streams::LEDGER if subject == LEDGER_ENTRIES => typed::<LedgerEntry>(payload),
        streams::LEDGER if subject == LEDGER_WEIGHTS => typed::<WeightsPublished>(payload),
        _ => Err(format!("no message type is published on {subject} in {stream}")),
    }
}

fn typed<M: Message + Default>(payload: &[u8]) -> Result<(), String> {
    let name = std::any::type_name::<M>().rsplit("::").next().unwrap_or("message");
    if payload.is_empty() {
        return Err(format!("empty payload where a {name} is expected"));
    }
    M::decode(payload).map(|_| ()).map_err(|e| format!("not a {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real messages pass; garbage, empty payloads and unknown subjects are named.
    #[test]
    fn checks_by_stream_and_subject() {
        let entry = LedgerEntry { entry_id: "e".into(), ..Default::default() }.encode_to_vec();
        assert!(check(streams::LEDGER, LEDGER_ENTRIES, &entry).is_ok());
        let garbage = check(streams::LEDGER, LEDGER_ENTRIES, &[0xff, 0xff, 0xff]).unwrap_err();
        assert!(garbage.contains("LedgerEntry"), "{garbage}");
        assert!(check(streams::EVALUATIONS, "gradients.evaluations.t", &[]).unwrap_err().contains("empty"));
        assert!(check(streams::LEDGER, "gradients.ledger.other", &entry).is_err());
        assert!(check(streams::DEAD_LETTERS, "gradients.dlq.x", &[0xff]).is_ok());
    }
}
