//! `gradients serve audit` and `gradients audit ...` as real processes against a private
//! nats-server: a captured event's proof is written to a file and checked offline with the
//! public key alone; another key fails; the whole log verifies; the export re-verifies.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::{subjects, topology, Bus};
use gradients_config::NatsSettings;
use gradients_proto::v1::TaskStatusChanged;
use gradients_testkit::{eventually, NatsServer};
use prost::Message;

fn gradients(env: &[(String, String)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gradients"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("gradients runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// An auditor's session with the CLI, from a running audit service to offline checks.
#[tokio::test]
async fn audit_commands_prove_and_verify_offline() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let env: Vec<(String, String)> = vec![
        ("GRADIENTS__NATS__URL".into(), nats.url()),
        ("GRADIENTS__AUDIT__STORE_URL".into(), format!("sqlite://{}?mode=rwc", path("audit.db"))),
        ("GRADIENTS__AUDIT__KEY_FILE".into(), path("audit.key")),
        ("GRADIENTS__AUDIT__HTTP_ADDR".into(), "127.0.0.1:0".into()),
    ];
    let mut service = Command::new(env!("CARGO_BIN_EXE_gradients"));
    service.args(["serve", "audit"]).stdout(Stdio::null()).stderr(Stdio::null());
    for (key, value) in &env {
        service.env(key, value);
    }
    let mut service = service.spawn().expect("gradients serve audit");

    let settings = NatsSettings { url: vec![nats.url()], ..Default::default() };
    let bus = Bus::connect(&settings, "cli-audit-test").await.unwrap();
    topology::declare(&bus, &settings).await.unwrap();
    let status = TaskStatusChanged { event_id: "status-1".into(), task_id: "t1".into(), ..Default::default() };
    let event = OutgoingEvent {
        subject: subjects::task_status("t1"),
        id: "status-1".into(),
        payload: status.encode_to_vec().into(),
        traceparent: None,
    };
    publish_event(&bus.jetstream, event).await.unwrap();

    let proof_file = path("proof.json");
    eventually(Duration::from_secs(30), "the event's proof", || async {
        let proof = gradients(&env, &["audit", "proof", "--event-id", "status-1", "--out", &proof_file]);
        if proof.status.success() {
            Ok(())
        } else {
            Err(text(&proof))
        }
    })
    .await;
    let key = gradients(&env, &["audit", "public-key"]);
    assert!(key.status.success(), "{}", text(&key));
    let key = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    assert_eq!(key.len(), 64, "{key}");

    // Offline: no NATS in the environment at all.
    let offline: Vec<(String, String)> = vec![("GRADIENTS__NATS__URL".into(), "nats://127.0.0.1:1".into())];
    let verified = gradients(&offline, &["audit", "verify-proof", &proof_file, "--public-key", &key]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("ok: record 0 is in the signed log of 1 records"), "{}", text(&verified));
    let key_file = path("audit.pub");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let from_file = gradients(&offline, &["audit", "verify-proof", &proof_file, "--public-key", &key_file]);
    assert!(from_file.status.success(), "{}", text(&from_file));
    let other = hex::encode(gradients_miner::Identity::generate().public_key());
    let refused = gradients(&offline, &["audit", "verify-proof", &proof_file, "--public-key", &other]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("INVALID"), "{}", text(&refused));

    let walked = gradients(&env, &["audit", "verify", "--public-key", &key]);
    assert!(walked.status.success(), "{}", text(&walked));
    assert!(text(&walked).contains("ok: 1 records rehashed"), "{}", text(&walked));
    let export_file = path("audit.jsonl");
    let exported = gradients(&env, &["audit", "export", "--format", "jsonl", "--out", &export_file]);
    assert!(exported.status.success(), "{}", text(&exported));
    let lines = std::fs::read_to_string(&export_file).unwrap();
    assert_eq!(lines.lines().count(), 1);
    let line_file = path("line.json");
    std::fs::write(&line_file, lines.lines().next().unwrap()).unwrap();
    let line = gradients(&offline, &["audit", "verify-proof", &line_file, "--public-key", &key]);
    assert!(line.status.success(), "{}", text(&line));
    let reconciled = gradients(&env, &["audit", "reconcile", "--offline-ledger"]);
    assert!(reconciled.status.success(), "{}", text(&reconciled));
    assert!(text(&reconciled).contains("0 differences"), "{}", text(&reconciled));
    assert!(Path::new(&path("audit.key")).exists());
    service.kill().ok();
    service.wait().ok();
}
