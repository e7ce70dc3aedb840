//! Each submission is evaluated and published once, whatever the replicas, redeliveries and
//! crashes; the numbers are the ones the local scorer (`gradients eval run`) computes.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::{self, consumers, streams};
use gradients_data::TaskType as DataType;
use gradients_evaluator::base_model::BaseModel;
use gradients_evaluator::evaluate::{check_and_score, prepare};
use gradients_miner::Identity;
use gradients_proto::v1::{EvaluationKind, EvaluationResult, EvaluationStatus, TaskType};
use gradients_testkit::eventually;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::common::{dpo_rows, in_ms, instruct_rows, Market, BASE};
use crate::models;

/// Assigns `n` registered miners to `task` and returns their clients.
async fn cohort(market: &Market, task: &str, n: usize) -> Vec<gradients_miner::MinerClient> {
    let identities: Vec<Identity> = (0..n).map(|_| Identity::generate()).collect();
    let mut clients = Vec::new();
    for identity in &identities {
        clients.push(market.register(identity).await);
        market.assign(task, identity, n as u32, in_ms(3_600_000)).await;
    }
    clients
}

fn miner_results(results: &[EvaluationResult]) -> Vec<&EvaluationResult> {
    results.iter().filter(|r| r.kind == EvaluationKind::MinerSubmission as i32).collect()
}

/// Two replicas and 20 submissions (three of them delivered twice) give 20 evaluations,
/// one per submission, plus the base model's one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_evaluate_twenty_submissions_once() {
    let market = Market::start().await;
    let task =
        market.create_task(TaskType::Instruct, &instruct_rows(12, 0), &instruct_rows(6, 50), in_ms(3_600_000)).await;
    let miners = cohort(&market, &task, 20).await;
    market.spawn_evaluator(market.shutdown.clone());
    market.spawn_evaluator(market.shutdown.clone());
    let base = models::weights(&models::config(), 1);
    let mut submitted = Vec::new();
    for (i, miner) in miners.iter().enumerate() {
        let onnx = models::export(&models::config(), &models::nudged(&base, 0.001 * (i + 1) as f32));
        submitted.push(miner.submit(&task, &onnx, b"{}").await.unwrap());
    }
    // A redelivery of three submissions (the same message again, past JetStream's de-duplication).
    for submission in &submitted[..3] {
        let event = OutgoingEvent {
            subject: subjects::submissions(&task, &submission.miner_id),
            id: format!("again-{}", submission.submission_id),
            payload: submission.encode_to_vec().into(),
            traceparent: None,
        };
        publish_event(&market.bus.jetstream, event).await.unwrap();
    }
    market.wait_for(&task, 21, Duration::from_secs(180)).await;
    // Every repeat handed out and acknowledged: anything they produced is on the stream.
    market.wait_until_settled().await;
    let results = market.evaluations(&task).await;
    let evaluated = miner_results(&results);
    let ids: BTreeSet<&str> = evaluated.iter().map(|r| r.submission_id.as_str()).collect();
    assert_eq!(evaluated.len(), 20, "one evaluation per submission");
    assert_eq!(ids.len(), 20);
    assert!(evaluated.iter().all(|r| r.status == EvaluationStatus::Valid as i32));
    assert_eq!(results.len(), 21, "and the base model's, once");
    market.shutdown.cancel();
}

/// A replica killed while evaluating leaves its submissions to another, evaluated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_leaves_its_work_to_another() {
    let mut market = Market::start().await;
    market.settings.nats.ack_wait_ms = 1_500;
    let task =
        market.create_task(TaskType::Instruct, &instruct_rows(40, 0), &instruct_rows(20, 50), in_ms(3_600_000)).await;
    let miners = cohort(&market, &task, 4).await;
    let base = models::weights(&models::config(), 1);
    for (i, miner) in miners.iter().enumerate() {
        let onnx = models::export(&models::config(), &models::nudged(&base, 0.002 * (i + 1) as f32));
        miner.submit(&task, &onnx, b"{}").await.unwrap();
    }
    let doomed = market.spawn_evaluator(CancellationToken::new());
    // Killed once it has projected every assignment and holds a submission it has not
    // finished (delivered, not acknowledged). (Killed while still holding assignments, the
    // submissions wait for their redelivery, `service::not_yet`; that moment is too short
    // to hit on purpose, so this test takes the one it can reach every time.)
    eventually(Duration::from_secs(60), "the doomed replica evaluating", || async {
        let js = &market.bus.jetstream;
        gradients_testkit::consumer_settled(js, streams::ASSIGNMENTS, consumers::EVALUATOR_ASSIGNMENTS).await?;
        let stream = js.get_stream(streams::SUBMISSIONS).await.map_err(|e| e.to_string())?;
        let mut consumer: PullConsumer =
            stream.get_consumer(consumers::EVALUATOR_SUBMISSIONS).await.map_err(|e| e.to_string())?;
        let info = consumer.info().await.map_err(|e| e.to_string())?;
        if info.num_ack_pending > 0 {
            Ok(())
        } else {
            Err(format!("{} pending, none in hand", info.num_pending))
        }
    })
    .await;
    doomed.abort(); // As a kill would: nothing drains, nothing is acknowledged.
    let _ = doomed.await;
    market.spawn_evaluator(market.shutdown.clone());
    market.wait_for(&task, 5, Duration::from_secs(120)).await;
    market.wait_until_settled().await;
    let results = market.evaluations(&task).await;
    let evaluated = miner_results(&results);
    let ids: BTreeSet<&str> = evaluated.iter().map(|r| r.submission_id.as_str()).collect();
    assert_eq!((evaluated.len(), ids.len()), (4, 4), "each submission evaluated once");
    assert_eq!(results.len(), 5);
    market.shutdown.cancel();
}

/// A DPO task is scored against the base model as reference: the base model's own DPO loss
/// is exactly ln 2; a fine-tune's loss and preference accuracy are those the local scorer
/// (what `gradients eval run` calls) computes from the same rows and file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dpo_scores_match_the_local_scorer() {
    let market = Market::start().await;
    let (test, synth) = (dpo_rows(16, 0), dpo_rows(8, 40));
    let task = market.create_task(TaskType::Dpo, &test, &synth, in_ms(3_600_000)).await;
    let miners = cohort(&market, &task, 1).await;
    market.spawn_evaluator(market.shutdown.clone());
    let onnx = models::export(&models::config(), &models::nudged(&models::weights(&models::config(), 1), 0.02));
    let submission = miners[0].submit(&task, &onnx, b"{}").await.unwrap();
    let results = market.wait_for(&task, 2, Duration::from_secs(120)).await;
    let base_result = results.iter().find(|r| r.kind == EvaluationKind::BaseModel as i32).expect("base evaluated");
    assert!((base_result.test_loss.unwrap() - std::f64::consts::LN_2).abs() < 1e-12, "{base_result:?}");
    let result = results.iter().find(|r| r.submission_id == submission.submission_id).expect("evaluated");
    assert_eq!(result.status, EvaluationStatus::Valid as i32, "{:?}", result.error);

    let base = BaseModel::from_dir(BASE, &market.models_dir().join(BASE)).unwrap();
    let rows = gradients_data::from_jsonl(&test).unwrap();
    let splits = prepare(&base, DataType::Dpo, &[("test", &rows)]).unwrap();
    let (_, local) = check_and_score(onnx, &base, DataType::Dpo, &splits, &market.settings.evaluator).unwrap();
    assert_eq!(result.test_loss, Some(local[0].loss), "the service and the local scorer agree exactly");
    assert_eq!(result.preference_accuracy, local[0].preference_accuracy);
    assert_eq!(result.test_tokens, local[0].tokens);
    market.shutdown.cancel();
}
