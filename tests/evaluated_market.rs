//! The loop closed, every service real: a customer submits a generated task through intake;
//! dispatch assigns it to two `gradients-trainer` miners (different strategies) which
//! fine-tune the base model with tch and submit signed ONNX artifacts; the evaluator
//! fetches the base model from the `gradients-models` store, evaluates the base model once
//! and each submission on the hidden splits, and publishes signed results; the ledger
//! verifies them and finalizes the task with the losses the evaluator measured. No event
//! is published by the test.

mod common;

use std::time::Duration;

use gradients_bus::api::call;
use gradients_bus::subjects::streams;
use gradients_bus::Bus;
use gradients_intake::client::IntakeClient;
use gradients_ledger::client::LedgerClient;
use gradients_proto::v1::{
    EvaluationKind, EvaluationResult, EvaluationStatus, ListMinersRequest, ListMinersResponse, SubmitTaskRequest,
    TaskStatus, TaskType,
};
use gradients_testkit::{stream_messages, Backend, NatsServer, ScratchDb};
use gradients_trainer::model::CausalLm;
use prost::Message;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trained_submissions_are_evaluated_and_paid() {
    gradients_telemetry::init_for_tests();
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut base = common::sandbox_settings(&nats, dir.path());
    base.dispatch.min_miners_per_task = 2;
    base.evaluator.http_addr = "127.0.0.1:0".into();
    base.evaluator.key_file = dir.path().join("evaluator.key");
    // Only the store has the base model: the evaluator must fetch it by name.
    base.evaluator.models_dir = dir.path().join("evaluator-has-no-models");
    gradients_dispatch::load_or_create_identity(&base).unwrap();
    gradients_evaluator::load_or_create_identity(&base).unwrap();

    // The base model, installed where the trainers look for it and published by name.
    let models = dir.path().join("models");
    let config = gradients_trainer::presets::config("tiny-1m").unwrap();
    gradients_trainer::checkpoint::save(
        &CausalLm::new(&config, tch::Device::Cpu, 1),
        &gradients_text::Tokenizer::byte_level(),
        &models.join("tiny-1m"),
    )
    .unwrap();
    let bus = Bus::connect(&base.nats, "e2e").await.unwrap();
    gradients_bus::topology::declare(&bus, &base.nats).await.unwrap();
    let index = gradients_evaluator::models_store::publish(&bus, &models.join("tiny-1m"), "tiny-1m").await.unwrap();
    assert_eq!(index.parameter_count, config.parameter_count());

    let databases = [
        ScratchDb::new(Backend::Sqlite).await.unwrap(),
        ScratchDb::new(Backend::Postgres).await.unwrap(),
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
    tokio::spawn(gradients_evaluator::run(base.clone(), shutdown.clone()));
    for (i, strategy) in ["fixed", "lr-range-test"].into_iter().enumerate() {
        let mut settings = base.clone();
        settings.trainer.key_file = dir.path().join(format!("miner-{i}.key"));
        settings.trainer.models_dir = models.clone();
        settings.trainer.work_dir = dir.path().join(format!("runs-{i}"));
        settings.trainer.strategy = strategy.into();
        settings.trainer.device = "cpu".into();
        settings.trainer.max_steps = 12;
        settings.trainer.submit_margin_ms = 2_000;
        settings.trainer.min_training_ms = 1_000;
        tokio::spawn(gradients_trainer::runtime::run(settings, shutdown.clone()));
    }

    // A generated family, submitted as a customer would.
    let family = gradients_taskgen::family("reverse-word").unwrap();
    let folder = gradients_taskgen::write_task_dir(
        &dir.path().join("tasks"),
        family,
        gradients_taskgen::TaskKind::Instruct,
        120,
        3,
        None,
    )
    .unwrap();
    let intake =
        IntakeClient::new(bus.clone(), gradients_intake::customer::CustomerKey::generate(), Duration::from_secs(10));
    let ledger = LedgerClient::new(bus.clone(), Duration::from_secs(10));
    let data = std::fs::read(folder.join("data.jsonl")).unwrap();
    let dataset = common::until_ok(|| intake.upload_dataset(&data)).await.unwrap();
    let request = SubmitTaskRequest {
        idempotency_key: "evaluated-market".into(),
        name: "reverse-word".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-1m".into(),
        hours_to_complete: 0.05,
        dataset: Some(dataset),
        ..Default::default()
    };
    let mut live = 0;
    for _ in 0..200 {
        let answer: Result<ListMinersResponse, _> = call(
            &bus.client,
            gradients_bus::subjects::api::miners(gradients_bus::subjects::api::MINERS_LIST),
            &ListMinersRequest {},
            Duration::from_secs(2),
        )
        .await;
        live = answer.map(|a| a.miners.len()).unwrap_or(0);
        if live == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live, 2, "both trainers registered");
    let task = common::until_ok(|| intake.submit(&request)).await.expect("intake accepted the task").task.unwrap();

    // The ledger finalizes the task once both miners are evaluated.
    let mut finalized = None;
    for _ in 0..900 {
        if let Ok(response) = ledger.task(&task.id).await {
            finalized = response.result;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let result = finalized.expect("the ledger finalized the task");
    let evaluations: Vec<EvaluationResult> =
        stream_messages(&bus.jetstream, streams::EVALUATIONS, &gradients_bus::subjects::evaluations(&task.id))
            .await
            .iter()
            .map(|m| EvaluationResult::decode(m.payload.as_ref()).unwrap())
            .collect();
    let base_eval = evaluations.iter().find(|e| e.kind == EvaluationKind::BaseModel as i32).expect("base evaluated");
    let miners: Vec<&EvaluationResult> =
        evaluations.iter().filter(|e| e.kind == EvaluationKind::MinerSubmission as i32).collect();
    assert_eq!(miners.len(), 2, "one evaluation per miner: {evaluations:?}");
    for evaluation in &miners {
        assert_eq!(evaluation.status, EvaluationStatus::Valid as i32, "{:?}", evaluation.error);
        let (test, synth) = (evaluation.test_loss.unwrap(), evaluation.synth_loss.unwrap());
        eprintln!("miner {}: test {test:.4} synth {synth:.4}", evaluation.miner_id);
        assert!(test.is_finite() && synth.is_finite() && evaluation.test_tokens > 0);
    }
    let base_loss = base_eval.test_loss.unwrap();
    eprintln!("base model: test {base_loss:.4}; winner {} loss {:?}", result.winner_miner_id, result.winner_loss);
    assert_eq!(result.finalized_because, "all_evaluated");
    assert_eq!(result.entries.len(), 2);
    assert_eq!(result.base_model_loss, Some(base_loss), "the ledger records the base model's measured loss");
    let winner = miners.iter().find(|e| e.miner_id == result.winner_miner_id).expect("the winner is a miner");
    assert_eq!(result.winner_loss, winner.test_loss, "the ledger pays on the evaluator's measurement");
    for entry in &result.entries {
        assert!(miners.iter().any(|e| e.miner_id == entry.miner_id));
    }
    // The task reaches its final status, as the customer sees it through intake.
    let status = gradients_testkit::eventually(Duration::from_secs(20), "the task scored in intake", || async {
        let task = intake.get(&task.id).await.map_err(|e| e.to_string())?.task.unwrap_or_default();
        if task.status == TaskStatus::Scored as i32 {
            Ok(task.status)
        } else {
            Err(format!("status {}", task.status))
        }
    })
    .await;
    assert_eq!(status, TaskStatus::Scored as i32);
    shutdown.cancel();
}
