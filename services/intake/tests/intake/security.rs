//! Attacks by customers, each reproduced on a real server: links to data the attacker
//! cannot read, metadata naming chunks never written, another customer's tasks and
//! uploads, unsigned, stale, replayed and re-targeted requests.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use gradients_bus::api::CallError;
use gradients_bus::objects;
use gradients_bus::subjects::{api, buckets};
use gradients_intake::customer::CustomerKey;
use gradients_proto::v1::{ErrorCode, GetTaskRequest, ListTasksRequest, ObjectRef, TaskStatus, Timestamp};
use gradients_testkit::{eventually, Backend};
use prost::Message;

use crate::common::{instruct_rows, refusal, Sandbox};

/// Rewrites the metadata of `object` in `bucket` as an attacker holding write access to
/// that bucket can: the JSON `edit` leaves is published as the object's latest metadata.
async fn rewrite_meta(sandbox: &Sandbox, bucket: &str, object: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let stream = format!("OBJ_{bucket}");
    let metas = sandbox.messages_on(&stream, &format!("$O.{bucket}.M.>")).await;
    let meta = metas
        .iter()
        .rev()
        .find(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["name"] == object)
        .expect("the object's metadata");
    let mut json: serde_json::Value = serde_json::from_slice(&meta.payload).unwrap();
    edit(&mut json);
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    sandbox
        .bus
        .jetstream
        .publish_with_headers(meta.subject.to_string(), headers, serde_json::to_vec(&json).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Finding 1: an upload that is a link to another task's hidden test split (its size
/// and sha256 declared as the split's) is refused as UPLOAD_NOT_PLAIN; no task is made
/// and no split is written, so no hidden row reaches a train split. Both stores.
#[tokio::test]
async fn a_link_to_a_hidden_test_split_is_refused() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend).await;
        let victim = sandbox.client.submit(&sandbox.upload_request("victim", &instruct_rows(400)).await).await.unwrap();
        let test = victim.task.unwrap().splits.unwrap().test.unwrap().object.unwrap();
        assert!(test.size > 0);

        let attacker = sandbox.client_for(&CustomerKey::generate());
        let bucket = attacker.prepare_upload().await.unwrap().bucket;
        let store = objects::bucket(&sandbox.bus, &bucket).await.unwrap();
        let validator = objects::bucket(&sandbox.bus, buckets::VALIDATOR).await.unwrap();
        let target = validator.info(&test.name).await.unwrap();
        store.add_link("innocent.jsonl", &target).await.unwrap();
        // A link has no size of its own; the attacker declares the target's.
        let size = test.size;
        rewrite_meta(&sandbox, &bucket, "innocent.jsonl", |meta| meta["size"] = size.into()).await;
        // A link to an object of the attacker's own bucket is no more a plain object.
        let own = attacker.upload_dataset(&instruct_rows(40)).await.unwrap();
        let own_info = store.info(&own.name).await.unwrap();
        store.add_link("alias.jsonl", &own_info).await.unwrap();
        rewrite_meta(&sandbox, &bucket, "alias.jsonl", |meta| meta["size"] = own.size.into()).await;

        let splits_before = sandbox.split_objects().await.len();
        for (key, dataset) in [
            ("steal", ObjectRef { bucket: bucket.clone(), name: "innocent.jsonl".into(), ..test.clone() }),
            ("alias", ObjectRef { name: "alias.jsonl".into(), ..own.clone() }),
        ] {
            let mut request = sandbox.upload_request_as(&attacker, key, &instruct_rows(30)).await;
            request.dataset = Some(dataset);
            let error = refusal(attacker.submit(&request).await);
            assert_eq!(error.code, ErrorCode::UploadNotPlain as i32, "{backend} {key}: {}", error.message);
            assert!(error.message.contains("link"), "{}", error.message);
        }
        assert_eq!(sandbox.split_objects().await.len(), splits_before, "{backend}: no split written");
        let all = sandbox.client_for(&sandbox.operator).list(&ListTasksRequest::default()).await.unwrap();
        assert_eq!(all.tasks.len(), 1, "{backend}: only the victim's task exists");
    }
}

/// Finding 8: metadata naming a chunk that was never written is refused as UPLOAD_STALLED
/// within the stall limit; the attacker cannot take more than its share of submit slots
/// (RATE_LIMITED at once), and meanwhile another customer submits and reads its task.
#[tokio::test]
async fn chunks_never_written_are_refused_in_bounded_time_and_others_are_answered() {
    let sandbox = Sandbox::start_with(Backend::Postgres, |s| {
        s.intake.upload_stall_ms = 1_500;
        s.intake.max_submits_per_customer = 2;
    })
    .await;
    let attacker = sandbox.client_for(&CustomerKey::generate());
    let mut hanging = Vec::new();
    for i in 0..3 {
        let mut request = sandbox.upload_request_as(&attacker, &format!("hang-{i}"), &instruct_rows(30)).await;
        let dataset = request.dataset.clone().unwrap();
        rewrite_meta(&sandbox, &dataset.bucket, &dataset.name, |meta| meta["nuid"] = "NEVERWRITTEN1234567890".into())
            .await;
        request.name = format!("hang {i}");
        hanging.push(request);
    }
    let started = Instant::now();
    let attacks = futures::future::join_all(hanging.iter().map(|r| attacker.submit(r)));
    let honest = async {
        // Let the attacker's submits take their slots first: an ordering of the scenario
        // (the honest customer comes second), not a wait before an assertion.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let request = sandbox.upload_request("honest", &instruct_rows(40)).await;
        let accepted = sandbox.client.submit(&request).await.expect("another customer is served");
        let answered_at = started.elapsed();
        let task = sandbox.client.get(&accepted.task.unwrap().id).await.expect("and can read its task");
        (answered_at, task)
    };
    let (attacks, (honest_at, honest_task)) = tokio::join!(attacks, honest);
    let elapsed = started.elapsed();

    let mut codes: Vec<i32> = attacks.into_iter().map(|r| refusal(r).code).collect();
    codes.sort();
    let mut expected =
        vec![ErrorCode::UploadStalled as i32, ErrorCode::UploadStalled as i32, ErrorCode::RateLimited as i32];
    expected.sort();
    assert_eq!(codes, expected, "two stall out, the third finds no slot");
    assert!(elapsed < Duration::from_secs(8), "bounded: {elapsed:?}");
    assert!(honest_at < Duration::from_millis(1_400), "the honest customer did not wait for the stall: {honest_at:?}");
    assert_eq!(honest_task.task.unwrap().status, TaskStatus::Accepted as i32);
}

/// Finding 2: one customer cannot see, cancel or read the uploads of another through
/// intake; an operator sees and cancels all; keys are per customer; a submit naming
/// another customer's upload is refused and leaves that upload where it was.
#[tokio::test]
async fn customers_see_only_their_own_tasks_and_operators_see_all() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend).await;
        let (alice, bob) = (&sandbox.client, sandbox.client_for(&CustomerKey::generate()));
        let operator = sandbox.client_for(&sandbox.operator);
        let task = alice.submit(&sandbox.upload_request("same-key", &instruct_rows(40)).await).await.unwrap();
        let task = task.task.unwrap();
        assert_eq!(task.customer_id, alice.customer_id());

        // Bob: the task does not exist for him, whatever he tries.
        assert_eq!(refusal(bob.get(&task.id).await).code, ErrorCode::TaskNotFound as i32);
        assert_eq!(refusal(bob.cancel(&task.id, "stranger").await).code, ErrorCode::TaskNotFound as i32);
        assert!(bob.list(&ListTasksRequest::default()).await.unwrap().tasks.is_empty(), "{backend}");
        // The same key is Bob's own: another task, not Alice's, and no conflict.
        let bobs = bob.submit(&sandbox.upload_request_as(&bob, "same-key", &instruct_rows(41)).await).await.unwrap();
        let bobs = bobs.task.unwrap();
        assert!(bobs.id != task.id && bobs.customer_id == bob.customer_id());
        assert_eq!(alice.list(&ListTasksRequest::default()).await.unwrap().tasks.len(), 1, "{backend}");

        // Bob names an upload of Alice's: refused, and her upload is still there.
        let alices_upload = alice.upload_dataset(&instruct_rows(42)).await.unwrap();
        let mut request = sandbox.upload_request_as(&bob, "borrow", &instruct_rows(43)).await;
        request.dataset = Some(alices_upload.clone());
        assert_eq!(refusal(bob.submit(&request).await).code, ErrorCode::AccessDenied as i32);
        assert!(sandbox.objects_in(&alices_upload.bucket).await.contains(&alices_upload.name), "{backend}");

        // The operator sees both and cancels Alice's.
        assert_eq!(operator.list(&ListTasksRequest::default()).await.unwrap().tasks.len(), 2, "{backend}");
        let cancelled = operator.cancel(&task.id, "").await.unwrap().task.unwrap();
        assert_eq!(cancelled.status, TaskStatus::Cancelled as i32);
        assert_eq!(cancelled.status_reason, "cancelled by an operator");
        assert_eq!(alice.get(&task.id).await.unwrap().task.unwrap().status, TaskStatus::Cancelled as i32);
    }
}

/// With `intake.customer_keys` set, a key not listed is refused; operators always pass.
#[tokio::test]
async fn only_listed_customers_when_a_list_is_configured() {
    let listed = CustomerKey::generate();
    let key = hex::encode(listed.public_key());
    let sandbox = Sandbox::start_with(Backend::Sqlite, move |s| s.intake.customer_keys = vec![key]).await;
    let refused = refusal(sandbox.client.list(&ListTasksRequest::default()).await);
    assert_eq!(refused.code, ErrorCode::AccessDenied as i32);
    sandbox.client_for(&listed).list(&ListTasksRequest::default()).await.expect("a listed customer");
    sandbox.client_for(&sandbox.operator).list(&ListTasksRequest::default()).await.expect("an operator");
}

/// Requests without a valid signature, dated outside the window, replayed, or re-sent to
/// another endpoint are refused with typed errors, and refused ones change nothing.
#[tokio::test]
async fn unsigned_stale_replayed_and_retargeted_requests_are_refused() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let task = sandbox.client.submit(&sandbox.upload_request("mine", &instruct_rows(30)).await).await.unwrap();
    let task_id = task.task.unwrap().id;
    let get = api::tasks(api::TASKS_GET);
    let body = GetTaskRequest { task_id: task_id.clone() }.encode_to_vec();
    let send = |subject: String, headers: HeaderMap, body: Vec<u8>| {
        let client = sandbox.bus.client.clone();
        async move {
            let reply = client.request_with_headers(subject, headers, body.into()).await.expect("an answer");
            let headers = reply.headers.unwrap_or_default();
            headers.get(gradients_bus::api::ERROR_CODE_HEADER).map(|v| v.to_string()).unwrap_or_else(|| "OK".into())
        }
    };
    let now = Timestamp::now().unix_ms;
    let key = &sandbox.customer;

    assert_eq!(send(get.clone(), HeaderMap::new(), body.clone()).await, "INVALID_SIGNATURE", "unsigned");
    let mut forged = key.sign_request(&get, &body);
    forged.insert(gradients_intake::customer::KEY_HEADER, hex::encode(CustomerKey::generate().public_key()).as_str());
    assert_eq!(send(get.clone(), forged, body.clone()).await, "INVALID_SIGNATURE", "another key's claim");
    let other_body = GetTaskRequest { task_id: "x".into() }.encode_to_vec();
    assert_eq!(send(get.clone(), key.sign_request(&get, &body), other_body).await, "INVALID_SIGNATURE", "body");
    for (at, what) in [(now - 120_000, "two minutes old"), (now + 90_000, "from the future"), (i64::MIN, "MIN")] {
        let headers = key.sign_request_at(&get, &body, at, "0123456789abcdef0123456789abcdef");
        assert_eq!(send(get.clone(), headers, body.clone()).await, "STALE_MESSAGE", "{what}");
    }

    // A captured request: answered once, refused when replayed, refused on another endpoint.
    let captured = key.sign_request(&get, &body);
    assert_eq!(send(get.clone(), captured.clone(), body.clone()).await, "OK");
    assert_eq!(send(get.clone(), captured.clone(), body.clone()).await, "STALE_MESSAGE", "replayed");
    let cancel = api::tasks(api::TASKS_CANCEL);
    let fresh_get = key.sign_request(&get, &body);
    assert_eq!(send(cancel, fresh_get, body.clone()).await, "INVALID_SIGNATURE", "a get re-sent as a cancel");
    let still = sandbox.client.get(&task_id).await.unwrap().task.unwrap();
    assert_eq!(still.status, TaskStatus::Accepted as i32, "nothing refused changed the task");

    // The typed client error for an unsigned call.
    let unsigned = gradients_bus::api::call::<gradients_proto::v1::GetTaskResponse>(
        &sandbox.bus.client,
        get,
        &GetTaskRequest { task_id },
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(unsigned, Err(CallError::Service(e)) if e.code == ErrorCode::InvalidSignature as i32));
}

/// A NUL byte in a task id or a cancel reason is refused naming the field (or as a task
/// that does not exist), never with the database's text; both stores.
#[tokio::test]
async fn nul_bytes_in_ids_and_reasons_are_refused_cleanly() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend).await;
        let task = sandbox.client.submit(&sandbox.upload_request("nul", &instruct_rows(30)).await).await.unwrap();
        let id = task.task.unwrap().id;
        let error = refusal(sandbox.client.get("a\0b").await);
        assert_eq!(error.code, ErrorCode::TaskNotFound as i32, "{backend}: {}", error.message);
        let error = refusal(sandbox.client.cancel(&id, "because\0").await);
        assert_eq!(error.code, ErrorCode::InvalidArgument as i32, "{backend}: {}", error.message);
        assert!(error.message.starts_with("reason holds"), "{}", error.message);
    }
}

/// A status event counts only for the task its subject names: one naming task A on task
/// B's subject is dead-lettered and moves neither; a reason with a NUL byte is stored
/// without it (PostgreSQL would refuse it on every redelivery).
#[tokio::test]
async fn status_events_count_only_for_the_task_their_subject_names() {
    use gradients_bus::event::{publish_event, OutgoingEvent};
    use gradients_bus::subjects::{self, streams};
    use gradients_proto::v1::TaskStatusChanged;

    let sandbox = Sandbox::start(Backend::Postgres).await;
    let mut ids = Vec::new();
    for key in ["a", "b"] {
        let request = sandbox.upload_request(key, &instruct_rows(30)).await;
        ids.push(sandbox.client.submit(&request).await.unwrap().task.unwrap().id);
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let publish = |id: &str, subject_task: &str, task_id: &str, reason: &str| {
        let event = TaskStatusChanged {
            event_id: id.to_owned(),
            task_id: task_id.to_owned(),
            from: TaskStatus::Accepted as i32,
            to: TaskStatus::Failed as i32,
            reason: reason.to_owned(),
            at: Some(Timestamp::now()),
            actor: "dispatch".into(),
        };
        let outgoing = OutgoingEvent {
            subject: subjects::task_status(subject_task),
            id: id.to_owned(),
            payload: event.encode_to_vec().into(),
            traceparent: None,
        };
        let js = sandbox.bus.jetstream.clone();
        async move { publish_event(&js, outgoing).await.unwrap() }
    };
    publish("misrouted", &b, &a, "moved through another task's subject").await;
    let dead = sandbox
        .wait_for_messages(streams::DEAD_LETTERS, &subjects::dead_letter(subjects::consumers::INTAKE_STATUS), 1)
        .await;
    assert_eq!(dead.len(), 1, "the misrouted event is dead-lettered");
    for id in [&a, &b] {
        assert_eq!(sandbox.client.get(id).await.unwrap().task.unwrap().status, TaskStatus::Accepted as i32);
    }

    publish("nul-reason", &a, &a, "no miner\0 accepted").await;
    let task = eventually(Duration::from_secs(5), "the task failed", || async {
        let task = sandbox.client.get(&a).await.unwrap().task.unwrap();
        if task.status == TaskStatus::Failed as i32 {
            Ok(task)
        } else {
            Err(format!("status {}", task.status))
        }
    })
    .await;
    assert_eq!(task.status, TaskStatus::Failed as i32);
    assert_eq!(task.status_reason, "no miner  accepted");
}

/// A customer that never asked for its bucket names an upload in it: UPLOAD_NOT_FOUND (its
/// mistake), not UNAVAILABLE.
#[tokio::test]
async fn an_upload_in_a_bucket_never_made_is_not_found() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let newcomer = sandbox.client_for(&CustomerKey::generate());
    let mut request = sandbox.upload_request("first", &instruct_rows(30)).await;
    let dataset = request.dataset.as_mut().unwrap();
    dataset.bucket = buckets::uploads(&newcomer.customer_id());
    let error = refusal(newcomer.submit(&request).await);
    assert_eq!(error.code, ErrorCode::UploadNotFound as i32, "{}", error.message);
}

/// New keys cost nothing: past `intake.max_customer_buckets` no new bucket is made
/// (RATE_LIMITED), while customers that have one keep working.
#[tokio::test]
async fn customer_buckets_are_bounded() {
    let sandbox = Sandbox::start_with(Backend::Sqlite, |s| s.intake.max_customer_buckets = 2).await;
    let first = sandbox.client_for(&CustomerKey::generate());
    first.prepare_upload().await.expect("a first bucket");
    sandbox.client.prepare_upload().await.expect("a second bucket");
    let refused = refusal(sandbox.client_for(&CustomerKey::generate()).prepare_upload().await);
    assert_eq!(refused.code, ErrorCode::RateLimited as i32, "{}", refused.message);
    first.prepare_upload().await.expect("an existing bucket is still named");
    sandbox.client.submit(&sandbox.upload_request("still", &instruct_rows(30)).await).await.expect("still served");
}

/// The 17 hanging uploads, spread over nine customers: at most
/// `intake.max_concurrent_submits` of them run (each refused as UPLOAD_STALLED), the rest
/// are refused at once (RATE_LIMITED), and meanwhile intake answers others and `/readyz`
/// stays true because it can.
#[tokio::test]
async fn many_hanging_uploads_cannot_take_every_slot() {
    let port = gradients_testkit::free_port();
    let sandbox = Sandbox::start_with(Backend::Sqlite, |s| {
        s.intake.http_addr = format!("127.0.0.1:{port}");
        s.intake.upload_stall_ms = 2_000;
        s.intake.max_concurrent_submits = 8;
    })
    .await;
    let mut attacks = Vec::new();
    for i in 0..17 {
        let attacker = sandbox.client_for(&CustomerKey::generate());
        let mut request = sandbox.upload_request_as(&attacker, &format!("hang-{i}"), &instruct_rows(30)).await;
        let dataset = request.dataset.clone().unwrap();
        rewrite_meta(&sandbox, &dataset.bucket, &dataset.name, |meta| meta["nuid"] = "NEVERWRITTEN1234567890".into())
            .await;
        request.name = format!("hang {i}");
        attacks.push((attacker, request));
    }
    let started = Instant::now();
    let hanging = futures::future::join_all(attacks.iter().map(|(client, request)| client.submit(request)));
    let meanwhile = async {
        // The hanging submits go first: an ordering of the scenario, not a wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listed = sandbox.client.list(&ListTasksRequest::default()).await.expect("list is answered");
        let answered_at = started.elapsed();
        let ready = readyz(port).await;
        (listed, answered_at, ready)
    };
    let (results, (listed, answered_at, ready)) = tokio::join!(hanging, meanwhile);
    let codes: Vec<i32> = results.into_iter().map(|r| refusal(r).code).collect();
    let stalled = codes.iter().filter(|c| **c == ErrorCode::UploadStalled as i32).count();
    let limited = codes.iter().filter(|c| **c == ErrorCode::RateLimited as i32).count();
    assert_eq!((stalled, limited), (8, 9), "{codes:?}");
    assert!(listed.tasks.is_empty());
    assert!(answered_at < Duration::from_millis(1_900), "list waited for the stalls: {answered_at:?}");
    assert!(ready.contains("200"), "intake can answer, so it is ready: {ready}");
}

async fn readyz(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}
