//! The fuzz targets: everything a hostile party can hand the system as bytes, each as a
//! function that must return (never panic, never hang) whatever the input.
//!
//! - [`wire_messages`]: every protobuf a service decodes from a request or event subject
//!   (the first byte picks the message), with the properties a decoder must keep: what
//!   decodes re-encodes to something that decodes to the same message; a submission is then
//!   put through the signature check every consumer runs.
//! - [`dataset_parse`]: the customer's data set parser (the first byte picks the task type),
//!   and what it accepts survives the canonical JSONL round trip within the limits.
//! - [`onnx_checks`]: the evaluator's checks of a miner's ONNX file, before anything runs.
//!
//! `fuzz/` runs them under libFuzzer on nightly (`cargo +nightly fuzz run onnx_checks`);
//! `tests/corpus.rs` runs them on stable over the committed corpus in `fuzz/corpus/<target>`
//! and a seeded random run of mutations, in `make test`.

use gradients_data::{parse, ColumnMap, Limits, TaskType};
use gradients_evaluator::checks::{self, ModelFacts};
use gradients_proto::v1 as proto;
use prost::Message;

/// A protobuf decoder under test: the message's name and a function that decodes `body`
/// as that message and checks what it decodes to.
type WireCase = (&'static str, fn(&[u8]));

/// Every message decoded from a subject a client or a miner can publish on, or from an event
/// stream a service consumes. One place: a new request type is fuzzed by adding it here.
pub const WIRE_MESSAGES: &[WireCase] = &[
    ("SubmitTaskRequest", round_trip::<proto::SubmitTaskRequest>),
    ("GetTaskRequest", round_trip::<proto::GetTaskRequest>),
    ("ListTasksRequest", round_trip::<proto::ListTasksRequest>),
    ("CancelTaskRequest", round_trip::<proto::CancelTaskRequest>),
    ("PrepareUploadRequest", round_trip::<proto::PrepareUploadRequest>),
    ("TaskResultRequest", round_trip::<proto::TaskResultRequest>),
    ("ChallengeRequest", round_trip::<proto::ChallengeRequest>),
    ("RegisterMinerRequest", round_trip::<proto::RegisterMinerRequest>),
    ("Heartbeat", round_trip::<proto::Heartbeat>),
    ("DeregisterMinerRequest", round_trip::<proto::DeregisterMinerRequest>),
    ("ListMinersRequest", round_trip::<proto::ListMinersRequest>),
    ("TrainDataRequest", round_trip::<proto::TrainDataRequest>),
    ("OfferReply", round_trip::<proto::OfferReply>),
    ("LedgerTaskRequest", round_trip::<proto::LedgerTaskRequest>),
    ("LedgerEntriesRequest", round_trip::<proto::LedgerEntriesRequest>),
    ("LedgerWeightsRequest", round_trip::<proto::LedgerWeightsRequest>),
    ("TaskCreated", round_trip::<proto::TaskCreated>),
    ("TaskStatusChanged", round_trip::<proto::TaskStatusChanged>),
    ("Assignment", round_trip::<proto::Assignment>),
    ("EvaluationResult", round_trip::<proto::EvaluationResult>),
    ("Submission", submission),
];

/// Decodes `data[1..]` as the message `data[0]` picks.
pub fn wire_messages(data: &[u8]) {
    if let Some((&selector, body)) = data.split_first() {
        let (_, decode) = WIRE_MESSAGES[usize::from(selector) % WIRE_MESSAGES.len()];
        decode(body);
    }
}

/// Decodes `body` as `M`; what decodes must survive re-encoding unchanged. Compared as
/// bytes, not with `==`: a NaN loss is a legal value and never equals itself (maps are
/// BTreeMaps, so equal messages encode to equal bytes).
fn round_trip<M: Message + Default>(body: &[u8]) {
    let _ = decoded::<M>(body);
}

fn decoded<M: Message + Default>(body: &[u8]) -> Option<M> {
    let message = M::decode(body).ok()?;
    let encoded = message.encode_to_vec();
    let again = M::decode(encoded.as_slice()).expect("a decoded message re-encodes to valid bytes");
    assert_eq!(again.encode_to_vec(), encoded, "a message changed across encode and decode");
    Some(message)
}

/// A submission as the evaluator and the audit receive it: decoded, then its signature
/// checked on the subject it claims (against a key that signed nothing: it must be refused).
fn submission(body: &[u8]) {
    if let Some(submission) = decoded::<proto::Submission>(body) {
        let subject = gradients_bus::subjects::submissions(&submission.task_id, &submission.miner_id);
        let stranger = [7u8; 32];
        assert!(
            gradients_miner::verify_submission(&subject, &submission, &stranger).is_err(),
            "a submission verified against a key that never signed it"
        );
    }
}

/// The task types a data set can be parsed for.
const TASK_TYPES: [TaskType; 4] = [TaskType::Instruct, TaskType::Chat, TaskType::Dpo, TaskType::Grpo];

/// Limits small enough that the fuzzer reaches them.
pub const DATASET_LIMITS: Limits = Limits { max_bytes: 1 << 20, max_row_bytes: 4096, max_rows: 512, min_rows: 3 };

/// Parses `data[1..]` as a data set of the task type `data[0]` picks, with the default
/// columns; what is accepted is within the limits and survives the canonical JSONL round trip.
pub fn dataset_parse(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let task_type = TASK_TYPES[usize::from(selector) % TASK_TYPES.len()];
    if let Ok(dataset) = parse(task_type, &ColumnMap::default(), body, &DATASET_LIMITS) {
        let rows = dataset.len() as u64;
        assert!((DATASET_LIMITS.min_rows..=DATASET_LIMITS.max_rows).contains(&rows), "{rows} rows accepted");
        assert_eq!(dataset.source_rows().len(), dataset.len());
        let canonical = gradients_data::to_jsonl(dataset.rows());
        let back = gradients_data::from_jsonl(&canonical).expect("canonical JSONL reads back");
        assert_eq!(back, dataset.rows(), "the canonical form changed the rows");
    }
}

/// Runs the evaluator's structural checks on `data` as a miner's ONNX file, with the
/// evaluator's default limits; a file that passes is compared with itself as the base.
pub fn onnx_checks(data: &[u8]) {
    let limits = checks::Limits::from_settings(&gradients_config::EvaluatorSettings::default());
    if let Ok(facts) = ModelFacts::read(data, &limits) {
        let _ = facts.declared_vocab();
        let _ = checks::check_against_base(&facts, &facts);
    }
}
