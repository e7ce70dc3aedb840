//! Submitting: stored, split, announced once; idempotent retries.

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::objects;
use gradients_bus::subjects::{self, buckets, streams};
use gradients_proto::v1::{ErrorCode, TaskCreated, TaskStatus, TaskStatusChanged};
use gradients_testkit::Backend;
use prost::Message;

use crate::common::{instruct_rows, refusal, Sandbox};

/// An accepted task is stored, split 85/5/10 into the right buckets, announced exactly
/// once with its id as Nats-Msg-Id, and its upload removed; on both backends.
#[tokio::test]
async fn submit_stores_splits_and_announces_once() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend).await;
        let request = sandbox.upload_request("first", &instruct_rows(100)).await;
        let response = sandbox.client.submit(&request).await.expect("accepted");
        assert!(response.created);
        let task = response.task.expect("task");
        assert_eq!(task.status, TaskStatus::Accepted as i32, "{backend}");
        assert_eq!(task.id, sandbox.task_id("first"));
        assert_eq!(task.customer_id, sandbox.customer.id());
        let splits = task.splits.clone().expect("splits");
        let (train, synth, test) = (splits.train.unwrap(), splits.synth.unwrap(), splits.test.unwrap());
        assert_eq!((train.rows, synth.rows, test.rows), (85, 5, 10), "{backend}");
        assert_eq!(task.dataset_rows, 100);

        // The splits are where the contract says, with the bytes the task names.
        let train_ref = train.object.unwrap();
        let test_ref = test.object.unwrap();
        assert_eq!(train_ref.bucket, buckets::TRAIN);
        assert_eq!(test_ref.bucket, buckets::VALIDATOR);
        for reference in [&train_ref, &test_ref] {
            let store = objects::bucket(&sandbox.bus, &reference.bucket).await.unwrap();
            let bytes = objects::read_verified(&store, reference, u64::MAX).await.expect("split readable and intact");
            let rows = gradients_data::from_jsonl(&bytes).expect("canonical rows");
            assert!(rows.len() == 85 || rows.len() == 10);
        }
        assert!(sandbox.objects_in(&sandbox.uploads()).await.is_empty(), "the upload is removed once split");

        // Announced once, with the task id as the message id.
        let created = sandbox.wait_for_messages(streams::TASKS, subjects::TASK_CREATED, 1).await;
        assert_eq!(created.len(), 1);
        let headers = created[0].headers.clone().expect("headers");
        assert_eq!(headers.get("Nats-Msg-Id").map(|v| v.to_string()), Some(task.id.clone()));
        assert!(headers.get("traceparent").is_some(), "the trace travels with the event");
        let event = TaskCreated::decode(created[0].payload.as_ref()).unwrap();
        assert_eq!(event.task.unwrap().id, task.id);
        let status = sandbox.wait_for_messages(streams::TASKS, &subjects::task_status(&task.id), 1).await;
        let status = TaskStatusChanged::decode(status[0].payload.as_ref()).unwrap();
        assert_eq!((status.from, status.to), (TaskStatus::Pending as i32, TaskStatus::Accepted as i32));

        // Reads back the same.
        let got = sandbox.client.get(&task.id).await.unwrap().task.unwrap();
        assert_eq!(got, task);
    }
}

/// The split depends only on the task id and the rows: the same key and data on a fresh
/// system, with the rows in another order, give the same parts; another key, other parts.
#[tokio::test]
async fn split_is_stable_for_a_task_id() {
    let data = instruct_rows(200);
    let mut reversed: Vec<&str> = std::str::from_utf8(&data).unwrap().lines().collect();
    reversed.reverse();
    let reversed = format!("{}\n", reversed.join("\n")).into_bytes();

    let split_hashes = |task: gradients_proto::v1::Task| {
        let s = task.splits.unwrap();
        [
            s.train.unwrap().object.unwrap().sha256,
            s.synth.unwrap().object.unwrap().sha256,
            s.test.unwrap().object.unwrap().sha256,
        ]
    };
    let first = Sandbox::start(Backend::Sqlite).await;
    let a = first.client.submit(&first.upload_request("stable", &data).await).await.unwrap().task.unwrap();
    let b = first.client.submit(&first.upload_request("other-key", &data).await).await.unwrap().task.unwrap();
    let second = Sandbox::start(Backend::Sqlite).await;
    let same_customer = second.client_for(&first.customer);
    let request = second.upload_request_as(&same_customer, "stable", &reversed).await;
    let again = same_customer.submit(&request).await.unwrap().task.unwrap();

    assert_eq!(a.id, again.id);
    assert_eq!(split_hashes(a.clone()), split_hashes(again));
    assert_ne!(split_hashes(a)[2], split_hashes(b)[2], "another task id draws another test set");
}

/// A retried submit (same key, even after a fresh upload) returns the same task and no
/// second event; the same key for a different request is a conflict; concurrent twins
/// make one task.
#[tokio::test]
async fn retries_with_the_same_key_make_one_task() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend).await;
        let data = instruct_rows(50);
        let first = sandbox.client.submit(&sandbox.upload_request("retry-me", &data).await).await.unwrap();
        let retry = sandbox.client.submit(&sandbox.upload_request("retry-me", &data).await).await.unwrap();
        assert!(first.created && !retry.created, "{backend}");
        assert_eq!(first.task, retry.task);

        let mut different = sandbox.upload_request("retry-me", &data).await;
        different.hours_to_complete = 5.0;
        let conflict = refusal(sandbox.client.submit(&different).await);
        assert_eq!(conflict.code, ErrorCode::IdempotencyConflict as i32);

        // Two at once with one key: both answered with the same single task.
        let (one, two) = tokio::join!(
            async { sandbox.client.submit(&sandbox.upload_request("twins", &data).await).await.unwrap() },
            async { sandbox.client.submit(&sandbox.upload_request("twins", &data).await).await.unwrap() },
        );
        assert_eq!(one.task, two.task);
        assert_eq!([one.created, two.created].iter().filter(|c| **c).count(), 1, "{backend}: exactly one created");

        sandbox.wait_for_messages(streams::TASKS, subjects::TASK_CREATED, 2).await;
        sandbox.wait_until_settled().await;
        let created = sandbox.messages_on(streams::TASKS, subjects::TASK_CREATED).await;
        assert_eq!(created.len(), 2, "{backend}: one event per task");
        let listed = sandbox.client.list(&Default::default()).await.unwrap();
        assert_eq!(listed.tasks.len(), 2);
    }
}

/// Re-publishing a stored event (what a relay does after a crash) is dropped by
/// JetStream's de-duplication: the stream keeps one copy.
#[tokio::test]
async fn a_republished_event_is_stored_once() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let task =
        sandbox.client.submit(&sandbox.upload_request("dup", &instruct_rows(30)).await).await.unwrap().task.unwrap();
    let created = sandbox.wait_for_messages(streams::TASKS, subjects::TASK_CREATED, 1).await;
    let again = publish_event(
        &sandbox.bus.jetstream,
        OutgoingEvent {
            subject: subjects::TASK_CREATED.into(),
            id: task.id.clone(),
            payload: created[0].payload.clone(),
            traceparent: None,
        },
    )
    .await
    .unwrap();
    assert!(again.duplicate);
    assert_eq!(sandbox.messages_on(streams::TASKS, subjects::TASK_CREATED).await.len(), 1);
}
