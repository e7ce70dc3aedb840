//! The loop closed, every service real: a customer submits a generated task through intake;
//! dispatch assigns it to two `gradients-trainer` miners (different strategies) which
//! fine-tune the base model with tch and submit signed ONNX artifacts; the evaluator
//! fetches the base model from the `gradients-models` store, evaluates the base model once
//! and each submission on the hidden splits, and publishes signed results; the ledger
//! verifies them and finalizes the task with the losses the evaluator measured. No event
//! is published by the test.

mod common;

use std::time::Duration;

use gradients_bus::subjects::streams;
use gradients_intake::client::IntakeClient;
use gradients_ledger::client::LedgerClient;
use gradients_proto::v1::{
    EvaluationKind, EvaluationResult, EvaluationStatus, SubmitTaskRequest, TaskStatus, TaskType,
};
use gradients_testkit::{eventually, stream_messages, Backend};
use prost::Message;

use common::Market;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trained_submissions_are_evaluated_and_paid() {
    let mut market = Market::start(|s| {
        s.dispatch.min_miners_per_task = 2;
        // Only the store has the base model: the evaluator must fetch it by name.
        s.evaluator.models_dir = s.evaluator.key_file.with_file_name("evaluator-has-no-models");
    })
    .await;
    let base = market.settings().clone();
    let dir = market.sandbox.dir.path().to_owned();
    gradients_dispatch::load_or_create_identity(&base).unwrap();
    gradients_evaluator::load_or_create_identity(&base).unwrap();

    // The base model, installed where the trainers look for it and published by name.
    let (models, config) = market.install_tiny_base_model();
    let bus = market.bus().clone();
    let index = market.publish_base_model(&models.join("tiny-1m"), "tiny-1m").await;
    assert_eq!(index.parameter_count, config.parameter_count());

    market.intake(Backend::Sqlite).await;
    market.dispatch(Backend::Postgres).await;
    market.ledger(Backend::Postgres).await;
    market.evaluator();
    market.trainers(&base, &models, &["fixed", "lr-range-test"], 12);

    // A generated family, submitted as a customer would.
    let family = gradients_taskgen::family("reverse-word").unwrap();
    let folder = gradients_taskgen::write_task_dir(
        &dir.join("tasks"),
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
    let dataset = eventually(Duration::from_secs(10), "the upload", || intake.upload_dataset(&data)).await;
    let request = SubmitTaskRequest {
        idempotency_key: "evaluated-market".into(),
        name: "reverse-word".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-1m".into(),
        hours_to_complete: 0.05,
        dataset: Some(dataset),
        ..Default::default()
    };
    market.wait_for_live_miners(2).await;
    let task = eventually(Duration::from_secs(10), "intake accepting the task", || intake.submit(&request))
        .await
        .task
        .unwrap();

    // The ledger finalizes the task once both miners are evaluated.
    let result = eventually(Duration::from_secs(180), "the ledger finalizing the task", || async {
        ledger.task(&task.id).await.map_err(|e| e.to_string())?.result.ok_or_else(|| "no result yet".to_owned())
    })
    .await;
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
    market.stop().await;
}
