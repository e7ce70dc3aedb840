//! The checks on a submission before its file is looked at: it came on its own miner's
//! subject, is signed by the registered key of a miner assigned to its task, arrived
//! (by JetStream's clock, not the miner's) before the deadline, names its miner's own
//! content-addressed objects, is not a byte copy of an earlier submission of another
//! miner, and its artifact has the declared size and sha256.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt;
use gradients_bus::subjects::{self, streams};
use gradients_bus::worker::HandlerError;
use gradients_bus::{objects, Bus};
use gradients_miner::submission::{verify_submission, SubmissionError};
use gradients_proto::v1::{ErrorCode, Submission};
use prost::Message;

use crate::error::Refusal;
use crate::projection::{registered_key, CohortRecord, TaskRecord};

/// A submission that passed every check before its file is parsed.
pub struct Admitted {
    pub artifact: Bytes,
}

/// When a JetStream message was stored, in Unix milliseconds: the arrival time every
/// replica and every redelivery agrees on.
pub fn arrival_ms(message: &jetstream::Message) -> Result<i64, HandlerError> {
    let info = message.info().map_err(|e| HandlerError::transient(format!("no message info: {e}")))?;
    Ok((info.published.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The public key of an assigned miner: the one projected with its assignment, else the
/// registry's; `Ok(Err(..))` when the miner is not assigned or not known.
async fn assigned_key(
    bus: &Bus,
    cohort: &CohortRecord,
    submission: &Submission,
) -> Result<Result<Vec<u8>, Refusal>, HandlerError> {
    // The handler waited for the whole cohort (`service::not_yet`) before admitting.
    let Some(assigned) = cohort.miners.get(&submission.miner_id) else {
        return Ok(Err(Refusal::invalid(
            ErrorCode::NotAssigned,
            format!("miner {} is not assigned to task {}", submission.miner_id, submission.task_id),
        )));
    };
    if let Ok(key) = hex::decode(&assigned.public_key) {
        if key.len() == 32 {
            return Ok(Ok(key));
        }
    }
    Ok(registered_key(bus, &submission.miner_id).await?.ok_or_else(|| {
        Refusal::invalid(ErrorCode::UnknownMiner, format!("miner {} has no registered key", submission.miner_id))
    }))
}

/// Runs the checks; `Ok(Err(refusal))` is a result to publish, `Err` a retry.
pub async fn admit(
    bus: &Bus,
    message: &jetstream::Message,
    submission: &Submission,
    task: &TaskRecord,
    cohort: &CohortRecord,
    arrived_ms: i64,
    max_artifact_bytes: u64,
) -> Result<Result<Admitted, Refusal>, HandlerError> {
    let key = match assigned_key(bus, cohort, submission).await? {
        Ok(key) => key,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Err(e) = verify_submission(message.subject.as_str(), submission, &key) {
        let code = match e {
            SubmissionError::WrongSubject { .. } => ErrorCode::SubjectMismatch,
            SubmissionError::WrongKey(_) | SubmissionError::BadSignature(_) => ErrorCode::InvalidSignature,
            SubmissionError::WrongObject { .. } => ErrorCode::ArtifactUnreadable,
        };
        return Ok(Err(Refusal::invalid(code, e.to_string())));
    }
    let deadline = cohort.miners.get(&submission.miner_id).map(|m| m.deadline_ms).filter(|d| *d > 0);
    let deadline = deadline.unwrap_or(task.deadline_ms);
    if deadline > 0 && arrived_ms > deadline {
        return Ok(Err(Refusal::late(format!("arrived {} ms after the deadline", arrived_ms - deadline))));
    }
    let artifact = submission.artifact.clone().unwrap_or_default();
    if let Some(first) = earlier_copy(bus, message, submission, cohort).await? {
        return Ok(Err(Refusal::duplicate(format!(
            "the artifact (sha256 {}) is byte for byte the one miner {first} submitted earlier",
            artifact.sha256
        ))));
    }
    if artifact.size > max_artifact_bytes {
        return Ok(Err(Refusal::invalid(
            ErrorCode::OnnxLimitExceeded,
            format!("the artifact is {} bytes, more than the limit of {max_artifact_bytes}", artifact.size),
        )));
    }
    let store = objects::bucket(bus, &artifact.bucket).await.map_err(HandlerError::transient)?;
    match objects::read_verified(&store, &artifact, max_artifact_bytes).await {
        Ok(bytes) => Ok(Ok(Admitted { artifact: bytes })),
        Err(objects::ObjectError::Bus(e)) => Err(HandlerError::transient(e)),
        Err(e @ objects::ObjectError::ChecksumMismatch { .. }) => {
            Ok(Err(Refusal::invalid(ErrorCode::ChecksumMismatch, e.to_string())))
        }
        Err(e) => Ok(Err(Refusal::invalid(ErrorCode::ArtifactUnreadable, e.to_string()))),
    }
}

/// The miner of an earlier submission to the same task, by another assigned miner, that
/// declares the same artifact sha256 (the earliest upload wins, as in G.O.D.). Decided by
/// the stream's order, so every replica and redelivery reaches the same answer.
async fn earlier_copy(
    bus: &Bus,
    message: &jetstream::Message,
    submission: &Submission,
    cohort: &CohortRecord,
) -> Result<Option<String>, HandlerError> {
    let own_sequence = message.info().map_err(HandlerError::transient)?.stream_sequence;
    let sha256 = submission.artifact.as_ref().map(|a| a.sha256.to_ascii_lowercase()).unwrap_or_default();
    let stream = bus.jetstream.get_stream(streams::SUBMISSIONS).await.map_err(HandlerError::transient)?;
    let reader = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: subjects::submissions_of_task(&submission.task_id),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(HandlerError::transient)?;
    let mut found = None;
    'scan: loop {
        let mut batch = reader
            .fetch()
            .max_messages(256)
            .expires(Duration::from_millis(200))
            .messages()
            .await
            .map_err(HandlerError::transient)?;
        let mut any = false;
        while let Some(earlier) = batch.next().await {
            let earlier = earlier.map_err(HandlerError::transient)?;
            any = true;
            let sequence = earlier.info().map(|i| i.stream_sequence).unwrap_or(u64::MAX);
            if sequence >= own_sequence {
                break 'scan;
            }
            let Ok(other) = Submission::decode(earlier.payload.as_ref()) else { continue };
            let same_bytes = other.artifact.as_ref().is_some_and(|a| a.sha256.eq_ignore_ascii_case(&sha256));
            if other.miner_id == submission.miner_id || !same_bytes {
                continue;
            }
            // Only a genuine earlier submission counts: assigned, in time, signed, its own
            // objects. A refused one does not take the bytes from a later honest miner.
            let Some(assigned) = cohort.miners.get(&other.miner_id) else { continue };
            let in_time = assigned.deadline_ms <= 0 || arrival_ms(&earlier).is_ok_and(|t| t <= assigned.deadline_ms);
            let key = hex::decode(&assigned.public_key).ok();
            if in_time && key.is_some_and(|key| verify_submission(earlier.subject.as_str(), &other, &key).is_ok()) {
                found = Some(other.miner_id);
                break 'scan;
            }
        }
        if !any {
            break;
        }
    }
    let _ = stream.delete_consumer(&reader.cached_info().name).await;
    Ok(found)
}
