//! The `gradients` binary end to end: `serve intake` as a real process against a private
//! nats-server and a SQLite file, driven by `task submit|get|list|cancel`, then SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gradients_testkit::{eventually, eventually_blocking, workspace_root, NatsServer};
use serde_json::Value;

/// Runs `gradients` with the sandbox's environment.
struct Cli {
    env: Vec<(String, String)>,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gradients"));
        command.args(args).current_dir(workspace_root());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("gradients runs")
    }

    fn json(&self, args: &[&str]) -> (bool, Value) {
        let output = self.run(args);
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{args:?} printed no JSON ({e}): {text} / {}", String::from_utf8_lossy(&output.stderr))
        });
        (output.status.success(), value)
    }
}

/// The environment that points `gradients` at a private server and database, signing as
/// a customer whose key is made in `dir`.
fn sandbox_env(nats: &NatsServer, dir: &Path) -> Vec<(String, String)> {
    let key = dir.join("customer.key");
    if !key.exists() {
        gradients_intake::customer::CustomerKey::generate().save(&key).expect("a customer key");
    }
    vec![
        ("GRADIENTS__INTAKE__CUSTOMER_KEY_FILE".into(), key.display().to_string()),
        ("GRADIENTS__NATS__URL".into(), nats.url()),
        ("GRADIENTS__STORE__URL".into(), format!("sqlite://{}?mode=rwc", dir.join("cli.db").display())),
        ("GRADIENTS__INTAKE__HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("GRADIENTS__LEDGER__HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("GRADIENTS__TELEMETRY__LOG_FILTER".into(), "warn".into()),
    ]
}

/// Kills the server process if the test fails half-way.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn examples() -> PathBuf {
    workspace_root().join("examples/tasks")
}

fn wait_until_ready(cli: &Cli, server: &mut Serving) {
    eventually_blocking(Duration::from_secs(30), "intake ready", || {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("gradients serve intake exited early: {status}");
        }
        let output = String::from_utf8_lossy(&cli.run(&["task", "get", "nothing-yet", "--json"]).stdout).to_string();
        if output.contains("TASK_NOT_FOUND") {
            Ok(())
        } else {
            Err(output)
        }
    });
}

/// The README's story: serve intake, submit a task folder, see it accepted and split, read
/// it back, list it, see a broken folder refused with row and column, cancel, and stop
/// the server with SIGTERM (a clean exit).
#[test]
fn serve_submit_get_list_cancel_and_stop() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli { env: sandbox_env(&nats, dir.path()) };
    let mut server =
        Serving(cli.command(&["serve", "intake"]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap());
    wait_until_ready(&cli, &mut server);

    let capitals = examples().join("capitals");
    // Its base model is configured but not yet published: refused, typed, with the name.
    let (ok, refused) = cli.json(&["task", "submit", "--dir", path(&capitals), "--idempotency-key", "cli-0", "--json"]);
    assert!(!ok, "a task naming an unpublished model is refused: {refused}");
    assert_eq!(refused["error"]["code"], "BASE_MODEL_NOT_PUBLISHED");
    assert!(refused["error"]["message"].as_str().unwrap().contains("tiny-10m"), "{refused}");
    let model = dir.path().join("tiny-10m");
    gradients_testkit::write_base_model_dir(&model).unwrap();
    let published = cli.run(&["model", "publish", path(&model), "--name", "tiny-10m"]);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));

    let (ok, task) = cli.json(&["task", "submit", "--dir", path(&capitals), "--idempotency-key", "cli-1", "--json"]);
    assert!(ok, "{task}");
    assert_eq!(task["status"], "accepted");
    assert_eq!(task["type"], "instruct");
    assert_eq!(task["columns"]["instruction"], "question");
    assert_eq!(task["dataset"]["rows"], 120);
    assert_eq!(task["splits"]["test"]["rows"], 12);
    assert_eq!(task["splits"]["synth"]["rows"], 6);
    assert_eq!(task["splits"]["train"]["rows"], 102);
    let id = task["id"].as_str().unwrap().to_owned();

    let human = cli.run(&["task", "submit", "--dir", path(&capitals), "--idempotency-key", "cli-1"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("already submitted") && human.contains(&id), "{human}");

    let (ok, got) = cli.json(&["task", "get", &id, "--json"]);
    assert!(ok);
    assert_eq!(got["id"], id.as_str());

    let (ok, refused) = cli.json(&["task", "submit", "--dir", path(&examples().join("broken-columns")), "--json"]);
    assert!(!ok, "a refused submission exits non-zero");
    assert_eq!(refused["error"]["code"], "MISSING_COLUMN");
    assert_eq!(refused["error"]["row"], 31);
    assert_eq!(refused["error"]["column"], "output");

    let (ok, listed) = cli.json(&["task", "list", "--json"]);
    assert!(ok);
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);
    let table = cli.run(&["task", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&id));

    let (ok, cancelled) = cli.json(&["task", "cancel", &id, "--reason", "demo over", "--json"]);
    assert!(ok);
    assert_eq!(cancelled["status"], "cancelled");

    stop_with_sigterm(&mut server);
}

/// An operator stopping a service whose NATS server is already gone (a cluster outage, or
/// the wrong shutdown order) still gets the process back: the last flush gives up.
#[test]
fn sigterm_stops_intake_even_when_nats_is_gone() {
    let mut nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli { env: sandbox_env(&nats, dir.path()) };
    let mut server =
        Serving(cli.command(&["serve", "intake"]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap());
    wait_until_ready(&cli, &mut server);
    nats.kill();
    stop_with_sigterm(&mut server);
}

/// Sends SIGTERM and expects a clean exit within 30 s.
fn stop_with_sigterm(server: &mut Serving) {
    let status = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = eventually_blocking(Duration::from_secs(30), "the service stopping on SIGTERM", || {
        server.0.try_wait().unwrap()
    });
    assert!(exit.success(), "SIGTERM drains and exits cleanly: {exit}");
}

/// The auditor's story: serve the ledger, feed it a task's events as intake, dispatch and
/// the evaluator would, then read the result, a miner's entries, the weights and a CSV
/// export with `gradients ledger`.
#[test]
fn ledger_task_miner_weights_and_export() {
    use gradients_proto::v1::{Assignment, EvaluationResult, EvaluationStatus, Task, TaskCreated, TaskType, Timestamp};
    use prost::Message;

    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    // The ledger accepts only evaluations signed with the evaluator's key.
    let evaluator = gradients_miner::Identity::generate();
    evaluator.save(&dir.path().join("evaluator.key")).unwrap();
    let mut env = sandbox_env(&nats, dir.path());
    env.push(("GRADIENTS__EVALUATOR__KEY_FILE".into(), dir.path().join("evaluator.key").display().to_string()));
    // ...and only assignments signed with dispatch's.
    let dispatch = gradients_miner::Identity::generate();
    dispatch.save(&dir.path().join("dispatch.key")).unwrap();
    env.push(("GRADIENTS__DISPATCH__KEY_FILE".into(), dir.path().join("dispatch.key").display().to_string()));
    let cli = Cli { env };
    let mut server =
        Serving(cli.command(&["serve", "ledger"]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap());
    eventually_blocking(Duration::from_secs(30), "the ledger ready", || {
        String::from_utf8_lossy(&cli.run(&["ledger", "task", "none", "--json"]).stdout).contains("TASK_NOT_FOUND")
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = nats.client().await;
        let js = async_nats::jetstream::new(client);
        let now = Timestamp::now();
        let task = Task {
            id: "t-cli".into(),
            r#type: TaskType::Instruct as i32,
            base_model: "tiny-1m".into(),
            hours_to_complete: 1.0,
            deadline: Some(Timestamp { unix_ms: now.unix_ms + 3_600_000 }),
            ..Default::default()
        };
        let created = TaskCreated { event_id: "t-cli".into(), task: Some(task), at: Some(now) };
        js.publish("gradients.tasks.created", created.encode_to_vec().into()).await.unwrap().await.unwrap();
        for (miner, loss) in [("alice", 0.5), ("bob", 0.9)] {
            let mut assignment = Assignment {
                assignment_id: format!("a-{miner}"),
                task_id: "t-cli".into(),
                miner_id: miner.into(),
                cohort_size: 2,
                ..Default::default()
            };
            assignment.signature =
                dispatch
                    .sign_message(gradients_miner::identity::domains::ASSIGNMENT, &assignment, |a| a.signature.clear());
            js.publish(format!("gradients.assignments.{miner}"), assignment.encode_to_vec().into())
                .await
                .unwrap()
                .await
                .unwrap();
            let mut result = EvaluationResult {
                evaluation_id: format!("e-{miner}"),
                task_id: "t-cli".into(),
                miner_id: miner.into(),
                status: EvaluationStatus::Valid as i32,
                test_loss: Some(loss),
                synth_loss: Some(loss),
                artifact_sha256: miner.into(),
                ..Default::default()
            };
            result.signature = evaluator
                .sign_message(gradients_miner::identity::domains::EVALUATION, &result, |r| r.signature.clear());
            js.publish("gradients.evaluations.t-cli", result.encode_to_vec().into()).await.unwrap().await.unwrap();
        }
    });

    let result = eventually_blocking(Duration::from_secs(30), "the task finalized", || {
        let (ok, result) = cli.json(&["ledger", "task", "t-cli", "--json"]);
        if ok {
            Ok(result)
        } else {
            Err(result.to_string())
        }
    });
    assert_eq!(result["winner"], "alice");
    assert_eq!(result["entries"].as_array().unwrap().len(), 2);
    let human = String::from_utf8_lossy(&cli.run(&["ledger", "task", "t-cli"]).stdout).to_string();
    assert!(human.contains("winner alice"), "{human}");

    let (ok, entries) = cli.json(&["ledger", "miner", "alice", "--since", "2020-01-01", "--json"]);
    assert!(ok);
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert_eq!(entries[0]["score"], 3.0);
    let (ok, none) = cli.json(&["ledger", "miner", "alice", "--until", "2020-01-01", "--json"]);
    assert!(ok);
    assert!(none.as_array().unwrap().is_empty());

    let (ok, weights) = cli.json(&["ledger", "weights", "--json"]);
    assert!(ok);
    assert_eq!(weights["weights"][0]["miner_id"], "alice");
    assert_eq!(weights["weights"][0]["weight"], 1.0);

    let csv = String::from_utf8_lossy(&cli.run(&["ledger", "export", "--format", "csv"]).stdout).to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("entry_id,task_id,miner_id,kind,score"));
    let (ok, exported) = cli.json(&["ledger", "export", "--format", "json"]);
    assert!(ok);
    assert_eq!(exported.as_array().unwrap().len(), 2);

    stop_with_sigterm(&mut server);
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The customer's story: make a key (never overwritten), then every task command signs
/// with it; a key that is not there is a clear error naming the file and the keygen.
#[test]
fn customer_keygen_and_task_commands_sign_with_the_key() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli { env: sandbox_env(&nats, dir.path()) };
    let key = dir.path().join("mine.key");
    let (ok, made) = cli.json(&["customer", "keygen", "--out", path(&key), "--json"]);
    assert!(ok);
    let customer_id = made["customer_id"].as_str().unwrap().to_owned();
    assert!(gradients_intake::customer::is_customer_id(&customer_id), "{customer_id}");
    let loaded = gradients_intake::customer::CustomerKey::load(&key).expect("the key file reads back");
    assert_eq!(loaded.id(), customer_id);
    assert!(!cli.run(&["customer", "keygen", "--out", path(&key)]).status.success(), "never overwritten");

    let missing = dir.path().join("nowhere.key");
    let output = cli.run(&["task", "--key", path(&missing), "list"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nowhere.key") && stderr.contains("gradients customer keygen"), "{stderr}");
}

/// The miner operator's story: make a key, serve dispatch, register with the miner crate,
/// and see the miner in `gradients miner list`.
#[test]
fn miner_keygen_and_list_against_dispatch() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let mut env = sandbox_env(&nats, dir.path());
    env.push(("GRADIENTS__DISPATCH__HTTP_ADDR".into(), "127.0.0.1:0".into()));
    env.push(("GRADIENTS__DISPATCH__KEY_FILE".into(), dir.path().join("dispatch.key").display().to_string()));
    let cli = Cli { env };

    let key = dir.path().join("miner.key");
    let (ok, made) = cli.json(&["miner", "keygen", "--out", path(&key), "--json"]);
    assert!(ok);
    let miner_id = made["miner_id"].as_str().unwrap().to_owned();
    assert!(
        !cli.run(&["miner", "keygen", "--out", path(&key)]).status.success(),
        "an existing key is never overwritten"
    );

    let mut server =
        Serving(cli.command(&["serve", "dispatch"]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut settings = gradients_config::Settings::default();
        settings.nats.url = vec![nats.url()];
        let bus = gradients_bus::Bus::connect(&settings.nats, "cli-test").await.unwrap();
        let client = gradients_miner::MinerClient::new(
            bus,
            gradients_miner::Identity::load(&key).unwrap(),
            Duration::from_secs(2),
        );
        let capabilities = gradients_proto::v1::MinerCapabilities {
            max_model_params: 10_000_000,
            task_types: vec![gradients_proto::v1::TaskType::Instruct as i32],
            gpu: false,
            max_concurrent_tasks: 2,
        };
        eventually(Duration::from_secs(30), "dispatch registering the miner", || client.register(capabilities.clone()))
            .await;
    });

    let (ok, listed) = cli.json(&["miner", "list", "--json"]);
    assert!(ok);
    assert_eq!(listed[0]["miner_id"], miner_id.as_str());
    assert_eq!(listed[0]["task_types"], "instruct");
    let table = String::from_utf8_lossy(&cli.run(&["miner", "list"]).stdout).to_string();
    assert!(table.contains(&miner_id) && table.contains("1 live miners"), "{table}");
    stop_with_sigterm(&mut server);
}
