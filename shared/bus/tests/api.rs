//! Request/reply failures as a client sees them, on a real nats-server: a failure of the
//! service itself arrives as a code and a reference, never as its cause's text; a handler
//! that panics still answers (`INTERNAL` with a reference) and the service goes on.

use std::time::Duration;

use async_nats::service::Request;
use gradients_bus::api::{answer, call, serve, service_failure, CallError, ServiceSpec};
use gradients_proto::v1::{ErrorCode, Timestamp};
use gradients_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

const GROUP: &str = "gradients.api.bustest";
/// The cause a failing endpoint meets: it quotes SQL and a customer, as database errors do.
const SECRET_CAUSE: &str = "relation \"customers\" violates SELECT secret FROM customers WHERE id = 'c-42'";

async fn handle(endpoint: &'static str, request: Request) {
    match endpoint {
        "fails" => {
            answer(
                &request,
                |_: Timestamp| async {
                    Err::<Timestamp, _>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, SECRET_CAUSE))
                },
                |e| service_failure(ErrorCode::Unavailable, &e),
            )
            .await;
        }
        "panics" => panic!("a bug: {SECRET_CAUSE}"),
        _ => {
            answer(
                &request,
                |t: Timestamp| async move { Ok::<_, std::io::Error>(t) },
                |e| service_failure(ErrorCode::Internal, &e),
            )
            .await;
        }
    }
}

fn refusal(result: Result<Timestamp, CallError>) -> gradients_proto::v1::Error {
    match result {
        Err(CallError::Service(error)) => error,
        other => panic!("expected a typed error, got {other:?}"),
    }
}

#[tokio::test]
async fn failures_reach_the_client_as_a_code_and_a_reference_only() {
    let server = NatsServer::start().expect("nats-server");
    let client = server.client().await;
    let stop = CancellationToken::new();
    let spec = ServiceSpec {
        name: "gradients-bustest",
        version: "0.0.1",
        description: "bus test",
        group: GROUP,
        endpoints: &["fails", "panics", "echo"],
        max_concurrent: 4,
    };
    let serving = tokio::spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move { serve(&client, spec, stop, handle).await }
    });
    let ask = |endpoint: &str| {
        let client = client.clone();
        let subject = format!("{GROUP}.{endpoint}");
        async move {
            // The endpoint may not be registered yet right after start.
            loop {
                match call::<Timestamp>(&client, subject.clone(), &Timestamp { unix_ms: 7 }, Duration::from_secs(5))
                    .await
                {
                    Err(CallError::NoResponders(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => return other,
                }
            }
        }
    };

    let failed = refusal(ask("fails").await);
    assert_eq!(failed.code, ErrorCode::Unavailable as i32);
    assert_eq!(failed.reference.len(), 32, "{failed:?}");
    assert!(failed.message.contains(&failed.reference), "{failed:?}");
    assert!(!failed.message.contains("SELECT") && !failed.message.contains("c-42"), "leaked: {failed:?}");

    let panicked = refusal(ask("panics").await);
    assert_eq!(panicked.code, ErrorCode::Internal as i32);
    assert_eq!(panicked.reference.len(), 32, "{panicked:?}");
    assert!(!panicked.message.contains("SELECT"), "leaked: {panicked:?}");
    assert_ne!(panicked.reference, failed.reference);

    // The service is still there after the panic.
    let echoed = ask("echo").await.expect("answered after the panic");
    assert_eq!(echoed.unix_ms, 7);
    assert!(!serving.is_finished());
    stop.cancel();
    serving.await.expect("join").expect("served");
}
