//! The `gradients` binary end to end: `serve intake` as a real process against a private
//! nats-server and a SQLite file, driven by `task submit|get|list|cancel`, then SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gradients_testkit::{workspace_root, NatsServer};
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
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let output = cli.run(&["task", "get", "nothing-yet", "--json"]);
        if String::from_utf8_lossy(&output.stdout).contains("TASK_NOT_FOUND") {
            return;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("gradients serve intake exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("intake did not become ready");
}

/// The README's story: serve intake, submit a task folder, see it accepted and split, read
/// it back, list it, see a broken folder refused with row and column, cancel, and stop
/// the server with SIGTERM (a clean exit).
#[test]
fn serve_submit_get_list_cancel_and_stop() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        env: vec![
            ("GRADIENTS__NATS__URL".into(), nats.url()),
            ("GRADIENTS__STORE__URL".into(), format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display())),
            ("GRADIENTS__INTAKE__HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("GRADIENTS__TELEMETRY__LOG_FILTER".into(), "warn".into()),
        ],
    };
    let mut server =
        Serving(cli.command(&["serve", "intake"]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap());
    wait_until_ready(&cli, &mut server);

    let capitals = examples().join("capitals");
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

    let status = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "intake did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "SIGTERM drains and exits cleanly: {exit}");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
