//! Load miners: the whole miner protocol of `gradients-miner` (an ed25519 key, a signed
//! registration, heartbeats, signed offer replies, dispatch-signed assignments checked,
//! the granted train split fetched and checked, content-named uploads to the miner's own
//! bucket, a signed submission) with one difference from the reference trainer: instead of
//! training, each submits a model exported once at start. So dispatch, the evaluator
//! (which runs every submission on the hidden splits), the ledger and the audit do all
//! their real work, and only the GPU hours are left out.
//!
//! Each miner's model is the base model with one parameter nudged by a miner-specific
//! amount: the evaluator refuses an untouched copy of the base ("not a fine-tune") and a
//! byte-for-byte copy of another miner's artifact (a duplicate, never evaluated).

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gradients_bus::Bus;
use gradients_miner::{Decision, Identity, MinerClient, OfferHandler};
use gradients_model::manifest::{sha256_hex, MANIFEST_VERSION};
use gradients_model::{files, Manifest, ManifestFile, Weight, Weights};
use gradients_proto::v1::{MinerCapabilities, Offer, TaskType};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The base model's name: one intake's configuration knows (`models`); what is published
/// under it in `gradients-models` is the testkit's ~60k-parameter Llama, as in the tests.
pub const BASE_MODEL: &str = "tiny-1m";

/// What one load miner submits for every task: the ONNX artifact, its manifest and the
/// files the manifest lists (the HF folder it was exported from and a report).
#[derive(Clone)]
pub struct Submission {
    pub onnx: Vec<u8>,
    pub manifest: Vec<u8>,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Exports miner `index`'s model once, into `dir` (what a trainer's job folder holds).
pub fn prepare(index: usize, dir: &Path) -> anyhow::Result<Submission> {
    let config = gradients_testkit::base_model_config();
    let base = gradients_testkit::base_model_files();
    let base_weights = base.safetensors.clone().context("the base model has weights")?;
    let tensors = safetensors::SafeTensors::deserialize(&base_weights)?;
    let mut weights = Weights::default();
    for (name, view) in tensors.tensors() {
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        weights.0.insert(name, Weight::new(view.shape().to_vec(), data));
    }
    let nudged = weights.0.get_mut("model.norm.weight").context("the base model has a final norm")?;
    for value in &mut nudged.data {
        *value += 0.01 * (index as f32 + 1.0);
    }
    weights.check(&config)?;
    let onnx = gradients_model::onnx::export(&config, &weights)?;
    let model_dir = dir.join("model");
    gradients_testkit::write_model_dir(&model_dir, &config, &weights)?;
    let report = serde_json::to_vec_pretty(&serde_json::json!({
        "produced_by": "gradients-loadtest",
        "trained": false,
        "note": "a load miner: the base model with its final norm nudged, exported once",
    }))?;
    std::fs::write(dir.join("report.json"), &report)?;
    let mut delivered = Vec::new();
    for path in [
        format!("model/{}", files::CONFIG),
        format!("model/{}", files::WEIGHTS),
        format!("model/{}", files::TOKENIZER),
        "report.json".to_owned(),
    ] {
        delivered.push((path.clone(), std::fs::read(dir.join(&path))?));
    }
    let manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        base_model: BASE_MODEL.to_owned(),
        base_model_sha256: sha256_hex(&base_weights),
        tokenizer_sha256: sha256_hex(&base.tokenizer),
        config: config.clone(),
        parameter_count: config.parameter_count(),
        onnx_sha256: sha256_hex(&onnx),
        onnx_bytes: onnx.len() as u64,
        training: serde_json::json!({ "strategy": "load-test", "steps": 0 }),
        produced_by: format!("gradients-loadtest {}", env!("CARGO_PKG_VERSION")),
        files: delivered.iter().map(|(path, data)| ManifestFile::of(path, data)).collect(),
    };
    std::fs::write(dir.join(files::ONNX), &onnx)?;
    std::fs::write(dir.join(files::MANIFEST), manifest.to_json())?;
    Ok(Submission { onnx, manifest: manifest.to_json(), files: delivered })
}

/// Takes every instruct task offered.
struct AcceptAll;

impl OfferHandler for AcceptAll {
    async fn decide(&self, offer: &Offer) -> Decision {
        if offer.r#type == TaskType::Instruct as i32 {
            Decision::Accept { estimated_seconds: 1.0 }
        } else {
            Decision::Decline { reason: format!("task type {} is not a load-test task", offer.r#type) }
        }
    }
}

/// A registered load miner.
pub struct LoadMiner {
    client: MinerClient,
    submission: Arc<Submission>,
    dispatch_key: Vec<u8>,
    active: Arc<AtomicU32>,
}

impl LoadMiner {
    /// Registers a fresh identity with dispatch (retrying while dispatch starts).
    pub async fn register(
        bus: Bus,
        submission: Submission,
        dispatch_key: Vec<u8>,
        key_file: &Path,
    ) -> anyhow::Result<(Self, Duration)> {
        let identity = Identity::generate();
        identity.save(key_file)?;
        let client = MinerClient::new(bus, identity, Duration::from_secs(30));
        let capabilities = MinerCapabilities {
            max_model_params: 1_000_000_000,
            task_types: vec![TaskType::Instruct as i32],
            gpu: false,
            max_concurrent_tasks: 10_000,
        };
        let mut tries = 0;
        let registered = loop {
            match client.register(capabilities.clone()).await {
                Ok(registered) => break registered,
                Err(e) if tries < 60 => {
                    tries += 1;
                    tracing::debug!(error = %e, "registration failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e).context("registering a load miner"),
            }
        };
        let beat = Duration::from_millis(registered.heartbeat_ttl_ms / 3).max(Duration::from_millis(100));
        let miner = Self { client, submission: Arc::new(submission), dispatch_key, active: Arc::default() };
        Ok((miner, beat))
    }

    /// Heartbeats, answers offers and works assignments until `stop`.
    pub async fn run(self, beat: Duration, stop: CancellationToken) -> anyhow::Result<()> {
        let mut loops = JoinSet::new();
        {
            let (client, active, stop) = (self.client.clone(), self.active.clone(), stop.clone());
            loops.spawn(async move {
                client.heartbeat_loop(beat, move || active.load(Ordering::SeqCst), stop).await;
                Ok(())
            });
        }
        {
            let (client, stop) = (self.client.clone(), stop.clone());
            loops.spawn(async move { client.serve_offers(AcceptAll, stop).await.context("answering offers") });
        }
        let mut jobs = JoinSet::new();
        while !stop.is_cancelled() {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                next = self.client.next_assignment(&self.dispatch_key, Duration::from_secs(1)) => next,
                Some(_) = jobs.join_next(), if !jobs.is_empty() => continue,
            };
            let lease = match next {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the next assignment");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let (client, submission, active) = (self.client.clone(), self.submission.clone(), self.active.clone());
            active.fetch_add(1, Ordering::SeqCst);
            jobs.spawn(async move {
                let task_id = lease.task_id.clone();
                let outcome = work(&client, &submission, &lease).await;
                let settled = match outcome {
                    Ok(()) => lease.finish().await,
                    Err(e) => {
                        tracing::warn!(%task_id, error = %e, "load miner could not submit; handing back");
                        lease.hand_back().await
                    }
                };
                if let Err(e) = settled {
                    tracing::warn!(%task_id, error = %e, "could not settle an assignment");
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
        while jobs.join_next().await.is_some() {}
        stop.cancel();
        while let Some(done) = loops.join_next().await {
            done??;
        }
        let _ = self.client.deregister().await;
        Ok(())
    }
}

/// One assignment: the granted rows read (and their sha256 checked), the delivered files
/// and the model uploaded, the signed submission published.
async fn work(
    client: &MinerClient,
    submission: &Submission,
    assignment: &gradients_proto::v1::Assignment,
) -> anyhow::Result<()> {
    let rows = client.fetch_train(assignment).await?;
    anyhow::ensure!(!rows.is_empty(), "the granted train split is empty");
    for (path, data) in &submission.files {
        client.store_file(path, data).await?;
    }
    client.submit(&assignment.task_id, &submission.onnx, &submission.manifest).await?;
    Ok(())
}
