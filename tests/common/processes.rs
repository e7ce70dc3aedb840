//! The market as production runs it, for the fault tests: every service a process of its
//! own (`gradients serve <service>`, the workspace's binary) on PostgreSQL databases of its
//! own, which a test kills (SIGKILL) and starts again at will; load miners in the test's
//! process that speak the whole miner protocol (registration, heartbeats, signed offers,
//! granted train data, signed submissions of a real ONNX model exported once from the base
//! architecture) without training; customers that submit through intake's client and retry
//! with the same idempotency key, as a customer does when intake does not answer.
//!
//! [`ProcessMarket::assert_whole`] states what must hold after any fault: every accepted
//! task scored in intake and finalized in the ledger on every miner's evaluation, one
//! evaluation per (task, miner, kind), one ledger entry per (task, miner, kind), nothing
//! dead-lettered, and the audit log holding each message of every audited stream exactly
//! once, verifying against its signed checkpoints.

// Each fault test uses part of the market.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use gradients_audit::client::AuditClient;
use gradients_audit::document::RecordKind;
use gradients_audit::protocol::RecordsRequest;
use gradients_bus::subjects::{self, streams};
use gradients_bus::Bus;
use gradients_config::NatsSettings;
use gradients_intake::client::IntakeClient;
use gradients_intake::customer::CustomerKey;
use gradients_ledger::client::LedgerClient;
use gradients_miner::Identity;
use gradients_proto::v1::{EvaluationResult, LedgerEntry, SubmitTaskRequest, TaskStatus, TaskType};
use gradients_testkit::{eventually, free_port, http_get, stream_messages, workspace_root, Backend, ScratchDb};
use gradients_trainer::model::CausalLm;
use prost::Message;
use tokio::process::{Child, Command};

use crate::load_miners::LoadMiners;

pub use crate::load_miners::BASE_MODEL;
/// Miners per task: both must be evaluated for a task to be finalized `all_evaluated`.
pub const MINERS: usize = 2;
/// How long the assertions wait for the market to settle after the last fault.
const SETTLE: Duration = Duration::from_secs(180);

/// A service of the market, as `gradients serve` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Intake,
    Dispatch,
    Evaluator,
    Ledger,
    Audit,
}

impl Service {
    /// Every service, in the order they are started.
    pub const ALL: [Service; 5] =
        [Service::Intake, Service::Dispatch, Service::Evaluator, Service::Ledger, Service::Audit];

    /// Its name on the command line and in settings.
    pub fn name(self) -> &'static str {
        match self {
            Service::Intake => "intake",
            Service::Dispatch => "dispatch",
            Service::Evaluator => "evaluator",
            Service::Ledger => "ledger",
            Service::Audit => "audit",
        }
    }
}

/// One running (or killed) process of a service.
struct Instance {
    service: Service,
    replica: usize,
    child: Option<Child>,
    http_port: u16,
}

/// The market's processes, databases, keys and folder; everything is killed and dropped
/// with it (processes first, then the databases).
pub struct ProcessMarket {
    instances: Vec<Instance>,
    miners: Option<LoadMiners>,
    databases: BTreeMap<Service, ScratchDb>,
    env: Vec<(String, String)>,
    /// Extra environment per service (a test's knobs: a short ack wait...).
    tweaks: BTreeMap<Service, Vec<(String, String)>>,
    nats: NatsSettings,
    bus: Option<Bus>,
    customer: CustomerKey,
    dir: tempfile::TempDir,
}

impl ProcessMarket {
    /// Keys, databases and settings for a market on the NATS servers at `urls` (streams at
    /// `replicas`); no process runs yet and nothing connects to NATS.
    pub async fn new(urls: Vec<String>, replicas: usize) -> Self {
        let dir = tempfile::Builder::new().prefix("gradients-faults-").tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        for key in ["dispatch.key", "evaluator.key", "audit.key"] {
            Identity::generate().save(&dir.path().join(key)).unwrap();
        }
        let env = vec![
            ("GRADIENTS__NATS__URL".to_owned(), urls.join(",")),
            ("GRADIENTS__NATS__REPLICAS".to_owned(), replicas.to_string()),
            // nats.retry_backoff_ms stays at its default (500 ms doubling, 7.5 s over five
            // deliveries): after a mass termination each pooled connection fails once, and
            // at 100 ms five deliveries of one message can all meet dead connections.
            // What a killed process held comes back after the ack wait: 8 s, not 30, so a
            // test waits less; still longer than dispatch's 5 s offer timeout, so offers a
            // killed dispatch left unanswered are stale when their task comes back.
            ("GRADIENTS__NATS__ACK_WAIT_MS".to_owned(), "8000".to_owned()),
            // What a failing run's logs must tell: each placement, evaluation and payment.
            (
                "GRADIENTS__TELEMETRY__LOG_FILTER".to_owned(),
                "warn,gradients_dispatch=info,gradients_evaluator=info,gradients_ledger=info".to_owned(),
            ),
            ("GRADIENTS__DISPATCH__KEY_FILE".to_owned(), path("dispatch.key")),
            ("GRADIENTS__DISPATCH__MIN_MINERS_PER_TASK".to_owned(), MINERS.to_string()),
            ("GRADIENTS__DISPATCH__MAX_MINERS_PER_TASK".to_owned(), MINERS.to_string()),
            ("GRADIENTS__EVALUATOR__KEY_FILE".to_owned(), path("evaluator.key")),
            // Only the store has the base model: the evaluator fetches it by name.
            ("GRADIENTS__EVALUATOR__MODELS_DIR".to_owned(), path("evaluator-models")),
            ("GRADIENTS__AUDIT__KEY_FILE".to_owned(), path("audit.key")),
            ("GRADIENTS__AUDIT__CHECKPOINT_INTERVAL_MS".to_owned(), "500".to_owned()),
        ];
        let mut databases = BTreeMap::new();
        for service in [Service::Intake, Service::Dispatch, Service::Ledger, Service::Audit] {
            databases.insert(service, ScratchDb::new(Backend::Postgres).await.expect("a PostgreSQL database"));
        }
        let nats = NatsSettings { url: urls, replicas, ..NatsSettings::default() };
        Self {
            instances: Vec::new(),
            miners: None,
            databases,
            env,
            tweaks: BTreeMap::new(),
            nats,
            bus: None,
            customer: CustomerKey::generate(),
            dir,
        }
    }

    /// Adds `KEY=value` to the environment of `service`'s processes started from now on.
    pub fn tweak(&mut self, service: Service, key: &str, value: &str) {
        self.tweaks.entry(service).or_default().push((key.to_owned(), value.to_owned()));
    }

    /// The test's own connection (made on first use).
    pub async fn bus(&mut self) -> Bus {
        if self.bus.is_none() {
            let bus = eventually(Duration::from_secs(60), "the test's NATS connection", || {
                Bus::connect(&self.nats, "faults-test")
            })
            .await;
            self.bus = Some(bus);
        }
        self.bus.clone().unwrap()
    }

    /// The PostgreSQL database of `service` (intake, dispatch, ledger, audit).
    pub fn database(&self, service: Service) -> &ScratchDb {
        &self.databases[&service]
    }

    /// Starts replica `replica` of `service` (again, if it was killed).
    pub fn start(&mut self, service: Service, replica: usize) {
        let log_path = self.dir.path().join(format!("{}-{replica}.log", service.name()));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let position = self.instances.iter().position(|i| i.service == service && i.replica == replica);
        let http_port = match position {
            Some(at) => self.instances[at].http_port,
            None => free_port(),
        };
        let mut command = Command::new(binary("gradients"));
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let section = service.name().to_uppercase();
        command.env(format!("GRADIENTS__{section}__HTTP_ADDR"), format!("127.0.0.1:{http_port}"));
        match (service, self.databases.get(&service)) {
            (Service::Audit, Some(db)) => command.env("GRADIENTS__AUDIT__STORE_URL", db.url()),
            (_, Some(db)) => command.env("GRADIENTS__STORE__URL", db.url()),
            (_, None) => &mut command,
        };
        for (key, value) in self.tweaks.get(&service).into_iter().flatten() {
            command.env(key, value);
        }
        command.args(["serve", service.name()]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = command.kill_on_drop(true).spawn().unwrap_or_else(|e| panic!("starting {}: {e}", service.name()));
        match position {
            Some(at) => self.instances[at].child = Some(child),
            None => self.instances.push(Instance { service, replica, child: Some(child), http_port }),
        }
    }

    /// Starts replica 0 of every service.
    pub fn start_all(&mut self) {
        for service in Service::ALL {
            self.start(service, 0);
        }
    }

    /// Kills every replica of `services` at once with SIGKILL, as a crash or an OOM kill
    /// would (nothing drains, nothing is flushed), and reaps them.
    pub async fn kill(&mut self, services: &[Service]) {
        eprintln!("SIGKILL {services:?}");
        let chosen = self.instances.iter_mut().filter(|i| services.contains(&i.service));
        let mut killed = Vec::new();
        for instance in chosen {
            if let Some(mut child) = instance.child.take() {
                child.start_kill().expect("SIGKILL");
                killed.push(child);
            }
        }
        for mut child in killed {
            let status = child.wait().await.expect("reaping a killed process");
            assert!(!status.success(), "a killed process reported success");
        }
    }

    /// Starts again every replica of `services` that is not running.
    pub fn restart(&mut self, services: &[Service]) {
        let stopped: Vec<(Service, usize)> = self
            .instances
            .iter()
            .filter(|i| services.contains(&i.service) && i.child.is_none())
            .map(|i| (i.service, i.replica))
            .collect();
        for (service, replica) in stopped {
            self.start(service, replica);
        }
    }

    /// `/readyz` of replica 0 of `service`: its status line.
    pub async fn readiness(&self, service: Service) -> String {
        let instance = self.instances.iter().find(|i| i.service == service && i.replica == 0).expect("started");
        http_get(instance.http_port, "/readyz").await.lines().next().unwrap_or_default().to_owned()
    }

    /// Whether every started process is still running (none exited on its own).
    pub fn all_alive(&mut self) -> Result<(), String> {
        for instance in &mut self.instances {
            if let Some(child) = &mut instance.child {
                if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                    return Err(format!("{} {} exited: {status}", instance.service.name(), instance.replica));
                }
            }
        }
        Ok(())
    }

    /// What replica 0 of `service` has logged so far.
    pub fn log(&self, service: Service) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}-0.log", service.name()))).unwrap_or_default()
    }

    /// Waits until every running process answers ready on `/readyz`.
    pub async fn wait_ready(&self) {
        for instance in self.instances.iter().filter(|i| i.child.is_some()) {
            let what = format!("{} {} ready", instance.service.name(), instance.replica);
            eventually(Duration::from_secs(60), &what, || async {
                let answer = http_get(instance.http_port, "/readyz").await;
                answer.starts_with("HTTP/1.1 200").then_some(()).ok_or(answer)
            })
            .await;
        }
    }

    /// Waits until dispatch has an offer out (sent, its answer not yet recorded): the
    /// moment a dispatch crash loses the most.
    pub async fn wait_for_offer_out(&self) {
        let db = sea_orm::Database::connect(self.database(Service::Dispatch).url()).await.unwrap();
        let statement = sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT 1 FROM dispatch_offers WHERE outcome = 'sent' LIMIT 1",
        );
        eventually(Duration::from_secs(10), "an offer out", || async {
            use sea_orm::ConnectionTrait;
            db.query_one_raw(statement.clone()).await.map_err(|e| e.to_string())?.ok_or("none out".to_owned())
        })
        .await;
        let _ = db.close().await;
    }

    /// Publishes the base model (a fresh initialisation of the preset, saved as the trainer
    /// saves it) in `gradients-models`, as an operator does before customers name it.
    pub async fn publish_base_model(&mut self) {
        let dir = self.dir.path().join("models").join(BASE_MODEL);
        let config = gradients_trainer::presets::config(BASE_MODEL).unwrap();
        let tokenizer = gradients_text::Tokenizer::byte_level();
        gradients_trainer::checkpoint::save(&CausalLm::new(&config, tch::Device::Cpu, 1), &tokenizer, &dir).unwrap();
        let bus = self.bus().await;
        let settings = gradients_config::Settings { nats: self.nats.clone(), ..Default::default() };
        eventually(Duration::from_secs(60), "the topology declared", || {
            gradients_bus::topology::declare(&bus, &settings.nats)
        })
        .await;
        eventually(Duration::from_secs(60), "the base model published", || {
            gradients_evaluator::models_store::publish(&bus, &dir, BASE_MODEL)
        })
        .await;
    }

    /// Starts [`MINERS`] load miners and waits until dispatch lists them live.
    pub async fn start_miners(&mut self) {
        let bus = self.bus().await;
        let dispatch_key = Identity::load(&self.dir.path().join("dispatch.key")).unwrap().public_key();
        let miners = LoadMiners::start(bus.clone(), dispatch_key.to_vec(), MINERS);
        eventually(Duration::from_secs(60), "the load miners live in dispatch", || async {
            let answer: Result<gradients_proto::v1::ListMinersResponse, _> = gradients_bus::api::call(
                &bus.client,
                subjects::api::miners(subjects::api::MINERS_LIST),
                &gradients_proto::v1::ListMinersRequest {},
                Duration::from_secs(2),
            )
            .await;
            let live = answer.map_err(|e| e.to_string())?.miners.len();
            if live == MINERS {
                Ok(())
            } else {
                Err(format!("{live} live"))
            }
        })
        .await;
        self.miners = Some(miners);
    }

    /// Submits a task as a customer does: upload, then submit with idempotency key `key`,
    /// both retried while intake does not answer (the key makes a repeat the same task).
    /// Returns the task id once intake has accepted it.
    pub async fn submit(&mut self, key: &str) -> String {
        let bus = self.bus().await;
        let intake = IntakeClient::new(bus, self.customer.clone(), Duration::from_secs(5));
        let data = std::fs::read(workspace_root().join("examples/tasks/capitals/data.jsonl")).unwrap();
        let what = format!("intake accepting task {key}");
        let response = eventually(Duration::from_secs(120), &what, || async {
            let dataset = intake.upload_dataset(&data).await.map_err(|e| e.to_string())?;
            let request = SubmitTaskRequest {
                idempotency_key: key.to_owned(),
                name: format!("faults-{key}"),
                r#type: TaskType::Instruct as i32,
                base_model: BASE_MODEL.to_owned(),
                columns: [
                    ("instruction".to_owned(), "question".to_owned()),
                    ("output".to_owned(), "answer".to_owned()),
                ]
                .into(),
                hours_to_complete: 0.25,
                dataset: Some(dataset),
                ..Default::default()
            };
            intake.submit(&request).await.map_err(|e| e.to_string())
        })
        .await;
        let id = response.task.expect("the accepted task").id;
        eprintln!("task {key} accepted: {id}");
        id
    }

    /// The whole-system invariants after faults, for the tasks intake accepted: see the
    /// module's documentation.
    pub async fn assert_whole(&mut self, tasks: &[String]) {
        let bus = self.bus().await;
        let intake = IntakeClient::new(bus.clone(), self.customer.clone(), Duration::from_secs(5));
        let ledger = LedgerClient::new(bus.clone(), Duration::from_secs(5));
        let started = std::time::Instant::now();
        for task in tasks {
            let result = loop {
                match ledger.task(task).await.map(|answer| answer.result) {
                    Ok(Some(result)) => break result,
                    _ if started.elapsed() > SETTLE => {
                        eprintln!("{}", diagnosis(&bus, task).await);
                        panic!("the ledger did not finalize {task} within {SETTLE:?}");
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            assert_eq!(result.finalized_because, "all_evaluated", "{task}: every miner evaluated, none lost");
            let paid: BTreeSet<&str> = result.entries.iter().map(|e| e.miner_id.as_str()).collect();
            assert_eq!((result.entries.len(), paid.len()), (MINERS, MINERS), "{task}: one entry per miner");
            eventually(Duration::from_secs(60), &format!("{task} scored in intake"), || async {
                let status = intake.get(task).await.map_err(|e| e.to_string())?.task.unwrap_or_default().status;
                (status == TaskStatus::Scored as i32).then_some(()).ok_or(format!("status {status}"))
            })
            .await;
        }

        // Nothing doubled on the bus: one evaluation per (task, miner, kind), one ledger
        // entry per (task, miner, kind), every one of them for an accepted task.
        let evaluations = stream_messages(&bus.jetstream, streams::EVALUATIONS, subjects::EVALUATIONS_ALL).await;
        let mut evaluated: BTreeMap<(String, String, i32), usize> = BTreeMap::new();
        for message in &evaluations {
            let evaluation = EvaluationResult::decode(message.payload.as_ref()).expect("an evaluation");
            *evaluated.entry((evaluation.task_id, evaluation.miner_id, evaluation.kind)).or_default() += 1;
        }
        let doubled: Vec<_> = evaluated.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "evaluations published more than once: {doubled:?}");
        let entries = stream_messages(&bus.jetstream, streams::LEDGER, subjects::LEDGER_ENTRIES).await;
        let mut paid: BTreeMap<(String, String, i32), usize> = BTreeMap::new();
        for message in &entries {
            let entry = LedgerEntry::decode(message.payload.as_ref()).expect("a ledger entry");
            *paid.entry((entry.task_id, entry.miner_id, entry.kind)).or_default() += 1;
        }
        let doubled: Vec<_> = paid.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "ledger entries published more than once: {doubled:?}");
        let accepted: BTreeSet<&str> = tasks.iter().map(String::as_str).collect();
        let paid_tasks: BTreeSet<&str> = paid.keys().map(|(task, _, _)| task.as_str()).collect();
        assert_eq!(paid_tasks, accepted, "the ledger paid exactly the accepted tasks");
        assert_eq!(paid.len(), tasks.len() * MINERS, "one entry per (task, miner)");
        let dead = stream_messages(&bus.jetstream, streams::DEAD_LETTERS, streams::DEAD_LETTERS_SUBJECTS).await;
        let reasons: Vec<String> = dead
            .iter()
            .map(|m| {
                format!(
                    "{}: {:?}",
                    m.subject,
                    m.headers.as_ref().and_then(|h| h.get(gradients_bus::worker::DEAD_LETTER_REASON))
                )
            })
            .collect();
        assert!(reasons.is_empty(), "messages given up on: {reasons:?}");

        self.assert_audit_whole(&bus).await;
    }

    /// The audit holds each message of every audited stream exactly once (no gap, no
    /// alarm, no repeat) and its log verifies against its signed checkpoints.
    async fn assert_audit_whole(&self, bus: &Bus) {
        let audit = AuditClient::new(bus.client.clone(), Duration::from_secs(10));
        let public_key = Identity::load(&self.dir.path().join("audit.key")).unwrap().public_key();
        eventually(SETTLE, "the audit holding every message once, verified", || async {
            let mut held: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            let mut from_leaf = 0;
            loop {
                let page = audit
                    .records(&RecordsRequest { from_leaf, since_ms: 0, limit: 5000 })
                    .await
                    .map_err(|e| e.to_string())?;
                for stored in page.records {
                    let record = stored.record;
                    if record.kind != RecordKind::Message {
                        return Err(format!("alarm record {:?} in {}: {}", record.kind, record.stream, record.note));
                    }
                    held.entry(record.stream).or_default().push(record.first_sequence);
                }
                match page.next_leaf {
                    Some(next) => from_leaf = next,
                    None => break,
                }
            }
            for (stream, _, _) in streams::AUDITED {
                let mut info = bus.jetstream.get_stream(stream).await.map_err(|e| e.to_string())?;
                let last = info.info().await.map_err(|e| e.to_string())?.state.last_sequence;
                let sequences = held.remove(stream).unwrap_or_default();
                let expected: Vec<u64> = (1..=last).collect();
                if sequences != expected {
                    let unique: BTreeSet<&u64> = sequences.iter().collect();
                    if unique.len() != sequences.len() {
                        // A repeat never heals: fail at once.
                        panic!("the audit recorded a message of {stream} twice: {sequences:?}");
                    }
                    return Err(format!("{stream}: {} of {last} captured", sequences.len()));
                }
            }
            let report = gradients_audit::verify::verify_log(&audit, public_key).await.map_err(|e| e.to_string())?;
            if report.alarms != 0 {
                return Err(format!("{} alarms", report.alarms));
            }
            Ok(())
        })
        .await;
    }

    /// The tail of every process's log, for a failing test's output.
    fn print_logs(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                eprintln!("--- {} (last 20 lines)\n{tail}", path.display());
            }
        }
    }
}

impl Drop for ProcessMarket {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
            // The whole folder (every log, the keys) stays for whoever reads the failure.
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("the market's folder is kept at {}", kept.display());
        }
        if let Some(miners) = self.miners.take() {
            miners.stop();
        }
        for instance in &mut self.instances {
            if let Some(child) = &mut instance.child {
                let _ = child.start_kill();
            }
        }
    }
}

/// Where a task stands on the bus, and what every durable consumer still holds: what a
/// failing test prints before it panics.
async fn diagnosis(bus: &Bus, task: &str) -> String {
    let mut lines = vec![format!("where {task} stands:")];
    let subjects = [
        (streams::TASKS, subjects::task_status(task)),
        (streams::SUBMISSIONS, subjects::submissions_of_task(task)),
        (streams::EVALUATIONS, subjects::evaluations(task)),
    ];
    for (stream, subject) in subjects {
        let messages = stream_messages(&bus.jetstream, stream, &subject).await;
        lines.push(format!("  {subject}: {} messages", messages.len()));
        for message in messages.iter().filter(|m| m.subject.starts_with("gradients.evaluations")) {
            if let Ok(evaluation) = EvaluationResult::decode(message.payload.as_ref()) {
                let (miner, kind, status) = (evaluation.miner_id, evaluation.kind, evaluation.status);
                lines.push(format!("    evaluation of {miner:?} kind {kind} status {status}"));
            }
        }
    }
    for (stream, _, _) in streams::AUDITED {
        let Ok(stream) = bus.jetstream.get_stream(stream).await else { continue };
        let mut consumers = stream.consumers();
        while let Some(Ok(info)) = futures::StreamExt::next(&mut consumers).await {
            lines.push(format!(
                "  consumer {}: {} pending, {} awaiting ack, {} redelivered",
                info.name, info.num_pending, info.num_ack_pending, info.num_redelivered
            ));
        }
    }
    lines.join("\n")
}

/// Where cargo put the workspace's binaries: beside this test's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build the workspace's binaries (cargo build --bins)", path.display());
    path
}
