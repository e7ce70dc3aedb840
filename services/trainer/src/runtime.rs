//! The trainer as a miner: register, heartbeat, answer offers by policy, and for each
//! signed assignment fetch the granted rows, train until the deadline, export and submit.
//!
//! Training is CPU/GPU-bound and synchronous, so each job runs on a blocking thread;
//! everything that talks to NATS stays on the async runtime. An assignment redelivered
//! after a crash is recognised by its id and not trained twice in one process. The
//! process runs in the services' lifecycle ([`gradients_bus::lifecycle`]): no detached
//! task, a bounded stop, and jobs cancelled on shutdown.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gradients_bus::lifecycle::{Lifecycle, LoopPanicked};
use gradients_config::Settings;
use gradients_data::TaskType;
use gradients_miner::{AssignmentLease, Decision, Identity, MinerClient, OfferHandler};
use gradients_proto::v1::{Assignment, MinerCapabilities, Offer, TaskType as WireTaskType, Timestamp};
use gradients_reward::RewardSet;
use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::job::{self, Job};
use crate::strategy::{Budget, StrategyKind};
use crate::train::TrainError;

/// The trainer's name in metrics, logs and (as `gradients-trainer`) its NATS connection.
pub const SERVICE_NAME: &str = "trainer";

/// The task types this trainer can learn from (GRPO with the reward functions the task
/// names, [`crate::grpo`]).
const TASK_TYPES: [WireTaskType; 4] =
    [WireTaskType::Instruct, WireTaskType::Chat, WireTaskType::Dpo, WireTaskType::Grpo];

/// Why the miner could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] gradients_bus::BusError),
    #[error(transparent)]
    Telemetry(#[from] gradients_telemetry::TelemetryError),
    #[error(transparent)]
    Panicked(#[from] LoopPanicked),
    #[error(transparent)]
    Miner(#[from] gradients_miner::MinerError),
    #[error("miner key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
}

/// Accepts what fits: a supported type, a base model it has, capacity left, and enough
/// time before the deadline to train.
struct OfferPolicy {
    settings: gradients_config::TrainerSettings,
    active: Arc<AtomicU32>,
}

impl OfferPolicy {
    fn decide_now(&self, offer: &Offer) -> Decision {
        let decline = |reason: String| Decision::Decline { reason };
        if !TASK_TYPES.iter().any(|t| *t as i32 == offer.r#type) {
            return decline(format!("task type {} is not trained here", offer.r#type));
        }
        if !self.settings.models_dir.join(&offer.base_model).join(gradients_model::files::CONFIG).is_file() {
            return decline(format!("base model {} is not installed", offer.base_model));
        }
        if self.active.load(Ordering::SeqCst) >= self.settings.max_concurrent_tasks {
            return decline("at capacity".into());
        }
        let training = seconds_until(offer.deadline.as_ref()) - self.settings.submit_margin_ms as f64 / 1000.0;
        if training * 1000.0 < self.settings.min_training_ms as f64 {
            return decline(format!("{training:.0}s before the deadline is too little to train"));
        }
        Decision::Accept { estimated_seconds: training }
    }
}

impl OfferHandler for OfferPolicy {
    async fn decide(&self, offer: &Offer) -> Decision {
        self.decide_now(offer)
    }
}

/// The seed this miner trains with: `trainer.seed` mixed with the miner's id, so a run is
/// reproducible from the two, and two miners left at one setting never train byte-identical
/// models (the evaluator refuses the later one as a copy).
fn miner_seed(seed: u64, miner_id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(seed.to_le_bytes()).chain_update(miner_id.as_bytes()).finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("a sha256 has 8 bytes"))
}

/// Seconds from now to `at` (negative when past; 0 when absent).
fn seconds_until(at: Option<&Timestamp>) -> f64 {
    let now = Timestamp::now().unix_ms;
    at.map_or(0.0, |t| (t.unix_ms - now) as f64 / 1000.0)
}

fn load_or_create_key(path: &std::path::Path) -> Result<Identity, RuntimeError> {
    Identity::load_or_create(path).map_err(|e| RuntimeError::Key { path: path.to_owned(), reason: e.to_string() })
}

/// Dispatch's public key: from `trainer.dispatch_public_key`, else dispatch's key file.
fn dispatch_key(settings: &Settings) -> Result<Vec<u8>, RuntimeError> {
    let configured = &settings.trainer.dispatch_public_key;
    if !configured.is_empty() {
        return hex::decode(configured).map_err(|e| RuntimeError::Config(format!("trainer.dispatch_public_key: {e}")));
    }
    let path = &settings.dispatch.key_file;
    Identity::load(path).map(|i| i.public_key().to_vec()).map_err(|e| {
        RuntimeError::Config(format!(
            "trainer.dispatch_public_key is empty and dispatch's key {} cannot be read: {e}",
            path.display()
        ))
    })
}

/// How long the trainer's loops, jobs included, may take to stop after shutdown. A job
/// stops before its next optimizer step, so this bounds one step, the hand-back of its
/// assignment and a submission already under way.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// Runs the miner until `shutdown`, in the lifecycle every service shares: heartbeats,
/// offers and assignments are loops stopped together; a job in progress is cancelled
/// between two optimizer steps and its assignment handed back (delivered again to this
/// miner's next start), never submitted half-trained; the whole stop takes at most
/// [`DRAIN_LIMIT`].
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), RuntimeError> {
    let trainer = settings.trainer.clone();
    let strategy: StrategyKind = clap::ValueEnum::from_str(&trainer.strategy, true)
        .map_err(|_| RuntimeError::Config(format!("trainer.strategy = {:?} is not a strategy", trainer.strategy)))?;
    let device = crate::device::choose(&trainer.device);
    let dispatch_key = dispatch_key(&settings)?;
    let identity = load_or_create_key(&trainer.key_file)?;
    // Replies to this miner come under its own inbox prefix, the only one its NATS user may
    // read under the deploy permissions (deploy/nats), unless configured otherwise.
    let mut nats = settings.nats.clone();
    nats.inbox_prefix.get_or_insert_with(|| format!("_INBOX_{}", identity.id()));
    // A miner's NATS user may not declare the market's streams: dispatch does.
    let lifecycle = Lifecycle::new(SERVICE_NAME, &nats).without_topology().drain_limit(DRAIN_LIMIT);
    let Some(mut running) = lifecycle.start::<RuntimeError>(&shutdown).await? else { return Ok(()) };
    let client = MinerClient::new(running.bus.clone(), identity, Duration::from_secs(10))
        .with_assignment_ack_wait(settings.nats.ack_wait());
    let capabilities = MinerCapabilities {
        max_model_params: trainer.max_model_params,
        task_types: TASK_TYPES.iter().map(|t| *t as i32).collect(),
        gpu: device.is_cuda(),
        max_concurrent_tasks: trainer.max_concurrent_tasks,
    };
    // Dispatch may start after us: keep trying until it answers or we are stopped.
    let registered = loop {
        match client.register(capabilities.clone()).await {
            Ok(response) => break response,
            Err(e) => {
                tracing::warn!(error = %e, "registration failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let miner_id = client.miner_id();
    tracing::info!(%miner_id, strategy = strategy.as_str(), ?device, "trainer registered");

    let active = Arc::new(AtomicU32::new(0));
    {
        let beat_every = Duration::from_millis(registered.heartbeat_ttl_ms / 3).max(Duration::from_millis(100));
        let (client, active) = (client.clone(), active.clone());
        running.spawn_until_stopped(|stop| async move {
            client.heartbeat_loop(beat_every, move || active.load(Ordering::SeqCst), stop).await
        });
    }
    {
        let (client, stop) = (client.clone(), running.stop_token());
        let policy = OfferPolicy { settings: trainer.clone(), active: active.clone() };
        running.spawn(async move { Ok(client.serve_offers(policy, stop).await?) });
    }
    {
        let assignments = Assignments {
            client: client.clone(),
            dispatch_key,
            trainer,
            strategy,
            device,
            active,
            jobs: JoinSet::new(),
        };
        let stop = running.stop_token();
        running.spawn(async move {
            assignments.take_until(stop).await;
            Ok(())
        });
    }
    running.ready();
    let outcome = running.run().await;
    if let Err(e) = client.deregister().await {
        tracing::warn!(error = %e, "could not deregister");
    }
    outcome
}

/// Takes assignments and trains each in a job of its own.
struct Assignments {
    client: MinerClient,
    dispatch_key: Vec<u8>,
    trainer: gradients_config::TrainerSettings,
    strategy: StrategyKind,
    device: tch::Device,
    active: Arc<AtomicU32>,
    jobs: JoinSet<()>,
}

impl Assignments {
    /// Takes assignments until `stop`, then cancels the jobs in progress and waits for them
    /// to hand their assignments back. The lifecycle bounds that wait: a job still inside
    /// one long step is dropped with its lease unsettled, which JetStream redelivers after
    /// the ack wait.
    async fn take_until(mut self, stop: CancellationToken) {
        // Cancelled with `stop`: every job sees it before its next optimizer step.
        let cancel_jobs = stop.child_token();
        let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
        while !stop.is_cancelled() {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                next = self.client.next_assignment(&self.dispatch_key, Duration::from_secs(2)) => next,
                // Reaps finished jobs as they end, so the set holds only those running.
                Some(_) = self.jobs.join_next(), if !self.jobs.is_empty() => continue,
            };
            let lease = match next {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the next assignment");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            // A redelivery of an assignment this process is already working on.
            if !seen.lock().expect("seen lock").insert(lease.assignment_id.clone()) {
                continue;
            }
            if lease.deliveries() > 1 {
                tracing::info!(task_id = %lease.task_id, deliveries = lease.deliveries(), "resuming an assignment");
            }
            self.start_job(lease, cancel_jobs.clone());
        }
        cancel_jobs.cancel();
        while self.jobs.join_next().await.is_some() {}
    }

    fn start_job(&mut self, lease: AssignmentLease, cancel: CancellationToken) {
        self.active.fetch_add(1, Ordering::SeqCst);
        let (client, trainer, active) = (self.client.clone(), self.trainer.clone(), self.active.clone());
        let (strategy, device) = (self.strategy, self.device);
        self.jobs.spawn(async move {
            let task_id = lease.task_id.clone();
            // The lease is renewed while the job runs and settled only when it ends: a crash
            // before the submission leaves the assignment to this miner's next start.
            let renew_every = client.assignment_ack_wait() / 3;
            let job = work(&client, &trainer, strategy, device, &lease, &cancel);
            let outcome = lease.renewed_while(renew_every, job.instrument(lease.span())).await;
            let settled = match outcome {
                Ok(()) => lease.finish().await,
                Err(_) if cancel.is_cancelled() => {
                    tracing::info!(%task_id, "training cancelled by shutdown; handing the assignment back");
                    lease.hand_back().await
                }
                Err(error) => {
                    tracing::error!(%task_id, %error, "task abandoned");
                    lease.give_up().await
                }
            };
            if let Err(e) = settled {
                tracing::warn!(%task_id, error = %e, "could not settle the assignment; it may be delivered again");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// One assignment: rows, training, artifact, submission.
async fn work(
    client: &MinerClient,
    trainer: &gradients_config::TrainerSettings,
    strategy: StrategyKind,
    device: tch::Device,
    assignment: &Assignment,
    cancel: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let task = assignment.task.clone().ok_or("the assignment carries no task")?;
    let task_type = match WireTaskType::try_from(task.r#type) {
        Ok(WireTaskType::Instruct) => TaskType::Instruct,
        Ok(WireTaskType::Chat) => TaskType::Chat,
        Ok(WireTaskType::Dpo) => TaskType::Dpo,
        Ok(WireTaskType::Grpo) => TaskType::Grpo,
        _ => return Err(format!("task type {} is not trained here", task.r#type).into()),
    };
    // The reward functions the evaluator will score with, checked before any data is
    // fetched: a GRPO task naming none (or a bad one) is given up at once.
    let rewards = match task_type {
        TaskType::Grpo => Some(RewardSet::try_from(&task)?),
        _ => None,
    };
    let granted = tokio::select! {
        granted = client.fetch_train(assignment) => granted?,
        _ = cancel.cancelled() => return Err(TrainError::Cancelled.into()),
    };
    let rows = gradients_data::from_jsonl(&granted)?;
    let seconds = seconds_until(assignment.deadline.as_ref()) - trainer.submit_margin_ms as f64 / 1000.0;
    let budget = Budget {
        steps: (trainer.max_steps > 0).then_some(trainer.max_steps),
        deadline: Some(Instant::now() + Duration::from_secs_f64(seconds.max(0.0))),
    };
    let base_dir = trainer.models_dir.join(&task.base_model);
    let out_dir = trainer.work_dir.join(&assignment.task_id);
    let (seed, cancel) = (miner_seed(trainer.seed, &client.miner_id()), cancel.clone());
    tracing::info!(task_id = %assignment.task_id, rows = rows.len(), seconds, "training");
    let output = tokio::task::spawn_blocking(move || {
        job::run(Job {
            base_dir: &base_dir,
            base_name: &task.base_model,
            task_type,
            rows: &rows,
            rewards: rewards.as_ref(),
            strategy,
            budget,
            seed,
            device,
            out_dir: &out_dir,
            bar: ProgressBar::hidden(),
            cancel,
        })
    })
    .await??;
    tracing::info!(task_id = %assignment.task_id, report = %output.report.summary(), "trained");
    // The files the manifest lists (HF folder, report) go first: the customer of a winning
    // model downloads them by the manifest's sha256s.
    let delivered_from = trainer.work_dir.join(&assignment.task_id);
    for file in &output.artifact.manifest.files {
        client.store_file(&file.path, &tokio::fs::read(delivered_from.join(&file.path)).await?).await?;
    }
    let submission =
        client.submit(&assignment.task_id, &output.artifact.onnx, &output.artifact.manifest.to_json()).await?;
    // The model went to the miner's own bucket under its sha256 (never over another object).
    let artifact = submission.artifact.clone().unwrap_or_default();
    tracing::info!(
        task_id = %assignment.task_id,
        submission_id = %submission.submission_id,
        bucket = %artifact.bucket,
        object = %artifact.name,
        "submitted"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    /// One setting, two miners: two seeds; one miner: the same seed every time.
    #[test]
    fn miners_at_one_setting_get_their_own_seeds() {
        assert_eq!(super::miner_seed(7, "m1"), super::miner_seed(7, "m1"));
        assert_ne!(super::miner_seed(7, "m1"), super::miner_seed(7, "m2"));
        assert_ne!(super::miner_seed(7, "m1"), super::miner_seed(8, "m1"));
    }

    use super::*;

    fn offer(task_type: WireTaskType, base_model: &str, seconds_left: i64) -> Offer {
        Offer {
            offer_id: "o".into(),
            task_id: "t".into(),
            r#type: task_type as i32,
            base_model: base_model.into(),
            train_rows: 100,
            train_bytes: 1000,
            deadline: Some(Timestamp { unix_ms: Timestamp::now().unix_ms + seconds_left * 1000 }),
        }
    }

    fn policy(models: &std::path::Path, active: u32) -> OfferPolicy {
        let settings = gradients_config::TrainerSettings {
            models_dir: models.to_owned(),
            submit_margin_ms: 10_000,
            min_training_ms: 5_000,
            ..Default::default()
        };
        OfferPolicy { settings, active: Arc::new(AtomicU32::new(active)) }
    }

    fn declined_because(decision: Decision) -> String {
        match decision {
            Decision::Decline { reason } => reason,
            Decision::Accept { .. } => panic!("accepted"),
        }
    }

    #[test]
    fn accepts_what_fits_and_says_why_it_declines_the_rest() {
        let models = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(models.path().join("tiny-1m")).unwrap();
        std::fs::write(models.path().join("tiny-1m/config.json"), "{}").unwrap();
        let idle = policy(models.path(), 0);
        match idle.decide_now(&offer(WireTaskType::Instruct, "tiny-1m", 600)) {
            Decision::Accept { estimated_seconds } => assert!((580.0..=590.0).contains(&estimated_seconds)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(idle.decide_now(&offer(WireTaskType::Dpo, "tiny-1m", 600)), Decision::Accept { .. }));
        assert!(matches!(idle.decide_now(&offer(WireTaskType::Grpo, "tiny-1m", 600)), Decision::Accept { .. }));
        let reason = declined_because(idle.decide_now(&offer(WireTaskType::Unspecified, "tiny-1m", 600)));
        assert!(reason.contains("not trained here"), "{reason}");
        let reason = declined_because(idle.decide_now(&offer(WireTaskType::Instruct, "tiny-10m", 600)));
        assert!(reason.contains("tiny-10m is not installed"), "{reason}");
        // Ten seconds of margin plus five of training do not fit in twelve.
        let reason = declined_because(idle.decide_now(&offer(WireTaskType::Instruct, "tiny-1m", 12)));
        assert!(reason.contains("too little"), "{reason}");
        let busy = policy(models.path(), 1);
        let reason = declined_because(busy.decide_now(&offer(WireTaskType::Instruct, "tiny-1m", 600)));
        assert_eq!(reason, "at capacity");
    }
}
