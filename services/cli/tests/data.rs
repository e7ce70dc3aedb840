//! `gradients data ...` as a real process: generated task folders are the kind intake
//! accepts from `task submit --dir`, and the corpus and family list come out as promised.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gradients_testkit::{eventually_blocking, workspace_root, NatsServer};
use serde_json::Value;

fn gradients(env: &[(String, String)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gradients"));
    command.args(args).current_dir(workspace_root());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("gradients runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Every family by default, one line and one folder each, the same bytes for the same
/// seed; unknown families are refused by name before anything is written.
#[test]
fn generate_families_and_corpus_offline() {
    let dir = tempfile::tempdir().unwrap();
    let listed = gradients(&[], &["data", "families"]);
    assert!(listed.status.success());
    let table = stdout(&listed);
    let names: Vec<&str> = table.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.len() >= 10, "{table}");
    assert!(table.contains("half-known") && table.contains(" new "), "{table}");

    let out = dir.path().join("tasks");
    let made = gradients(&[], &["data", "generate", "--out", path(&out)]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let lines = stdout(&made);
    assert_eq!(lines.lines().count(), names.len(), "{lines}");
    for name in &names {
        let folder = out.join(name);
        assert!(lines.contains(&format!("{}  300 rows", folder.display())), "{lines}");
        let data = std::fs::read_to_string(folder.join("data.jsonl")).unwrap();
        assert_eq!(data.lines().count(), 300);
        let toml = std::fs::read_to_string(folder.join("task.toml")).unwrap();
        assert!(toml.contains("type = \"instruct\"") && !toml.contains("base_model"), "{toml}");
    }

    let again = dir.path().join("again");
    let dpo = gradients(
        &[],
        &["data", "generate", "--out", path(&again), "--family", "parity,uppercase", "--rows", "25", "--dpo"],
    );
    assert!(dpo.status.success());
    let first = std::fs::read(again.join("parity-dpo/data.jsonl")).unwrap();
    let row: Value = serde_json::from_str(String::from_utf8_lossy(&first).lines().next().unwrap()).unwrap();
    assert!(row["prompt"].is_string() && row["chosen"] != row["rejected"], "{row}");
    gradients(&[], &["data", "generate", "--out", path(&again), "--family", "parity", "--rows", "25", "--dpo"]);
    assert_eq!(std::fs::read(again.join("parity-dpo/data.jsonl")).unwrap(), first);

    let refused = gradients(&[], &["data", "generate", "--out", path(&dir.path().join("x")), "--family", "nope"]);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("\"nope\"") && error.contains("arithmetic"), "{error}");
    assert!(!dir.path().join("x").exists());
    let too_many = gradients(&[], &["data", "generate", "--out", path(&dir.path().join("y")), "--rows", "5000"]);
    assert!(!too_many.status.success());
    assert!(!dir.path().join("y").exists(), "nothing written when one family cannot make the rows");

    let corpus = dir.path().join("corpus.txt");
    let written = gradients(&[], &["data", "corpus", "--out", path(&corpus), "--bytes", "12345", "--seed", "3"]);
    assert!(written.status.success());
    let text = std::fs::read(&corpus).unwrap();
    assert_eq!(text.len(), 12345);
    assert!(text.is_ascii());
}

/// Kills the server process if the test fails half-way.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// Generated folders, instruct and DPO, submitted with `task submit --dir` to a real
/// intake: the task-folder reader and intake's validation accept them, every row counted.
#[test]
fn generated_folders_are_accepted_by_intake() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    // Task commands are signed with a customer's key.
    let key = dir.path().join("customer.key");
    gradients_intake::customer::CustomerKey::generate().save(&key).expect("a customer key");
    let env: Vec<(String, String)> = vec![
        ("GRADIENTS__INTAKE__CUSTOMER_KEY_FILE".into(), key.display().to_string()),
        ("GRADIENTS__NATS__URL".into(), nats.url()),
        ("GRADIENTS__STORE__URL".into(), format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display())),
        ("GRADIENTS__INTAKE__HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("GRADIENTS__LEDGER__HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("GRADIENTS__TELEMETRY__LOG_FILTER".into(), "warn".into()),
    ];
    let out = dir.path().join("tasks");
    for extra in [&[][..], &["--dpo"][..]] {
        let mut args = vec!["data", "generate", "--out", path(&out), "--family", "capital-lookup,date-iso"];
        args.extend_from_slice(&["--rows", "120", "--base-model", "tiny-1m"]);
        args.extend_from_slice(extra);
        let made = gradients(&env, &args);
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }

    let mut command = Command::new(env!("CARGO_BIN_EXE_gradients"));
    command.args(["serve", "intake"]).current_dir(workspace_root()).stdout(Stdio::null()).stderr(Stdio::inherit());
    for (key, value) in &env {
        command.env(key, value);
    }
    let mut server = Serving(command.spawn().unwrap());
    eventually_blocking(Duration::from_secs(30), "intake ready", || {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("gradients serve intake exited early: {status}");
        }
        stdout(&gradients(&env, &["task", "get", "nothing-yet", "--json"])).contains("TASK_NOT_FOUND")
    });

    // Intake accepts only tasks whose base model is published.
    let model = dir.path().join("tiny-1m");
    gradients_testkit::write_base_model_dir(&model).unwrap();
    let published = gradients(&env, &["model", "publish", path(&model), "--name", "tiny-1m"]);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));

    for (folder, task_type) in [
        ("capital-lookup", "instruct"),
        ("date-iso", "instruct"),
        ("capital-lookup-dpo", "dpo"),
        ("date-iso-dpo", "dpo"),
    ] {
        let submitted = gradients(&env, &["task", "submit", "--dir", path(&out.join(folder)), "--json"]);
        let task: Value = serde_json::from_str(&stdout(&submitted))
            .unwrap_or_else(|e| panic!("{folder}: no JSON ({e}): {}", String::from_utf8_lossy(&submitted.stderr)));
        assert!(submitted.status.success(), "{folder}: {task}");
        assert_eq!(task["status"], "accepted", "{task}");
        assert_eq!(task["type"], task_type);
        assert_eq!(task["name"], folder);
        assert_eq!(task["base_model"], "tiny-1m");
        assert_eq!(task["dataset"]["rows"], 120);
    }
}
