//! The customer's whole story with every service a process of its own, as production runs
//! them: `gradients serve intake|dispatch|evaluator|ledger|audit`, two `gradients-trainer`
//! miners (the fixed recipe as the baseline, and lr-range-test), and the customer's side
//! through the `gradients` command only: `task submit`, `task watch` (exits 0 once scored),
//! `task result --json` (the ranking, the baseline named) and `task result --download`
//! (the winning model, whose sha256 must be the one the evaluator scored). The ledger holds
//! one entry per miner, and `gradients audit verify` and `reconcile` pass.
//!
//! Every process exports its spans to a real OTLP/gRPC receiver in the test: one trace
//! follows the task from intake through dispatch, the trainers, the evaluator and the ledger
//! to the audit.
//!
//! The binaries are the workspace's own (`target/<profile>/gradients`,
//! `gradients-trainer`), built by `cargo test --workspace` / `make test`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gradients_ledger::client::LedgerClient;
use gradients_testkit::{eventually, workspace_root, NatsServer};
use gradients_trainer::model::CausalLm;
use tokio::process::{Child, Command};

#[path = "common/otlp.rs"]
mod otlp;

/// The task's whole run (training 12 steps per miner, evaluation) must fit in this.
const TASK_LIMIT: Duration = Duration::from_secs(900);

/// Child processes, killed and reaped when the test ends, whatever happens.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

/// Where cargo put the workspace's binaries: beside this test's `deps/` folder.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build the workspace's binaries (cargo build --bins)", path.display());
    path
}

/// The environment every process shares: the private NATS and the keys.
fn environment(nats: &NatsServer, dir: &Path, otlp: &otlp::OtlpReceiver) -> Vec<(String, String)> {
    let path = |name: &str| dir.join(name).display().to_string();
    vec![
        ("GRADIENTS__NATS__URL".into(), nats.url()),
        ("GRADIENTS__TELEMETRY__OTLP_ENDPOINT".into(), otlp.endpoint()),
        ("GRADIENTS__NATS__RETRY_BACKOFF_MS".into(), "50".into()),
        ("GRADIENTS__TELEMETRY__LOG_FILTER".into(), "warn".into()),
        ("GRADIENTS__DISPATCH__KEY_FILE".into(), path("dispatch.key")),
        ("GRADIENTS__EVALUATOR__KEY_FILE".into(), path("evaluator.key")),
        ("GRADIENTS__AUDIT__KEY_FILE".into(), path("audit.key")),
        ("GRADIENTS__INTAKE__CUSTOMER_KEY_FILE".into(), path("customer.key")),
    ]
}

fn command(program: &Path, env: &[(String, String)], extra: &[(&str, String)]) -> Command {
    let mut command = Command::new(program);
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command.envs(extra.iter().map(|(k, v)| (*k, v.as_str())));
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Runs `gradients ARGS` to its end; returns (success, stdout, stderr).
async fn gradients(env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let output = command(&binary("gradients"), env, &[]).args(args).output().await.expect("run gradients");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn sha256_file(path: &Path) -> String {
    gradients_model::manifest::sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_follows_its_task_to_the_downloaded_winner() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let receiver = otlp::OtlpReceiver::start().await;
    let env = environment(&nats, dir.path(), &receiver);
    for key in ["dispatch.key", "evaluator.key", "audit.key"] {
        gradients_miner::Identity::generate().save(&dir.path().join(key)).unwrap();
    }
    gradients_intake::customer::CustomerKey::generate().save(&dir.path().join("customer.key")).unwrap();

    // The base model: installed where the trainers look, published by name by the operator.
    let models = dir.path().join("models");
    let config = gradients_trainer::presets::config("tiny-1m").unwrap();
    gradients_trainer::checkpoint::save(
        &CausalLm::new(&config, tch::Device::Cpu, 1),
        &gradients_text::Tokenizer::byte_level(),
        &models.join("tiny-1m"),
    )
    .unwrap();
    let (ok, out, err) =
        gradients(&env, &["model", "publish", &models.join("tiny-1m").display().to_string(), "--name", "tiny-1m"])
            .await;
    assert!(ok, "model publish: {out}{err}");

    let strategies = ["fixed", "lr-range-test"];
    let miners: Vec<gradients_miner::Identity> =
        strategies.iter().map(|_| gradients_miner::Identity::generate()).collect();
    let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", dir.path().join(name).display());
    let port = || format!("127.0.0.1:{}", gradients_testkit::free_port());
    let mut processes = Processes(Vec::new());
    let services: [(&str, Vec<(&str, String)>); 5] = [
        ("intake", vec![("GRADIENTS__STORE__URL", sqlite("intake.db")), ("GRADIENTS__INTAKE__HTTP_ADDR", port())]),
        (
            "dispatch",
            vec![
                ("GRADIENTS__STORE__URL", sqlite("dispatch.db")),
                ("GRADIENTS__DISPATCH__HTTP_ADDR", port()),
                ("GRADIENTS__DISPATCH__MIN_MINERS_PER_TASK", "2".into()),
            ],
        ),
        (
            "evaluator",
            vec![
                ("GRADIENTS__EVALUATOR__HTTP_ADDR", port()),
                ("GRADIENTS__EVALUATOR__MODELS_DIR", dir.path().join("evaluator-models").display().to_string()),
            ],
        ),
        (
            "ledger",
            vec![
                ("GRADIENTS__STORE__URL", sqlite("ledger.db")),
                ("GRADIENTS__LEDGER__HTTP_ADDR", port()),
                ("GRADIENTS__LEDGER__BASELINE_MINERS", miners[0].id()),
            ],
        ),
        (
            "audit",
            vec![
                ("GRADIENTS__AUDIT__STORE_URL", sqlite("audit.db")),
                ("GRADIENTS__AUDIT__HTTP_ADDR", port()),
                ("GRADIENTS__AUDIT__CHECKPOINT_INTERVAL_MS", "500".into()),
            ],
        ),
    ];
    for (name, extra) in &services {
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let child =
            command(&binary("gradients"), &env, extra).args(["serve", name]).stderr(log).stdout(Stdio::null()).spawn();
        processes.0.push(child.unwrap_or_else(|e| panic!("starting {name}: {e}")));
    }
    for (i, (strategy, miner)) in strategies.iter().zip(&miners).enumerate() {
        let key = dir.path().join(format!("miner-{i}.key"));
        miner.save(&key).unwrap();
        let extra = [
            ("GRADIENTS__TRAINER__KEY_FILE", key.display().to_string()),
            ("GRADIENTS__TRAINER__MODELS_DIR", models.display().to_string()),
            ("GRADIENTS__TRAINER__WORK_DIR", dir.path().join(format!("runs-{i}")).display().to_string()),
            ("GRADIENTS__TRAINER__STRATEGY", (*strategy).to_owned()),
            ("GRADIENTS__TRAINER__DEVICE", "cpu".into()),
            ("GRADIENTS__TRAINER__MAX_STEPS", "12".into()),
            ("GRADIENTS__TRAINER__SUBMIT_MARGIN_MS", "2000".into()),
            ("GRADIENTS__TRAINER__MIN_TRAINING_MS", "1000".into()),
            // Two trainers share the machine: one libtorch thread each.
            ("OMP_NUM_THREADS", "1".into()),
        ];
        let log = std::fs::File::create(dir.path().join(format!("trainer-{i}.log"))).unwrap();
        let mut trainer = command(&binary("gradients-trainer"), &env, &extra);
        let child = trainer.arg("serve").stderr(log).stdout(Stdio::null()).spawn();
        processes.0.push(child.expect("starting a trainer"));
    }
    eventually(Duration::from_secs(60), "both trainers registered", || async {
        let (ok, out, _) = gradients(&env, &["miner", "list", "--json"]).await;
        ok && serde_json::from_str::<serde_json::Value>(&out).ok().and_then(|v| v.as_array().map(Vec::len)) == Some(2)
    })
    .await;

    // The customer: a generated task folder, submitted, watched to the end.
    let family = gradients_taskgen::family("reverse-word").unwrap();
    let folder = gradients_taskgen::write_task_dir(
        &dir.path().join("tasks"),
        family,
        gradients_taskgen::TaskKind::Instruct,
        120,
        3,
        Some("tiny-1m"),
    )
    .unwrap();
    let folder = folder.display().to_string();
    let submitted = eventually(Duration::from_secs(30), "intake accepted the task", || async {
        let (ok, out, err) = gradients(
            &env,
            &["task", "submit", "--dir", &folder, "--hours", "0.15", "--idempotency-key", "e2e", "--json"],
        )
        .await;
        if ok {
            serde_json::from_str::<serde_json::Value>(&out).map_err(|e| e.to_string())
        } else {
            Err(format!("{out}{err}"))
        }
    })
    .await;
    let task_id = submitted["id"].as_str().expect("a task id").to_owned();
    let watch = command(&binary("gradients"), &env, &[]).args(["task", "watch", &task_id, "--json"]).output();
    let watched = tokio::time::timeout(TASK_LIMIT, watch).await.expect("the task ended in time").unwrap();
    let lines = String::from_utf8_lossy(&watched.stdout).into_owned();
    assert!(watched.status.success(), "task watch: {lines}{}", String::from_utf8_lossy(&watched.stderr));
    assert!(lines.lines().last().is_some_and(|l| l.contains("\"scored\"")), "{lines}");

    // The ranking, as the customer reads it.
    let (ok, out, err) = gradients(&env, &["task", "result", &task_id, "--json"]).await;
    assert!(ok, "task result: {out}{err}");
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    let standings = result["result"]["standings"].as_array().expect("standings").clone();
    assert_eq!(standings.len(), 2, "{out}");
    assert_eq!(result["result"]["baseline_miner_id"], miners[0].id(), "the fixed-recipe miner is the baseline");
    let winner_id = result["result"]["winner_miner_id"].as_str().unwrap().to_owned();
    let winner = standings.iter().find(|s| s["miner_id"] == winner_id).expect("the winner is ranked");
    assert_eq!(winner["status"], "valid");
    assert!(result["result"]["base_model_loss"].is_number(), "{out}");

    // The ledger, asked as an auditor: one entry per miner.
    let bus = gradients_bus::Bus::connect(
        &gradients_config::NatsSettings { url: vec![nats.url()], ..Default::default() },
        "e2e-auditor",
    )
    .await
    .unwrap();
    let ledger = LedgerClient::new(bus, Duration::from_secs(10));
    let paid = ledger.task(&task_id).await.expect("the ledger's result").result.unwrap();
    let mut paid_miners: Vec<&str> = paid.entries.iter().map(|e| e.miner_id.as_str()).collect();
    paid_miners.sort();
    let mut expected: Vec<String> = miners.iter().map(|m| m.id()).collect();
    expected.sort();
    assert_eq!(paid_miners, expected, "one entry per miner");

    // The model the customer paid for, checked file by file.
    let download = dir.path().join("winner");
    let (ok, out, err) =
        gradients(&env, &["task", "result", &task_id, "--download", &download.display().to_string()]).await;
    assert!(ok, "task result --download: {out}{err}");
    assert_eq!(sha256_file(&download.join("model.onnx")), winner["artifact_sha256"].as_str().unwrap());
    assert_eq!(sha256_file(&download.join("manifest.json")), winner["manifest_sha256"].as_str().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(download.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().expect("the manifest lists the HF folder and the report");
    for path in ["model/config.json", "model/model.safetensors", "model/tokenizer.json", "report.json"] {
        let listed = files.iter().find(|f| f["path"] == path).unwrap_or_else(|| panic!("{path} listed"));
        assert_eq!(sha256_file(&download.join(path)), listed["sha256"].as_str().unwrap(), "{path}");
    }

    // The audit: the log verifies against its signed checkpoints and the rewards reconcile.
    let (ok, key, err) = gradients(&env, &["audit", "public-key"]).await;
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    eventually(Duration::from_secs(60), "the audit verifies and reconciles", || async {
        let (verified, out, err) = gradients(&env, &["audit", "verify", "--public-key", &key]).await;
        if !verified {
            return Err(format!("verify: {out}{err}"));
        }
        let (reconciled, out, err) = gradients(&env, &["audit", "reconcile", "--task", &task_id]).await;
        if reconciled {
            Ok(())
        } else {
            Err(format!("reconcile: {out}{err}"))
        }
    })
    .await;

    // One trace, exported by every service, follows the task.
    traced_through_every_service(&receiver, &task_id).await;

    // The documented Python customer (docs/examples/customer_client.py, docs/integrating.md)
    // on the same market: upload, signed submit, watch and download with nothing but
    // nats-py, protobuf, cryptography and the classes protoc makes from proto/.
    let python = python_client(dir.path());
    let winner = dir.path().join("python-winner");
    let client = tokio::process::Command::new(&python.interpreter)
        .arg(workspace_root().join("docs/examples/customer_client.py"))
        .args(["--nats", &nats.url(), "--type", "instruct", "--base-model", "tiny-1m", "--hours", "0.15"])
        .args(["--idempotency-key", "e2e-python"])
        .arg("--key")
        .arg(dir.path().join("customer.key"))
        .arg("--data")
        .arg(Path::new(&folder).join("data.jsonl"))
        .arg("--out")
        .arg(&winner)
        .env("PYTHONPATH", &python.generated)
        .kill_on_drop(true)
        .output();
    let ran = tokio::time::timeout(TASK_LIMIT, client).await.expect("the Python customer finished in time").unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    assert!(ran.status.success(), "the Python customer: {said}");
    assert!(said.contains("scored") && said.contains("winner "), "{said}");
    // The client checked each file against the sha256 intake named; the manifest it
    // downloaded names the ONNX file the evaluator scored.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(winner.join("manifest.json")).expect("the manifest downloaded")).unwrap();
    let listed = manifest["files"].as_array().expect("files").iter().find(|f| f["path"] == "model/config.json");
    assert_eq!(sha256_file(&winner.join("model/config.json")), listed.unwrap()["sha256"].as_str().unwrap());
    assert!(winner.join("model.onnx").metadata().unwrap().len() > 0);
    drop(processes);
}

/// Waits until every service has exported a span of the trace intake started for `task_id`.
async fn traced_through_every_service(receiver: &otlp::OtlpReceiver, task_id: &str) {
    const SERVICES: [&str; 6] = ["intake", "dispatch", "trainer", "evaluator", "ledger", "audit"];
    eventually(Duration::from_secs(60), "one trace through every service", || async {
        let spans = receiver.spans();
        let trace_id = spans
            .iter()
            .find(|s| s.service == "intake" && s.attribute("task_id") == Some(task_id))
            .map(|s| s.trace_id.clone())
            .ok_or_else(|| format!("no intake span names the task among {} spans", spans.len()))?;
        let missing: Vec<&str> = SERVICES
            .into_iter()
            .filter(|service| !spans.iter().any(|s| s.service == *service && s.trace_id == trace_id))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            let mut seen: Vec<String> =
                spans.iter().filter(|s| s.trace_id == trace_id).map(|s| format!("{}:{}", s.service, s.name)).collect();
            seen.sort();
            seen.dedup();
            Err(format!("trace {trace_id}: no span from {missing:?}; seen {seen:?}"))
        }
    })
    .await;
}

/// The Python customer's interpreter (a pinned venv, `scripts/python-env.sh client`) and the
/// folder of the classes protoc generated from `proto/gradients/v1`.
struct PythonClient {
    interpreter: PathBuf,
    generated: PathBuf,
}

fn python_client(dir: &Path) -> PythonClient {
    let root = workspace_root();
    let env =
        std::process::Command::new("bash").arg(root.join("scripts/python-env.sh")).arg("client").output().unwrap();
    assert!(env.status.success(), "python-env.sh client: {}", String::from_utf8_lossy(&env.stderr));
    let interpreter = PathBuf::from(String::from_utf8(env.stdout).unwrap().trim());
    let generated = dir.join("python");
    std::fs::create_dir_all(&generated).unwrap();
    let protos: Vec<PathBuf> = std::fs::read_dir(root.join("proto/gradients/v1"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "proto"))
        .collect();
    let protoc = std::process::Command::new(&interpreter)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(root.join("proto"))
        .arg(format!("--python_out={}", generated.display()))
        .args(&protos)
        .output()
        .unwrap();
    assert!(protoc.status.success(), "protoc: {}", String::from_utf8_lossy(&protoc.stderr));
    PythonClient { interpreter, generated }
}
