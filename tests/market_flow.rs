//! One task through the market, every service real and in-process on one private
//! nats-server, each with its own database: a customer submits through intake; dispatch
//! offers it to two miners (the miner crate) and assigns it; the miners read their granted
//! train split and submit signed ONNX artifacts; the evaluator (the base model fetched from
//! the `gradients-models` store) scores them on the hidden splits and its signed results
//! reach the ledger, which pays the better one. No event is published by the test. Intake's
//! view of the task follows dispatch's status events.

mod common;

use common::Market;

use std::time::Duration;

use gradients_bus::subjects::streams;
use gradients_intake::client::IntakeClient;
use gradients_ledger::client::LedgerClient;
use gradients_miner::{Decision, Identity, MinerClient, OfferHandler};
use gradients_proto::v1::{
    EvaluationKind, EvaluationResult, EvaluationStatus, MinerCapabilities, Offer, Submission, SubmitTaskRequest,
    TaskStatus, TaskType,
};
use gradients_testkit::{eventually, stream_messages, workspace_root, Backend};
use gradients_trainer::model::CausalLm;
use prost::Message;
use tokio_util::sync::CancellationToken;

struct AcceptAll;

impl OfferHandler for AcceptAll {
    async fn decide(&self, _offer: &Offer) -> Decision {
        Decision::Accept { estimated_seconds: 30.0 }
    }
}

/// The whole path of one task, customer to ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_goes_from_customer_to_ledger() {
    let mut market = Market::start(|_| {}).await;
    let shutdown = CancellationToken::new();
    gradients_evaluator::load_or_create_identity(market.settings()).unwrap();
    let dispatch_key = gradients_dispatch::load_or_create_identity(market.settings()).unwrap().public_key();

    // The base model the task names, published where every party can fetch it.
    let config = gradients_trainer::presets::config("tiny-1m").unwrap();
    let tokenizer = gradients_text::Tokenizer::byte_level();
    let base_dir = market.path("models/tiny-1m");
    gradients_trainer::checkpoint::save(&CausalLm::new(&config, tch::Device::Cpu, 1), &tokenizer, &base_dir).unwrap();
    market.publish_base_model(&base_dir, "tiny-1m").await;
    let bus = market.bus().clone();

    // Each service owns its database (PostgreSQL for two, SQLite for one).
    market.intake(Backend::Postgres).await;
    market.dispatch(Backend::Sqlite).await;
    market.ledger(Backend::Postgres).await;
    market.evaluator();

    let intake =
        IntakeClient::new(bus.clone(), gradients_intake::customer::CustomerKey::generate(), Duration::from_secs(10));
    let ledger = LedgerClient::new(bus.clone(), Duration::from_secs(10));

    // Two miners join the market.
    let capabilities = MinerCapabilities {
        max_model_params: 100_000_000,
        task_types: vec![TaskType::Instruct as i32],
        gpu: false,
        max_concurrent_tasks: 2,
    };
    let mut miners = Vec::new();
    for _ in 0..2 {
        let miner = MinerClient::new(bus.clone(), Identity::generate(), Duration::from_secs(5));
        eventually(Duration::from_secs(10), "registered with dispatch", || miner.register(capabilities.clone())).await;
        let (serving, stop) = (miner.clone(), shutdown.clone());
        tokio::spawn(async move { serving.serve_offers(AcceptAll, stop).await });
        let (beating, stop) = (miner.clone(), shutdown.clone());
        tokio::spawn(async move { beating.heartbeat_loop(Duration::from_secs(5), || 0, stop).await });
        miners.push(miner);
    }
    market.wait_for_live_miners(2).await;

    // The customer submits the capitals example.
    let data = std::fs::read(workspace_root().join("examples/tasks/capitals/data.jsonl")).unwrap();
    let dataset = eventually(Duration::from_secs(10), "the upload", || intake.upload_dataset(&data)).await;
    let request = SubmitTaskRequest {
        idempotency_key: "e2e-capitals".into(),
        name: "capitals".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-1m".into(),
        columns: [("instruction".to_owned(), "question".to_owned()), ("output".to_owned(), "answer".to_owned())].into(),
        hours_to_complete: 1.0,
        dataset: Some(dataset),
        ..Default::default()
    };
    let task = eventually(Duration::from_secs(10), "intake accepting the task", || intake.submit(&request))
        .await
        .task
        .unwrap();
    let train_rows = task.splits.as_ref().unwrap().train.as_ref().unwrap().rows;

    // Each miner is assigned, reads exactly its granted train split, and submits a model of
    // the base model's architecture (another initialisation stands for its fine-tune).
    let mut submissions: Vec<Submission> = Vec::new();
    for (i, miner) in miners.iter().enumerate() {
        let assignment =
            miner.next_assignment(&dispatch_key, Duration::from_secs(20)).await.unwrap().expect("assigned");
        assert_eq!(assignment.task_id, task.id);
        let train = miner.fetch_train(&assignment).await.unwrap();
        assert_eq!(gradients_data_rows(&train), train_rows as usize);
        let model = CausalLm::new(&config, tch::Device::Cpu, 10 + i as i64);
        let info = gradients_trainer::export::BaseModel {
            name: "tiny-1m".into(),
            weights_sha256: "0".repeat(64),
            tokenizer_sha256: "0".repeat(64),
        };
        let artifact = gradients_trainer::export::export(&model, &info, serde_json::json!({})).unwrap();
        let manifest = artifact.manifest.to_json();
        submissions.push(miner.submit(&task.id, &artifact.onnx, &manifest).await.unwrap());
    }

    // Intake's record follows dispatch's status events.
    eventually(Duration::from_secs(10), "the task training in intake", || async {
        let status = intake.get(&task.id).await.map_err(|e| e.to_string())?.task.unwrap_or_default().status;
        if status == TaskStatus::Training as i32 {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    })
    .await;

    let result = eventually(Duration::from_secs(90), "the ledger finalizing the task", || async {
        ledger.task(&task.id).await.map_err(|e| e.to_string())?.result.ok_or_else(|| "no result yet".to_owned())
    })
    .await;
    assert_eq!(result.finalized_because, "all_evaluated");
    assert_eq!(result.entries.len(), 2);
    // The ledger paid on the evaluator's measurements: the lower max(test, synth) wins.
    let evaluations: Vec<EvaluationResult> =
        stream_messages(&bus.jetstream, streams::EVALUATIONS, &gradients_bus::subjects::evaluations(&task.id))
            .await
            .iter()
            .map(|m| EvaluationResult::decode(m.payload.as_ref()).unwrap())
            .filter(|e| e.kind == EvaluationKind::MinerSubmission as i32)
            .collect();
    assert_eq!(evaluations.len(), 2);
    assert!(evaluations.iter().all(|e| e.status == EvaluationStatus::Valid as i32), "{evaluations:?}");
    let ranking = |e: &EvaluationResult| e.test_loss.unwrap().max(e.synth_loss.unwrap());
    let best = evaluations.iter().min_by(|a, b| ranking(a).total_cmp(&ranking(b))).unwrap();
    assert_eq!(result.winner_miner_id, best.miner_id);
    assert_eq!(result.winner_loss, best.test_loss);
    shutdown.cancel();
    market.stop().await;
}

/// Rows in a JSONL split.
fn gradients_data_rows(data: &[u8]) -> usize {
    data.split(|b| *b == b'\n').filter(|line| !line.is_empty()).count()
}
