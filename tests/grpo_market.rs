//! A GRPO task through the whole market, every service real: a customer submits a GRPO
//! data set with weighted reward functions through intake; dispatch assigns it to two
//! `gradients-trainer` miners, which train the base model with GRPO (tch, the task's
//! reward functions) and submit signed ONNX artifacts; the evaluator scores the base model
//! and each submission by the mean reward of their greedy completions (ONNX Runtime) on
//! the hidden splits; the ledger ranks them higher-is-better and pays. No event is
//! published by the test.

mod common;

use std::time::Duration;

use gradients_bus::objects;
use gradients_bus::subjects::{buckets, streams};
use gradients_intake::client::IntakeClient;
use gradients_ledger::client::LedgerClient;
use gradients_proto::v1::{
    ErrorCode, EvaluationKind, EvaluationResult, EvaluationStatus, RewardFunction, SubmitTaskRequest, TaskStatus,
    TaskType,
};
use gradients_testkit::{eventually, stream_messages, Backend};
use prost::Message;

use common::Market;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grpo_task_is_trained_evaluated_and_paid() {
    let mut market = Market::start(|s| {
        s.dispatch.min_miners_per_task = 2;
        // Only the store has the base model: the evaluator must fetch it by name.
        s.evaluator.models_dir = s.evaluator.key_file.with_file_name("evaluator-has-no-models");
        s.evaluator.grpo_max_new_tokens = 16;
    })
    .await;
    let base = market.settings().clone();
    let dir = market.sandbox.dir.path().to_owned();
    gradients_dispatch::load_or_create_identity(&base).unwrap();
    gradients_evaluator::load_or_create_identity(&base).unwrap();

    let (models, _) = market.install_tiny_base_model();
    let bus = market.bus().clone();
    market.publish_base_model(&models.join("tiny-1m"), "tiny-1m").await;

    market.intake(Backend::Sqlite).await;
    market.dispatch(Backend::Postgres).await;
    market.ledger(Backend::Postgres).await;
    market.evaluator();
    market.trainers(&base, &models, &["fixed", "lr-range-test"], 24);

    let intake =
        IntakeClient::new(bus.clone(), gradients_intake::customer::CustomerKey::generate(), Duration::from_secs(10));
    let ledger = LedgerClient::new(bus.clone(), Duration::from_secs(10));
    // A generated family (small sums) as a GRPO task, with the family's rewards
    // (numeric closeness weight 2, a digits-only pattern weight 1), submitted as a customer would.
    let family = gradients_taskgen::family("arithmetic").unwrap();
    let folder =
        gradients_taskgen::write_task_dir(&dir.join("tasks"), family, gradients_taskgen::TaskKind::Grpo, 100, 3, None)
            .unwrap();
    let rewards: Vec<RewardFunction> = family.grpo_rewards().iter().map(RewardFunction::from).collect();
    let data = std::fs::read(folder.join("data.jsonl")).unwrap();
    let dataset = eventually(Duration::from_secs(10), "the upload", || intake.upload_dataset(&data)).await;
    let request = SubmitTaskRequest {
        idempotency_key: "grpo-market".into(),
        name: "arithmetic-grpo".into(),
        r#type: TaskType::Grpo as i32,
        base_model: "tiny-1m".into(),
        hours_to_complete: 0.05,
        rewards: rewards.clone(),
        dataset: Some(dataset),
        ..Default::default()
    };
    market.wait_for_live_miners(2).await;
    let task = eventually(Duration::from_secs(10), "intake accepting the task", || intake.submit(&request))
        .await
        .task
        .unwrap();
    assert_eq!(task.rewards, rewards, "the task carries its weighted rewards");

    let result = eventually(Duration::from_secs(300), "the ledger finalizing the task", || async {
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
    assert_eq!(base_eval.status, EvaluationStatus::Valid as i32, "{:?}", base_eval.error);
    let miners: Vec<&EvaluationResult> =
        evaluations.iter().filter(|e| e.kind == EvaluationKind::MinerSubmission as i32).collect();
    assert_eq!(miners.len(), 2, "one evaluation per miner: {evaluations:?}");
    // A trainer whose GRPO run never beat its start model's validation reward submits that
    // model unchanged, which the evaluator refuses as NOT_A_FINE_TUNE (still a result the
    // ledger pays on); with this budget at least one miner learns something.
    let (valid, unchanged): (Vec<&EvaluationResult>, Vec<&EvaluationResult>) =
        miners.iter().partition(|e| e.status == EvaluationStatus::Valid as i32);
    for evaluation in &unchanged {
        let code = evaluation.error.as_ref().map(|e| e.code);
        assert_eq!(code, Some(ErrorCode::NotAFineTune as i32), "{evaluation:?}");
        eprintln!("miner {} submitted its base model unchanged", evaluation.miner_id);
    }
    assert!(!valid.is_empty(), "no miner's GRPO run changed the model: {miners:?}");
    let store = objects::bucket(&bus, buckets::EVIDENCE).await.unwrap();
    for evaluation in valid.iter().chain([&base_eval]) {
        let (test, synth) = (evaluation.test_loss.unwrap(), evaluation.synth_loss.unwrap());
        eprintln!("{:?} {}: test reward {test:.4} synth reward {synth:.4}", evaluation.kind(), evaluation.miner_id);
        assert!((0.0..=1.0).contains(&test) && (0.0..=1.0).contains(&synth), "rewards are in [0, 1]");
        // The evidence holds one generated completion's reward per hidden row.
        let bytes = objects::read_verified(&store, evaluation.evidence.as_ref().unwrap(), 1 << 20).await.unwrap();
        let evidence: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let test_rows = evidence["splits"]["test"]["rows"].as_array().unwrap();
        assert_eq!(test_rows.len(), 10, "10% of 100 rows");
        let mean = test_rows.iter().map(|r| r["reward"].as_f64().unwrap()).sum::<f64>() / 10.0;
        assert!((mean - test).abs() < 1e-12);
        assert!(test_rows.iter().all(|r| r["tokens"].as_u64().unwrap() <= 16));
    }

    // The ledger ranks by reward, higher is better, and pays on the evaluator's numbers.
    assert_eq!(result.finalized_because, "all_evaluated");
    assert_eq!(result.entries.len(), 2);
    let winner = valid.iter().find(|e| e.miner_id == result.winner_miner_id).expect("the winner is a valid miner");
    eprintln!(
        "base reward {:?}; winner {} reward {:?}",
        base_eval.test_loss, result.winner_miner_id, result.winner_loss
    );
    assert_eq!(result.winner_loss, winner.test_loss, "the ledger pays on the evaluator's measurement");
    // Whether the ledger mixes in the synth reward or not, higher is better: the winner is
    // never beaten on both splits (lower-is-better would pick exactly that one).
    for other in valid.iter().filter(|e| e.miner_id != winner.miner_id) {
        assert!(
            winner.test_loss >= other.test_loss || winner.synth_loss >= other.synth_loss,
            "the winner {winner:?} has lower rewards than {other:?} on both splits"
        );
    }
    assert_eq!(result.base_model_loss, base_eval.test_loss, "the base model's reward is the reference");
    let status = eventually(Duration::from_secs(20), "the task scored in intake", || async {
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
