//! The market the benchmark measures, started for real on this machine: a private
//! `nats-server` process, intake, dispatch, the evaluator and the ledger in this process
//! (each service's own `run(settings, shutdown)`, as the end-to-end tests start them), and
//! one `gradients-trainer serve` process per strategy, each a miner with its own key.
//!
//! Services run in-process because `gradients` links them already: one process to start
//! and stop, their failures surface as errors here, and no health ports need polling.
//! Trainers are processes because only `gradients-trainer` links libtorch, and because a
//! miner is a separate party in the market.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use gradients_bus::api::call;
use gradients_bus::subjects::{self, streams};
use gradients_bus::{objects, Bus};
use gradients_config::Settings;
use gradients_intake::client::IntakeClient;
use gradients_intake::customer::CustomerKey;
use gradients_ledger::client::LedgerClient;
use gradients_proto::v1::{
    ListMinersRequest, ListMinersResponse, Submission, SubmitTaskRequest, TaskResult, TaskStatus,
};
use prost::Message as _;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a started process or service may take to answer.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long miners may take to register, or to report themselves idle after a task.
const IDLE_LIMIT: Duration = Duration::from_secs(180);
/// How long the ledger may take, after a task's deadline, to finalize it.
const FINALIZE_GRACE: Duration = Duration::from_secs(60);

/// One task as the benchmark submits it.
pub struct TaskSubmission<'a> {
    /// Makes the submission idempotent.
    pub key: &'a str,
    pub name: &'a str,
    pub task_type: gradients_proto::v1::TaskType,
    pub columns: &'a BTreeMap<String, String>,
    /// The market's rows (the report split held back), as JSONL.
    pub data: &'a [u8],
    pub hours: f64,
    /// GRPO: the task folder's reward functions, as `task.toml` gives them.
    pub reward_functions: Vec<String>,
    pub rewards: Vec<gradients_proto::v1::RewardFunction>,
}

/// Where the market's binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub nats_server: PathBuf,
    pub trainer: PathBuf,
}

impl Binaries {
    /// `nats-server`: the flag, else `.deps/py/bin/nats-server` in the current folder or a
    /// folder above this executable (a checkout's `target/debug/gradients`), else the PATH.
    /// `gradients-trainer`: the flag, else beside this executable, else the PATH.
    pub fn locate(nats_server: Option<PathBuf>, trainer: Option<PathBuf>) -> Self {
        let exe = std::env::current_exe().ok();
        let nats_server = nats_server.unwrap_or_else(|| {
            let relative = Path::new(".deps/py/bin/nats-server");
            let mut candidates = vec![relative.to_path_buf()];
            if let Some(exe) = &exe {
                candidates.extend(exe.ancestors().skip(1).map(|dir| dir.join(relative)));
            }
            candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("nats-server"))
        });
        let trainer = trainer.unwrap_or_else(|| {
            exe.as_ref()
                .and_then(|e| e.parent().map(|d| d.join("gradients-trainer")))
                .filter(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from("gradients-trainer"))
        });
        Self { nats_server, trainer }
    }
}

/// A `nats-server` with JetStream on a free port, its store under the work folder.
struct NatsProcess {
    child: Child,
    port: u16,
}

impl NatsProcess {
    async fn start(binary: &Path, work: &Path) -> anyhow::Result<Self> {
        let ports = work.join("nats-ports");
        std::fs::create_dir_all(&ports)?;
        let log = std::fs::File::create(work.join("nats.log"))?;
        let mut child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(work.join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} (install it with scripts/bootstrap.sh)", binary.display()))?;
        let started = Instant::now();
        let pid = child.id().unwrap_or_default();
        loop {
            // The server writes `<binary>_<pid>.ports` once it listens.
            let file = std::fs::read_dir(&ports)?
                .filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().ends_with(&format!("_{pid}.ports")));
            if let Some(port) = file
                .and_then(|f| std::fs::read_to_string(f.path()).ok())
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|v| v["nats"][0].as_str().and_then(|u| u.rsplit(':').next()?.parse().ok()))
            {
                return Ok(Self { child, port });
            }
            if let Some(status) = child.try_wait()? {
                bail!("nats-server exited ({status}) before listening; see {}", work.join("nats.log").display());
            }
            if started.elapsed() > START_LIMIT {
                bail!("nats-server did not listen within {START_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A base model the market trains and scores from: its folder and the name tasks give it.
#[derive(Debug, Clone)]
pub struct BaseModelDir {
    pub name: String,
    pub dir: PathBuf,
}

/// One miner: a `gradients-trainer` process running one strategy.
struct Trainer {
    strategy: String,
    child: Child,
}

/// How much each miner may train, as the trainers and intake understand it.
#[derive(Debug, Clone, Copy)]
pub struct MinerBudget {
    /// `trainer.max_steps` (0: the deadline alone).
    pub max_steps: u64,
    /// The task's `hours_to_complete`.
    pub hours: f64,
}

/// The running market.
pub struct Market {
    nats: NatsProcess,
    settings: Settings,
    shutdown: CancellationToken,
    services: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
    pub bus: Bus,
    intake: IntakeClient,
    ledger: LedgerClient,
    trainers: Vec<Trainer>,
    /// Miner id → strategy.
    pub miners: BTreeMap<String, String>,
    work: PathBuf,
    binaries: Binaries,
    base: BaseModelDir,
}

impl Market {
    /// Starts NATS, publishes the base model to `gradients-models` (intake refuses a base
    /// model nobody published), then the services; trainers start with [`Market::start_miners`].
    pub async fn start(
        work: &Path,
        binaries: Binaries,
        base: BaseModelDir,
        strategies: &[String],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(work)?;
        let nats = NatsProcess::start(&binaries.nats_server, work).await?;
        let mut settings = Settings::default();
        settings.nats.url = vec![nats.url()];
        settings.nats.retry_backoff_ms = 50;
        settings.intake.http_addr = "127.0.0.1:0".into();
        settings.dispatch.http_addr = "127.0.0.1:0".into();
        settings.ledger.http_addr = "127.0.0.1:0".into();
        settings.evaluator.http_addr = "127.0.0.1:0".into();
        settings.dispatch.key_file = work.join("dispatch.key");
        settings.evaluator.key_file = work.join("evaluator.key");
        settings.evaluator.models_dir = work.join("models");
        // Every strategy competes on every task: the cohort is all of them or nothing.
        settings.dispatch.min_miners_per_task = strategies.len();
        settings.dispatch.max_miners_per_task = strategies.len();
        settings.ledger.evaluation_grace_ms = 30_000;
        gradients_dispatch::load_or_create_identity(&settings)?;
        gradients_evaluator::load_or_create_identity(&settings)?;

        let bus = Bus::connect(&settings.nats, "gradients-bench").await?;
        gradients_bus::topology::declare(&bus, &settings.nats).await?;
        let index = gradients_evaluator::models_store::publish(&bus, &base.dir, &base.name)
            .await
            .with_context(|| format!("publishing the base model {}", base.dir.display()))?;
        settings.models.insert(base.name.clone(), index.parameter_count);
        // Trainers read base models from a folder of their own.
        let models = work.join("models");
        std::fs::create_dir_all(&models)?;
        let link = models.join(&base.name);
        if !link.exists() {
            std::os::unix::fs::symlink(std::path::absolute(&base.dir)?, &link)?;
        }

        let shutdown = CancellationToken::new();
        let with_store = |name: &str| {
            let mut s = settings.clone();
            s.store.url = format!("sqlite://{}?mode=rwc", work.join(format!("{name}.db")).display());
            s
        };
        let services = vec![
            ("intake", spawn(gradients_intake::run(with_store("intake"), shutdown.clone()))),
            ("dispatch", spawn(gradients_dispatch::run(with_store("dispatch"), shutdown.clone()))),
            ("ledger", spawn(gradients_ledger::run(with_store("ledger"), shutdown.clone()))),
            ("evaluator", spawn(gradients_evaluator::run(settings.clone(), shutdown.clone()))),
        ];
        let intake = IntakeClient::new(bus.clone(), CustomerKey::generate(), Duration::from_secs(30));
        let ledger = LedgerClient::new(bus.clone(), Duration::from_secs(10));
        Ok(Self {
            nats,
            settings,
            shutdown,
            services,
            bus,
            intake,
            ledger,
            trainers: Vec::new(),
            miners: BTreeMap::new(),
            work: work.to_path_buf(),
            binaries,
            base,
        })
    }

    /// Starts one trainer per strategy with `max_steps` (stopping any running first) and
    /// waits until every one is registered and live. Keys are kept, so a strategy stays
    /// the same miner across restarts, and made from the seed, so a run with the same seed
    /// has the same miners (each trains with `trainer.seed` mixed with its id).
    pub async fn start_miners(&mut self, strategies: &[String], max_steps: u64, seed: u64) -> anyhow::Result<()> {
        self.stop_miners().await;
        self.miners.clear();
        for strategy in strategies {
            let key_file = self.work.join(format!("miner-{strategy}.key"));
            let identity = bench_identity(&key_file, seed, strategy)?;
            self.miners.insert(identity.id(), strategy.clone());
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.work.join(format!("trainer-{strategy}.log")))?;
            let child = Command::new(&self.binaries.trainer)
                .arg("serve")
                .env("GRADIENTS__NATS__URL", self.nats.url())
                .env("GRADIENTS__NATS__RETRY_BACKOFF_MS", "50")
                .env("GRADIENTS__DISPATCH__KEY_FILE", &self.settings.dispatch.key_file)
                .env("GRADIENTS__TRAINER__KEY_FILE", &key_file)
                .env("GRADIENTS__TRAINER__MODELS_DIR", self.work.join("models"))
                .env("GRADIENTS__TRAINER__WORK_DIR", self.work.join(format!("runs-{strategy}")))
                .env("GRADIENTS__TRAINER__STRATEGY", strategy)
                .env("GRADIENTS__TRAINER__MAX_STEPS", max_steps.to_string())
                .env("GRADIENTS__TRAINER__SEED", seed.to_string())
                .env("GRADIENTS__TRAINER__SUBMIT_MARGIN_MS", "5000")
                .env("GRADIENTS__TRAINER__MIN_TRAINING_MS", "1000")
                .env("GRADIENTS__TELEMETRY__LOG_FILTER", "warn,gradients_trainer=info")
                // K trainers share the machine: one intra-op thread each instead of one per core.
                .env("OMP_NUM_THREADS", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| {
                    format!(
                        "starting {} (build it with `cargo build -p gradients-trainer`)",
                        self.binaries.trainer.display()
                    )
                })?;
            self.trainers.push(Trainer { strategy: strategy.clone(), child });
        }
        self.wait_until_idle().await
    }

    /// Waits until every miner is registered, live and, by its own heartbeat, idle: the
    /// task that follows needs all of them, and dispatch offers only to miners with room.
    async fn wait_until_idle(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let answer: Result<ListMinersResponse, _> = call(
                &self.bus.client,
                subjects::api::miners(subjects::api::MINERS_LIST),
                &ListMinersRequest {},
                Duration::from_secs(2),
            )
            .await;
            let idle = answer.map(|a| {
                a.miners.iter().filter(|m| self.miners.contains_key(&m.miner_id) && m.active_tasks == 0).count()
            });
            if idle.as_ref().is_ok_and(|&n| n == self.miners.len()) {
                return Ok(());
            }
            self.check_alive().await?;
            if started.elapsed() > IDLE_LIMIT {
                bail!("only {idle:?} of {} miners were live and idle within {IDLE_LIMIT:?}", self.miners.len());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An error naming the first trainer or service that has stopped.
    async fn check_alive(&mut self) -> anyhow::Result<()> {
        for trainer in &mut self.trainers {
            if let Some(status) = trainer.child.try_wait()? {
                bail!(
                    "the {} trainer exited ({status}); see {}",
                    trainer.strategy,
                    self.work.join(format!("trainer-{}.log", trainer.strategy)).display()
                );
            }
        }
        if let Some(i) = self.services.iter().position(|(_, handle)| handle.is_finished()) {
            // Finished, so this does not wait: it reads why (and the handle is gone, so
            // stopping the market does not poll it again).
            let (name, handle) = self.services.swap_remove(i);
            let why = match handle.await {
                Ok(Ok(())) => "without an error".to_owned(),
                Ok(Err(error)) => error,
                Err(join) => join.to_string(),
            };
            bail!("the {name} service stopped: {why}");
        }
        Ok(())
    }

    /// Submits a task to every miner, as a customer does (`gradients task submit --dir`
    /// sends a folder's reward functions the same way), and waits for the ledger's result.
    pub async fn run_task(&mut self, task: TaskSubmission<'_>) -> anyhow::Result<(String, TaskResult)> {
        let TaskSubmission { key, name, task_type, columns, data, hours, reward_functions, rewards } = task;
        self.wait_until_idle().await?;
        let dataset = retry(|| self.intake.upload_dataset(data)).await.context("uploading the data set")?;
        let request = SubmitTaskRequest {
            idempotency_key: key.to_owned(),
            name: name.to_owned(),
            r#type: task_type as i32,
            base_model: self.base.name.clone(),
            columns: columns.clone().into_iter().collect(),
            hours_to_complete: hours,
            dataset: Some(dataset),
            reward_functions,
            rewards,
        };
        let task = retry(|| self.intake.submit(&request))
            .await
            .context("intake refused the task")?
            .task
            .context("intake answered without a task")?;
        let limit = Duration::from_secs_f64(hours * 3600.0)
            + Duration::from_millis(self.settings.ledger.evaluation_grace_ms)
            + FINALIZE_GRACE;
        let started = Instant::now();
        loop {
            if let Some(result) = self.ledger.task(&task.id).await.ok().and_then(|r| r.result) {
                return Ok((task.id, result));
            }
            // A task dispatch gave up on never reaches the ledger: say why instead of waiting.
            if let Some(now) = self.intake.get(&task.id).await.ok().and_then(|r| r.task) {
                if now.status == TaskStatus::Failed as i32 || now.status == TaskStatus::Cancelled as i32 {
                    bail!("task {} ({name}) ended {:?}: {}", task.id, now.status(), now.status_reason);
                }
            }
            self.check_alive().await?;
            if started.elapsed() > limit {
                bail!("the ledger did not finalize task {} within {limit:?}", task.id);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The ONNX model `miner` submitted for `task`, read from its artifacts bucket and
    /// checked against the sha256 its signed submission declares; `None` if it submitted
    /// nothing.
    pub async fn submitted_model(&self, task_id: &str, miner_id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let stream = self.bus.jetstream.get_stream(streams::SUBMISSIONS).await?;
        let Ok(message) = stream.get_last_raw_message_by_subject(&subjects::submissions(task_id, miner_id)).await
        else {
            return Ok(None);
        };
        let submission = Submission::decode(message.payload.as_ref())?;
        let artifact = submission.artifact.context("a submission without an artifact")?;
        let store = objects::bucket(&self.bus, &artifact.bucket).await?;
        let bytes = objects::read_verified(&store, &artifact, self.settings.evaluator.max_artifact_bytes).await?;
        Ok(Some(bytes.to_vec()))
    }

    /// Stops every trainer: SIGTERM (a trainer drains), then SIGKILL after ten seconds.
    async fn stop_miners(&mut self) {
        for trainer in &mut self.trainers {
            if let Some(pid) = trainer.child.id() {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            }
        }
        for mut trainer in self.trainers.drain(..) {
            if tokio::time::timeout(Duration::from_secs(10), trainer.child.wait()).await.is_err() {
                let _ = trainer.child.kill().await;
            }
        }
    }

    /// Stops the trainers, then the services, then NATS.
    pub async fn stop(mut self) {
        self.stop_miners().await;
        self.shutdown.cancel();
        for (_, handle) in self.services.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
        let _ = self.nats.child.kill().await;
    }
}

fn spawn<E: std::fmt::Display>(
    service: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> JoinHandle<Result<(), String>> {
    tokio::spawn(async move { service.await.map_err(|e| e.to_string()) })
}

/// Calls `call` until it succeeds, for up to a minute: services that just started may not
/// answer yet.
async fn retry<T, E, F, Fut>(mut call: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if started.elapsed() > START_LIMIT => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The key at `key_file`, or the one `seed` and `strategy` make (saved there): the same
/// miner, and so the same training seed, in every run with this seed.
fn bench_identity(key_file: &Path, seed: u64, strategy: &str) -> anyhow::Result<gradients_miner::Identity> {
    use sha2::{Digest, Sha256};
    if key_file.exists() {
        return Ok(gradients_miner::Identity::load(key_file)?);
    }
    let secret = Sha256::new()
        .chain_update(b"gradients bench miner")
        .chain_update(seed.to_le_bytes())
        .chain_update(strategy.as_bytes())
        .finalize();
    let identity = gradients_miner::Identity::from_seed(secret.into());
    identity.save(key_file)?;
    Ok(identity)
}
