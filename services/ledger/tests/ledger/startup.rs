//! Starting before NATS: services start in any order, so the ledger waits for its server,
//! says it is not ready meanwhile, and serves once the server is up.

use std::time::Duration;

use gradients_testkit::{eventually, free_port, http_get, Backend, NatsServer, ScratchDb};
use tokio_util::sync::CancellationToken;

/// Started while NATS is down, the ledger stays up and not ready (`/readyz` 503, `/healthz`
/// 200); once NATS comes up it connects by itself and becomes ready; shutdown still works.
#[tokio::test]
async fn waits_for_nats_and_reports_not_ready_until_connected() {
    gradients_telemetry::init_for_tests();
    let mut nats = NatsServer::start().expect("nats-server");
    nats.kill();
    let db = ScratchDb::new(Backend::Sqlite).await.expect("scratch database");
    let port = free_port();
    let mut settings = gradients_config::Settings::default();
    settings.nats.url = vec![nats.url()];
    settings.nats.connect_timeout_ms = 500;
    settings.store.url = db.url().to_owned();
    settings.ledger.http_addr = format!("127.0.0.1:{port}");
    settings.ledger.dispatch_public_key = hex::encode(gradients_miner::Identity::generate().public_key());
    settings.evaluator.public_key = hex::encode(gradients_miner::Identity::generate().public_key());
    let shutdown = CancellationToken::new();
    let ledger = tokio::spawn(gradients_ledger::run(settings, shutdown.clone()));

    eventually(Duration::from_secs(10), "/healthz answering while NATS is down", || async {
        let health = http_get(port, "/healthz").await;
        if health.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(health)
        }
    })
    .await;
    // Three connect timeouts of waiting: the time is the thing under test (the ledger keeps
    // waiting, and stays not ready, instead of giving up or claiming readiness).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(http_get(port, "/readyz").await.starts_with("HTTP/1.1 503"), "not ready without NATS");
    assert!(!ledger.is_finished(), "the ledger gave up instead of waiting");

    nats.restart().expect("restart nats-server");
    eventually(Duration::from_secs(30), "/readyz 200 once NATS is up", || async {
        let ready = http_get(port, "/readyz").await;
        if ready.starts_with("HTTP/1.1 200") {
            Ok(())
        } else {
            Err(ready)
        }
    })
    .await;
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(20), ledger).await.expect("stops on shutdown");
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
}

/// The binary takes a real command line: `--help` describes it (it used to be read as a
/// configuration file path), an unknown flag is a usage error, a missing file a clear one.
#[test]
fn the_binary_has_a_command_line() {
    let binary = env!("CARGO_BIN_EXE_gradients-ledger");
    let help = std::process::Command::new(binary).arg("--help").output().expect("run --help");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{help:?}");
    assert!(text.contains("--config <FILE>") && text.contains("reward ledger"), "{text}");

    let unknown = std::process::Command::new(binary).arg("--no-such-flag").output().expect("run");
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");

    let missing = std::process::Command::new(binary).args(["--config", "/no/such/file.toml"]).output().expect("run");
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("loading configuration"), "{missing:?}");
}
