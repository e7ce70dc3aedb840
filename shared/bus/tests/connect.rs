//! Connecting to NATS when it is not there yet: services start in any order.

use std::time::Duration;

use gradients_bus::{Bus, BusError};
use gradients_config::NatsSettings;
use gradients_testkit::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn settings_for(url: String) -> NatsSettings {
    NatsSettings { url: vec![url], connect_timeout_ms: 500, ..NatsSettings::default() }
}

/// A server that was started and killed (its port free again), and a connection attempt
/// to it waiting in the background until `stop`.
fn waiting_for_a_dead_server(
    name: &'static str,
    stop: &CancellationToken,
) -> (NatsServer, JoinHandle<Result<Option<Bus>, BusError>>) {
    let mut server = NatsServer::start().expect("nats-server");
    let settings = settings_for(server.url());
    server.kill();
    let stop = stop.clone();
    let waiting = tokio::spawn(async move { Bus::connect_patiently(&settings, name, &stop).await });
    (server, waiting)
}

/// A service started while its NATS server is down waits, then connects once the server
/// comes up, without being restarted itself.
#[tokio::test]
async fn waits_for_a_server_that_starts_late() {
    let (mut server, waiting) = waiting_for_a_dead_server("late-start", &CancellationToken::new());
    // Time passing with the server down is the thing under test: several back-offs of waiting.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!waiting.is_finished(), "gave up or connected while the server was down");

    server.restart().expect("restart nats-server");
    let bus = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("connected within the back-off")
        .expect("join")
        .expect("no error")
        .expect("connected, not stopped");
    bus.client.flush().await.expect("the connection works");
}

/// Shutdown while waiting ends the wait with no connection and no error.
#[tokio::test]
async fn stops_waiting_on_shutdown() {
    let stop = CancellationToken::new();
    let (_server, waiting) = waiting_for_a_dead_server("stopped", &stop);
    // Let it be well into waiting (a back-off or two) before the shutdown under test.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("stopped promptly").expect("join");
    assert!(matches!(outcome, Ok(None)), "{outcome:?}");
}

/// What waiting cannot fix fails at once: refused credentials, a malformed URL.
#[tokio::test]
async fn configuration_errors_fail_at_once() {
    let server = NatsServer::start_with_config("authorization { token: \"right\" }").expect("nats-server");
    let mut settings = settings_for(server.url());
    settings.auth.token = Some("wrong".into());
    let stop = CancellationToken::new();
    let outcome = tokio::time::timeout(Duration::from_secs(10), Bus::connect_patiently(&settings, "bad-auth", &stop))
        .await
        .expect("no waiting on refused credentials");
    assert!(matches!(outcome, Err(BusError::Connect { .. })), "{outcome:?}");

    let settings = settings_for("nats://[not a host".into());
    let outcome = Bus::connect_patiently(&settings, "bad-url", &stop).await;
    assert!(matches!(outcome, Err(BusError::Connect { .. })), "{outcome:?}");
}
