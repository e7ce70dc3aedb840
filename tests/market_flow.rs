//! One task through the market, every service real and in-process on one private
//! nats-server, each with its own database: a customer submits through intake; dispatch
//! offers it to two miners (the miner crate) and assigns it; the miners read their granted
//! train split and submit signed artifacts; evaluation results (published here, until the
//! evaluator exists) reach the ledger, which pays the winner. Intake's view of the task
//! follows dispatch's status events.

mod common;

use std::time::Duration;

use gradients_bus::Bus;
use gradients_intake::client::IntakeClient;
use gradients_ledger::client::LedgerClient;
use gradients_miner::{Decision, Identity, MinerClient, OfferHandler};
use gradients_proto::v1::{
    EvaluationResult, EvaluationStatus, MinerCapabilities, Offer, Submission, SubmitTaskRequest, TaskStatus, TaskType,
    Timestamp,
};
use gradients_testkit::{workspace_root, Backend, NatsServer, ScratchDb};
use prost::Message;
use tokio_util::sync::CancellationToken;

struct AcceptAll;

impl OfferHandler for AcceptAll {
    async fn decide(&self, _offer: &Offer) -> Decision {
        Decision::Accept { estimated_seconds: 30.0 }
    }
}

/// The whole path of one task, customer to ledger.
#[tokio::test]
async fn a_task_goes_from_customer_to_ledger() {
    gradients_telemetry::init_for_tests();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut base = common::sandbox_settings(&nats, dir.path());
    // Evaluations are published here with the evaluator's key (the ledger verifies it).
    let evaluator = Identity::generate();
    base.evaluator.key_file = dir.path().join("evaluator.key");
    evaluator.save(&base.evaluator.key_file).unwrap();
    let dispatch_key = gradients_dispatch::load_or_create_identity(&base).unwrap().public_key();

    // Each service owns its database (PostgreSQL for two, SQLite for one).
    let databases = [
        ScratchDb::new(Backend::Postgres).await.unwrap(),
        ScratchDb::new(Backend::Sqlite).await.unwrap(),
        ScratchDb::new(Backend::Postgres).await.unwrap(),
    ];
    let with_db = |db: &ScratchDb| {
        let mut settings = base.clone();
        settings.store.url = db.url().to_owned();
        settings
    };
    tokio::spawn(gradients_intake::run(with_db(&databases[0]), shutdown.clone()));
    tokio::spawn(gradients_dispatch::run(with_db(&databases[1]), shutdown.clone()));
    tokio::spawn(gradients_ledger::run(with_db(&databases[2]), shutdown.clone()));

    let bus = Bus::connect(&base.nats, "e2e").await.unwrap();
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
        let mut registered = miner.register(capabilities.clone()).await;
        for _ in 0..100 {
            if registered.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            registered = miner.register(capabilities.clone()).await;
        }
        registered.expect("registered with dispatch");
        let (serving, stop) = (miner.clone(), shutdown.clone());
        tokio::spawn(async move { serving.serve_offers(AcceptAll, stop).await });
        let (beating, stop) = (miner.clone(), shutdown.clone());
        tokio::spawn(async move { beating.heartbeat_loop(Duration::from_secs(5), || 0, stop).await });
        miners.push(miner);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The customer submits the capitals example.
    let data = std::fs::read(workspace_root().join("examples/tasks/capitals/data.jsonl")).unwrap();
    let dataset = common::until_ok(|| intake.upload_dataset(&data)).await.unwrap();
    let request = SubmitTaskRequest {
        idempotency_key: "e2e-capitals".into(),
        name: "capitals".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-10m".into(),
        columns: [("instruction".to_owned(), "question".to_owned()), ("output".to_owned(), "answer".to_owned())].into(),
        hours_to_complete: 1.0,
        dataset: Some(dataset),
        ..Default::default()
    };
    let submitted = common::until_ok(|| intake.submit(&request)).await;
    let task = submitted.expect("intake accepted the task").task.unwrap();
    let train_rows = task.splits.as_ref().unwrap().train.as_ref().unwrap().rows;

    // Each miner is assigned, reads exactly its granted train split, and submits.
    let mut submissions: Vec<Submission> = Vec::new();
    for miner in &miners {
        let assignment =
            miner.next_assignment(&dispatch_key, Duration::from_secs(20)).await.unwrap().expect("assigned");
        assert_eq!(assignment.task_id, task.id);
        let train = miner.fetch_train(&assignment).await.unwrap();
        assert_eq!(gradients_data_rows(&train), train_rows as usize);
        let artifact = format!("model of {}", miner.miner_id()).into_bytes();
        submissions.push(miner.submit(&task.id, &artifact, b"{\"base_model\":\"tiny-10m\"}").await.unwrap());
    }

    // Intake's record follows dispatch's status events.
    let mut status = TaskStatus::Accepted;
    for _ in 0..100 {
        status = TaskStatus::try_from(intake.get(&task.id).await.unwrap().task.unwrap().status).unwrap();
        if status == TaskStatus::Training {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, TaskStatus::Training);

    // Evaluations of the two submissions: the second miner's model is better.
    for (i, submission) in submissions.iter().enumerate() {
        let loss = 2.0 - i as f64;
        let mut result = EvaluationResult {
            evaluation_id: format!("eval-{}", submission.submission_id),
            task_id: task.id.clone(),
            miner_id: submission.miner_id.clone(),
            submission_id: submission.submission_id.clone(),
            status: EvaluationStatus::Valid as i32,
            test_loss: Some(loss),
            synth_loss: Some(loss),
            artifact_sha256: submission.artifact.as_ref().unwrap().sha256.clone(),
            submitted_at: submission.submitted_at,
            evaluated_at: Some(Timestamp::now()),
            ..Default::default()
        };
        result.signature =
            evaluator.sign_message(gradients_miner::identity::domains::EVALUATION, &result, |r| r.signature.clear());
        bus.jetstream
            .publish(gradients_bus::subjects::evaluations(&task.id), result.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let mut finalized = None;
    for _ in 0..100 {
        if let Ok(response) = ledger.task(&task.id).await {
            finalized = response.result;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = finalized.expect("the ledger finalized the task");
    assert_eq!(result.winner_miner_id, miners[1].miner_id());
    assert_eq!(result.finalized_because, "all_evaluated");
    assert_eq!(result.entries.len(), 2);
    shutdown.cancel();
}

/// Rows in a JSONL split.
fn gradients_data_rows(data: &[u8]) -> usize {
    data.split(|b| *b == b'\n').filter(|line| !line.is_empty()).count()
}
