//! Load miners for the fault tests: miners that do everything a miner does but train
//! (ed25519 identity, signed registration, heartbeats, signed offer replies, assignments
//! checked against dispatch's key, the granted train split read, content-named uploads,
//! signed submissions), each submitting its own real ONNX model exported once from the
//! base architecture. So dispatch, the evaluator, the ledger and the audit do all their
//! real work while the test breaks things.

use std::collections::BTreeSet;
use std::time::Duration;

use gradients_bus::Bus;
use gradients_miner::{Decision, Identity, MinerClient, OfferHandler};
use gradients_proto::v1::{MinerCapabilities, Offer, TaskType};
use gradients_trainer::model::CausalLm;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The base model every task names (the smallest preset: export and evaluation are quick).
pub const BASE_MODEL: &str = "tiny-1m";

/// How long a load miner thinks about an offer: long enough that a fault often lands
/// while offers are out (dispatch must survive losing its answers), well inside dispatch's
/// offer timeout.
const OFFER_THOUGHT: Duration = Duration::from_millis(500);

/// Accepts every offer after [`OFFER_THOUGHT`] (the load miners have room for every task).
struct AcceptAll;

impl OfferHandler for AcceptAll {
    async fn decide(&self, _offer: &Offer) -> Decision {
        tokio::time::sleep(OFFER_THOUGHT).await;
        Decision::Accept { estimated_seconds: 5.0 }
    }
}

/// Miners that do everything a miner does but train: each submits its own model (the base
/// architecture, initialised with its own seed, exported to ONNX once) for every
/// assignment, after reading the train split its grant names.
pub struct LoadMiners {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl LoadMiners {
    /// Starts `n` miners on `bus`, trusting assignments signed by `dispatch_key`.
    pub fn start(bus: Bus, dispatch_key: Vec<u8>, n: usize) -> Self {
        let stop = CancellationToken::new();
        let config = gradients_trainer::presets::config(BASE_MODEL).unwrap();
        let mut tasks = Vec::new();
        for i in 0..n {
            let model = CausalLm::new(&config, tch::Device::Cpu, 100 + i as i64);
            let base = gradients_trainer::export::BaseModel {
                name: BASE_MODEL.into(),
                weights_sha256: "0".repeat(64),
                tokenizer_sha256: "0".repeat(64),
            };
            let artifact = gradients_trainer::export::export(&model, &base, serde_json::json!({})).unwrap();
            let (onnx, manifest) = (artifact.onnx, artifact.manifest.to_json());
            let miner = MinerClient::new(bus.clone(), Identity::generate(), Duration::from_secs(5))
                .with_assignment_ack_wait(Duration::from_secs(30));
            let capabilities = MinerCapabilities {
                max_model_params: 100_000_000,
                task_types: vec![TaskType::Instruct as i32],
                gpu: false,
                max_concurrent_tasks: 64,
            };
            let (serving, beating, working) = (miner.clone(), miner.clone(), miner);
            let (stop_a, stop_b, stop_c) = (stop.clone(), stop.clone(), stop.clone());
            let key = dispatch_key.clone();
            tasks.push(tokio::spawn(async move {
                // Registration waits for dispatch like a miner started before it would.
                while serving.register(capabilities.clone()).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let offers = tokio::spawn(async move {
                    while !stop_a.is_cancelled() {
                        if let Err(e) = serving.serve_offers(AcceptAll, stop_a.clone()).await {
                            eprintln!("load miner: serving offers: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                });
                let beats =
                    tokio::spawn(async move { beating.heartbeat_loop(Duration::from_secs(2), || 0, stop_b).await });
                work(&working, &key, &onnx, &manifest, &stop_c).await;
                let _ = tokio::join!(offers, beats);
            }));
        }
        Self { stop, tasks }
    }

    /// Stops every miner.
    pub fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.abort();
        }
    }
}

/// One miner's assignments until `stop`: read the granted split, submit, settle.
async fn work(miner: &MinerClient, dispatch_key: &[u8], onnx: &[u8], manifest: &[u8], stop: &CancellationToken) {
    let mut done: BTreeSet<String> = BTreeSet::new();
    while !stop.is_cancelled() {
        let lease = match miner.next_assignment(dispatch_key, Duration::from_secs(1)).await {
            Ok(Some(lease)) => lease,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("load miner: next assignment: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let task_id = lease.task_id.clone();
        // A repeated assignment (our settle was lost) is the same assignment: already submitted.
        if !done.contains(&task_id) {
            let mut tries = 0;
            while let Err(e) = miner.fetch_train(&lease).await {
                tries += 1;
                if tries % 20 == 1 {
                    eprintln!("load miner: reading the train split of {task_id}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            while let Err(e) = miner.submit(&task_id, onnx, manifest).await {
                eprintln!("load miner: submitting for {task_id}: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            done.insert(task_id);
        }
        if let Err(e) = lease.finish().await {
            eprintln!("load miner: settling an assignment: {e}");
        }
    }
}
