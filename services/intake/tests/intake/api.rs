//! The API's other endpoints, discovery, the status projection and the health endpoint.

use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::{self, api, streams};
use gradients_proto::v1::{ErrorCode, ListTasksRequest, TaskStatus, TaskStatusChanged, Timestamp};
use gradients_testkit::{eventually, Backend};
use prost::Message;

use crate::common::{instruct_rows, refusal, Sandbox};

/// `$SRV.PING` and `$SRV.INFO` answer with the service's name, version and endpoints.
#[tokio::test]
async fn micro_service_is_discoverable() {
    let sandbox = Sandbox::start(Backend::Sqlite).await;
    let ping = sandbox.bus.client.request(format!("$SRV.PING.{}", api::INTAKE_SERVICE), "".into()).await.unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], api::INTAKE_SERVICE);
    assert_eq!(ping["version"], gradients_intake::VERSION);

    let info = sandbox.bus.client.request(format!("$SRV.INFO.{}", api::INTAKE_SERVICE), "".into()).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["name"], api::INTAKE_SERVICE);
    let mut subjects: Vec<String> =
        info["endpoints"].as_array().unwrap().iter().map(|e| e["subject"].as_str().unwrap().to_owned()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "gradients.api.tasks.cancel",
            "gradients.api.tasks.get",
            "gradients.api.tasks.list",
            "gradients.api.tasks.result",
            "gradients.api.tasks.submit",
            "gradients.api.tasks.upload"
        ]
    );

    let stats = sandbox.bus.client.request(format!("$SRV.STATS.{}", api::INTAKE_SERVICE), "".into()).await.unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    assert!(stats["endpoints"].as_array().unwrap().iter().any(|e| e["num_requests"].as_u64().unwrap_or(0) > 0));
}

/// get, list (paged, filtered by status) and cancel, with their typed errors.
#[tokio::test]
async fn get_list_and_cancel() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend).await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let data = instruct_rows(20 + i);
            let task = sandbox
                .client
                .submit(&sandbox.upload_request(&format!("list-{i}"), &data).await)
                .await
                .unwrap()
                .task
                .unwrap();
            ids.push(task.id);
            // Distinct creation times make "newest first" well defined: the pause is part
            // of the scenario, not a wait before an assertion.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let first = sandbox.client.list(&ListTasksRequest { page_size: 2, ..Default::default() }).await.unwrap();
        assert_eq!(
            first.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            [ids[2].clone(), ids[1].clone()],
            "{backend}: newest first"
        );
        let second = sandbox
            .client
            .list(&ListTasksRequest { page_size: 2, page_token: first.next_page_token.clone(), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(second.tasks.len(), 1);
        assert_eq!(second.tasks[0].id, ids[0]);
        assert!(second.next_page_token.is_empty());
        let bad_token = refusal(
            sandbox.client.list(&ListTasksRequest { page_token: "garbage".into(), ..Default::default() }).await,
        );
        assert_eq!(bad_token.code, ErrorCode::InvalidArgument as i32);

        let cancelled = sandbox.client.cancel(&ids[1], "changed my mind").await.unwrap().task.unwrap();
        assert_eq!(cancelled.status, TaskStatus::Cancelled as i32);
        assert_eq!(cancelled.status_reason, "changed my mind");
        let again = sandbox.client.cancel(&ids[1], "").await.unwrap().task.unwrap();
        assert_eq!(again.status, TaskStatus::Cancelled as i32, "a repeated cancel is answered, not refused");
        let events = sandbox.wait_for_messages(streams::TASKS, &subjects::task_status(&ids[1]), 2).await;
        assert_eq!(events.len(), 2, "{backend}: accepted, then cancelled, once each");

        let only_cancelled = sandbox
            .client
            .list(&ListTasksRequest { status: TaskStatus::Cancelled as i32, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(only_cancelled.tasks.len(), 1);

        assert_eq!(refusal(sandbox.client.get("nope").await).code, ErrorCode::TaskNotFound as i32);
        assert_eq!(refusal(sandbox.client.cancel("nope", "").await).code, ErrorCode::TaskNotFound as i32);
    }
}

/// Status events from other services move the task forward; a repeat or an older event
/// changes nothing; an undecodable one goes to the dead-letter subject.
#[tokio::test]
async fn status_events_are_projected_forward_only() {
    let sandbox = Sandbox::start(Backend::Postgres).await;
    let task = sandbox
        .client
        .submit(&sandbox.upload_request("projected", &instruct_rows(30)).await)
        .await
        .unwrap()
        .task
        .unwrap();
    let publish = |id: &str, from: TaskStatus, to: TaskStatus| {
        let event = TaskStatusChanged {
            event_id: id.to_owned(),
            task_id: task.id.clone(),
            from: from as i32,
            to: to as i32,
            reason: format!("moved to {}", to.label()),
            at: Some(Timestamp::now()),
            actor: "dispatch".into(),
        };
        let outgoing = OutgoingEvent {
            subject: subjects::task_status(&task.id),
            id: id.to_owned(),
            payload: event.encode_to_vec().into(),
            traceparent: None,
        };
        let js = sandbox.bus.jetstream.clone();
        async move { publish_event(&js, outgoing).await.unwrap() }
    };
    publish("e-training", TaskStatus::Dispatching, TaskStatus::Training).await;
    publish("e-dispatching-late", TaskStatus::Accepted, TaskStatus::Dispatching).await;

    eventually(Duration::from_secs(5), "the task training", || async {
        let status = sandbox.client.get(&task.id).await.unwrap().task.unwrap().status;
        if status == TaskStatus::Training as i32 {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    })
    .await;
    sandbox.wait_until_settled().await;
    let after_late = sandbox.client.get(&task.id).await.unwrap().task.unwrap();
    assert_eq!(after_late.status, TaskStatus::Training as i32, "an older event does not move it back");

    let poison = OutgoingEvent {
        subject: subjects::task_status(&task.id),
        id: "poison".into(),
        payload: b"\xff\xfe garbage".to_vec().into(),
        traceparent: None,
    };
    publish_event(&sandbox.bus.jetstream, poison).await.unwrap();
    let dead = sandbox
        .wait_for_messages(streams::DEAD_LETTERS, &subjects::dead_letter(subjects::consumers::INTAKE_STATUS), 1)
        .await;
    assert_eq!(dead.len(), 1);
    let headers = dead[0].headers.clone().unwrap();
    assert!(headers.get(gradients_bus::worker::DEAD_LETTER_REASON).unwrap().to_string().contains("poison"));
}

/// `/healthz` and `/readyz` answer 200 once intake is up; `/metrics` counts requests and
/// rejections by code.
#[tokio::test]
async fn health_and_metrics_endpoints() {
    let port = gradients_testkit::free_port();
    let sandbox = Sandbox::start_with(Backend::Sqlite, |s| s.intake.http_addr = format!("127.0.0.1:{port}")).await;
    let mut bad = sandbox.upload_request("metrics", &instruct_rows(30)).await;
    bad.base_model = "unknown".into();
    refusal(sandbox.client.submit(&bad).await);

    assert!(http_get(port, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(port, "/readyz").await.starts_with("HTTP/1.1 200"));
    let metrics = http_get(port, "/metrics").await;
    assert!(metrics.contains("gradients_rejections_total") && metrics.contains("UNKNOWN_BASE_MODEL"), "{metrics}");
    assert!(metrics.contains("gradients_api_requests_total"), "{metrics}");
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// `/readyz` tells the truth: 503 while intake cannot reach NATS (it could answer no one),
/// 200 again once the server is back, and requests are answered again.
#[tokio::test]
async fn readiness_follows_the_nats_connection() {
    let port = gradients_testkit::free_port();
    let mut sandbox = Sandbox::start_with(Backend::Sqlite, |s| s.intake.http_addr = format!("127.0.0.1:{port}")).await;
    let status = |port| async move { http_get(port, "/readyz").await.lines().next().unwrap_or_default().to_owned() };
    assert!(status(port).await.contains("200"));

    sandbox.nats.kill();
    eventually(Duration::from_secs(5), "not ready while NATS is gone", || async {
        let seen = status(port).await;
        if seen.contains("503") {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;

    sandbox.nats.restart().unwrap();
    eventually(Duration::from_secs(10), "ready again", || async {
        let seen = status(port).await;
        if seen.contains("200") {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
    eventually(Duration::from_secs(5), "list answered", || async {
        sandbox.client.list(&ListTasksRequest::default()).await
    })
    .await;
}
