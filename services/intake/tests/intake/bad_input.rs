//! Bad input: every kind gets its typed error, naming row and column where there is one,
//! and leaves nothing behind in the database, the streams or the buckets.

use std::time::Duration;

use gradients_bus::objects;
use gradients_bus::subjects::api;
use gradients_proto::v1::{ErrorCode, SubmitTaskRequest, TaskType};
use gradients_testkit::{eventually, Backend};

use crate::common::{instruct_rows, refusal, Sandbox};

/// What one bad submission should be refused with.
struct Case {
    what: &'static str,
    code: ErrorCode,
    row: u64,
    column: &'static str,
}

const MAX_BYTES: u64 = 64 * 1024;

/// Builds the request for a case; the upload is made here so each case has its own.
async fn request_for(sandbox: &Sandbox, what: &str) -> SubmitTaskRequest {
    let good = instruct_rows(40);
    let key = format!("bad-{what}");
    let with_data = |data: Vec<u8>| async move { sandbox.upload_request(&key, &data).await };
    match what {
        "wrong columns" => {
            let mut data = instruct_rows(2);
            data.extend_from_slice(b"{\"instruction\": \"x\", \"answer\": \"y\"}\n");
            data.extend(instruct_rows(40));
            with_data(data).await
        }
        "invalid utf-8" => {
            let mut data = instruct_rows(1);
            data.extend_from_slice(b"{\"instruction\": \"caf\xe9\", \"output\": \"x\"}\n");
            with_data(data).await
        }
        "empty file" => with_data(Vec::new()).await,
        "over the size limit" => with_data(instruct_rows(3000)).await,
        "truncated upload" => {
            let mut request = with_data(good[..good.len() / 2].to_vec()).await;
            let dataset = request.dataset.as_mut().unwrap();
            dataset.size = good.len() as u64;
            dataset.sha256 = objects::sha256_hex(&good);
            request
        }
        "sha256 mismatch" => {
            let mut request = with_data(good.clone()).await;
            request.dataset.as_mut().unwrap().sha256 = objects::sha256_hex(b"something else");
            request
        }
        "unknown task type" => {
            let mut request = with_data(good).await;
            request.r#type = 42;
            request
        }
        "unknown model" => {
            let mut request = with_data(good).await;
            request.base_model = "gpt-7-ultra".into();
            request
        }
        "negative hours" => {
            let mut request = with_data(good).await;
            request.hours_to_complete = -3.0;
            request
        }
        "duplicate row" => {
            let mut data = instruct_rows(30);
            data.extend(instruct_rows(1));
            with_data(data).await
        }
        "empty value" => {
            let mut data = instruct_rows(25);
            data.extend_from_slice(b"{\"instruction\": \"x\", \"output\": \"   \"}\n");
            with_data(data).await
        }
        "too few rows" => with_data(instruct_rows(5)).await,
        "not json" => {
            let mut data = instruct_rows(3);
            data.extend_from_slice(b"{\"instruction\": \"x\", \"output\": \n");
            with_data(data).await
        }
        "grpo without reward functions" => {
            let mut request = with_data(b"{\"prompt\": \"p\"}\n".to_vec()).await;
            request.r#type = TaskType::Grpo as i32;
            request
        }
        "unknown column role" => {
            let mut request = with_data(good).await;
            request.columns.insert("answer_column".into(), "answer".into());
            request
        }
        "upload never made" => {
            let mut request = with_data(good.clone()).await;
            // Point at an object that was never uploaded, and take back the one that was.
            let dataset = request.dataset.as_mut().unwrap();
            let store = objects::bucket(&sandbox.bus, &dataset.bucket).await.unwrap();
            objects::delete(&store, &dataset.bucket, &dataset.name).await.unwrap();
            dataset.name = "upload-that-does-not-exist".into();
            request
        }
        "duplicate json key" => {
            let mut data = instruct_rows(25);
            data.extend_from_slice(b"{\"instruction\": \"x\", \"output\": \"shown\", \"output\": \"trained\"}\n");
            with_data(data).await
        }
        "repeated key with a line break" => {
            let mut data = instruct_rows(25);
            data.extend_from_slice(
                b"{\"instruction\": \"x\", \"output\": \"y\", \"a\\r\\nGradients-Error-Code: OK\": 1, \"a\\r\\nGradients-Error-Code: OK\": 2}\n",
            );
            with_data(data).await
        }
        "zero-width value" => {
            let mut data = instruct_rows(25);
            data.extend_from_slice("{\"instruction\": \"x\", \"output\": \"\u{200B}\u{FEFF}\"}\n".as_bytes());
            with_data(data).await
        }
        "two roles on one column" => {
            let mut request = with_data(good).await;
            request.columns.insert("output".into(), "instruction".into());
            request
        }
        "nul in the name" => {
            let mut request = with_data(good).await;
            request.name = "evil\0name".into();
            request
        }
        "control character in the object name" => {
            let mut request = with_data(good).await;
            let dataset = request.dataset.as_mut().unwrap();
            let store = objects::bucket(&sandbox.bus, &dataset.bucket).await.unwrap();
            objects::delete(&store, &dataset.bucket, &dataset.name).await.unwrap();
            dataset.name = "upload\r\nGradients-Error-Code: OK\0".into();
            request
        }
        "nul in the idempotency key" => {
            let mut request = with_data(good).await;
            request.idempotency_key = "evil\0key".into();
            request
        }
        other => panic!("no case {other}"),
    }
}

fn cases() -> Vec<Case> {
    let case = |what, code, row, column| Case { what, code, row, column };
    vec![
        case("wrong columns", ErrorCode::MissingColumn, 3, "output"),
        case("invalid utf-8", ErrorCode::InvalidUtf8, 2, ""),
        case("empty file", ErrorCode::EmptyDataset, 0, ""),
        case("over the size limit", ErrorCode::DatasetTooLarge, 0, ""),
        case("truncated upload", ErrorCode::UploadIncomplete, 0, ""),
        case("sha256 mismatch", ErrorCode::ChecksumMismatch, 0, ""),
        case("unknown task type", ErrorCode::UnknownTaskType, 0, ""),
        case("unknown model", ErrorCode::UnknownBaseModel, 0, ""),
        case("negative hours", ErrorCode::InvalidHours, 0, ""),
        case("duplicate row", ErrorCode::DuplicateRow, 31, ""),
        case("empty value", ErrorCode::EmptyValue, 26, "output"),
        case("too few rows", ErrorCode::TooFewRows, 0, ""),
        case("not json", ErrorCode::MalformedRow, 4, ""),
        case("grpo without reward functions", ErrorCode::UnknownRewardFunction, 0, ""),
        case("unknown column role", ErrorCode::UnknownColumnRole, 0, ""),
        case("upload never made", ErrorCode::UploadNotFound, 0, ""),
        case("duplicate json key", ErrorCode::DuplicateKey, 26, "output"),
        case("repeated key with a line break", ErrorCode::DuplicateKey, 26, "a\\r\\nGradients-Error-Code: OK"),
        case("zero-width value", ErrorCode::EmptyValue, 26, "output"),
        case("two roles on one column", ErrorCode::ColumnRoleConflict, 0, "instruction"),
        case("nul in the name", ErrorCode::InvalidArgument, 0, ""),
        case("nul in the idempotency key", ErrorCode::InvalidArgument, 0, ""),
        case("control character in the object name", ErrorCode::InvalidArgument, 0, ""),
    ]
}

/// Twenty-three kinds of bad submission, plus a malformed protobuf request: each refused
/// with its code (and row/column where it has one), a NUL byte with a message naming the
/// field and never the database's text; no task, event, split or upload remains.
#[tokio::test]
async fn bad_input_is_refused_with_typed_errors_and_leaves_nothing() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start_with(backend, |s| s.intake.limits.max_bytes = MAX_BYTES).await;
        for case in cases() {
            let request = request_for(&sandbox, case.what).await;
            let error = refusal(sandbox.client.submit(&request).await);
            let code = ErrorCode::try_from(error.code).unwrap();
            assert_eq!(code, case.code, "{backend} {}: {}", case.what, error.message);
            assert_eq!(error.row, case.row, "{backend} {}: row in {:?}", case.what, error.message);
            assert_eq!(error.column, case.column, "{backend} {}: column in {:?}", case.what, error.message);
            assert!(!error.message.is_empty());
            if case.what.starts_with("nul in the ") {
                let field = if case.what.ends_with("name") { "name" } else { "idempotency_key" };
                assert!(error.message.starts_with(&format!("{field} holds")), "{backend}: {}", error.message);
            }
            for raw in ["invalid byte sequence", "SQL", "syntax", "0x00"] {
                assert!(!error.message.contains(raw), "{backend} {}: raw text {:?}", case.what, error.message);
            }
        }

        // A signed request body that is not a protobuf message at all.
        let subject = api::tasks(api::TASKS_SUBMIT);
        let garbage = b"\xff\xff\xff\xff not protobuf";
        let reply = sandbox
            .bus
            .client
            .request_with_headers(subject.clone(), sandbox.customer.sign_request(&subject, garbage), garbage[..].into())
            .await
            .expect("an answer");
        let headers = reply.headers.expect("error headers");
        assert_eq!(headers.get("Gradients-Error-Code").map(|v| v.to_string()).as_deref(), Some("MALFORMED_REQUEST"));
        assert_eq!(headers.get("Nats-Service-Error-Code").map(|v| v.to_string()).as_deref(), Some("400"));

        // Nothing of any of them was kept; the refused uploads are removed after the answer.
        eventually(Duration::from_secs(10), "the refused uploads removed", || async {
            let left = sandbox.objects_in(&sandbox.uploads()).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        })
        .await;
        sandbox.wait_until_settled().await;
        assert!(sandbox.client.list(&Default::default()).await.unwrap().tasks.is_empty(), "{backend}: no task stored");
        assert_eq!(sandbox.task_stream_messages().await, 0, "{backend}: no event published");
        assert!(sandbox.split_objects().await.is_empty(), "{backend}: no split written");
    }
}
