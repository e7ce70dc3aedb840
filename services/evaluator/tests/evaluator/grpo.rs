//! GRPO tasks are scored by the reward of what a model writes: greedy completions through
//! ONNX Runtime, judged by the task's weighted reward functions, the mean reward published
//! as the split's value (higher is better), for the base model and for each submission.

use std::time::Duration;

use gradients_bus::objects;
use gradients_bus::subjects::buckets;
use gradients_evaluator::base_model::BaseModel;
use gradients_evaluator::grpo::{completions, prepare, score_model};
use gradients_miner::Identity;
use gradients_proto::v1::{EvaluationKind, EvaluationResult, EvaluationStatus, RewardFunction, Task, TaskType};
use gradients_reward::{RewardSet, RewardSpec};

use crate::common::{in_ms, Market, BASE};
use crate::models;

/// GRPO rows: a prompt and an `answer` column (`answers[i]`).
fn rows(prompts: &[String], answers: &[String]) -> Vec<u8> {
    prompts
        .iter()
        .zip(answers)
        .map(|(p, a)| serde_json::to_string(&serde_json::json!({"prompt": p, "answer": a})).unwrap() + "\n")
        .collect::<String>()
        .into_bytes()
}

/// exact_match on `answer` (weight 3) and length_penalty (weight 1; every completion this
/// short gets 1).
fn specs() -> Vec<RewardSpec> {
    vec![RewardSpec::named("exact_match").weighted(3.0), RewardSpec::named("length_penalty")]
}

fn with_rewards(task: &mut Task) {
    task.reward_functions = specs().iter().map(|s| s.name.clone()).collect();
    task.rewards = specs().iter().map(RewardFunction::from).collect();
}

fn prompts(n: usize, offset: usize) -> Vec<String> {
    (offset..offset + n).map(|i| format!("Name thing {i}.")).collect()
}

/// A "fine-tune" that writes something: other random weights, six times the base's
/// scale (the base model's small weights only repeat the prompt's last newline).
fn writer() -> Vec<u8> {
    let mut weights = models::weights(&models::config(), 7);
    for (name, weight) in weights.0.iter_mut() {
        if !name.contains("norm") {
            weight.data.iter_mut().for_each(|v| *v *= 6.0);
        }
    }
    models::export(&models::config(), &weights)
}

/// `onnx`'s greedy completion of each prompt, as text.
fn greedy_texts(market: &Market, base: &BaseModel, onnx: &[u8], prompts: &[String]) -> Vec<String> {
    let placeholder = vec!["x".to_owned(); prompts.len()];
    let rows = gradients_data::from_jsonl(&rows(prompts, &placeholder)).unwrap();
    let task = prepare(base, RewardSet::new(specs()).unwrap(), &[("test", &rows)], &market.settings.evaluator).unwrap();
    let (done, _) = completions(onnx.to_vec().into(), base, &task, &market.settings.evaluator).unwrap();
    done[0].iter().map(|g| base.tokenizer.decode(&g.ids).unwrap()).collect()
}

async fn evidence(market: &Market, result: &EvaluationResult) -> serde_json::Value {
    let store = objects::bucket(&market.bus, buckets::EVIDENCE).await.unwrap();
    let bytes = objects::read_verified(&store, result.evidence.as_ref().unwrap(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A submission gets exactly the reward its own completions earn: the even rows' answers
/// are its greedy completions (found beforehand through the same ONNX file), the odd rows'
/// answers something else, so its test reward is (3 x hits / n + 1) / 4; the base model,
/// which only writes newlines, matches nothing and gets 1/4. Every number is the one the
/// local scorer computes, and the evidence holds every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpo_is_scored_by_the_reward_of_greedy_completions() {
    let mut market = Market::start().await;
    market.settings.evaluator.grpo_max_new_tokens = 12;
    let base = BaseModel::from_dir(BASE, &market.models_dir().join(BASE)).unwrap();
    let onnx = writer();
    let (test_prompts, synth_prompts) = (prompts(10, 0), prompts(6, 100));
    let said = greedy_texts(&market, &base, &onnx, &test_prompts);
    let answers: Vec<String> = said
        .iter()
        .enumerate()
        .map(|(i, s)| if i % 2 == 0 && !s.trim().is_empty() { s.clone() } else { format!("never {i}") })
        .collect();
    let hits = answers.iter().zip(&said).filter(|(a, s)| a == s).count();
    assert!(hits >= 3, "the writer's completions should mostly be non-blank: {said:?}");
    let test = rows(&test_prompts, &answers);
    let synth = rows(&synth_prompts, &vec!["never".to_owned(); 6]);
    let task = market.create_task_with(TaskType::Grpo, &test, &synth, in_ms(3_600_000), with_rewards).await;

    let miner = Identity::generate();
    let client = market.register(&miner).await;
    market.assign(&task, &miner, 1, in_ms(3_600_000)).await;
    market.spawn_evaluator(market.shutdown.clone());
    let submission = client.submit(&task, &onnx, b"{}").await.unwrap();
    let results = market.wait_for(&task, 2, Duration::from_secs(120)).await;

    let base_result = results.iter().find(|r| r.kind == EvaluationKind::BaseModel as i32).expect("base evaluated");
    assert_eq!(base_result.status, EvaluationStatus::Valid as i32, "{:?}", base_result.error);
    eprintln!("base model: test reward {:?}, synth {:?}", base_result.test_loss, base_result.synth_loss);
    assert_eq!((base_result.test_loss, base_result.synth_loss), (Some(0.25), Some(0.25)));

    let result = results.iter().find(|r| r.submission_id == submission.submission_id).expect("evaluated");
    assert_eq!(result.status, EvaluationStatus::Valid as i32, "{:?}", result.error);
    let expected = (3.0 * hits as f64 / 10.0 + 1.0) / 4.0;
    let reward = result.test_loss.unwrap();
    eprintln!("writer: {hits}/10 exact, test reward {reward}, synth {:?}: {said:?}", result.synth_loss);
    assert!((reward - expected).abs() < 1e-12, "test reward {reward}, expected {expected}");
    assert!(result.test_tokens > 0 && result.test_tokens <= 10 * 12);

    let found = evidence(&market, result).await;
    let rows_found = found["splits"]["test"]["rows"].as_array().unwrap();
    assert_eq!(rows_found.len(), 10);
    for (i, row) in rows_found.iter().enumerate() {
        let r = row["reward"].as_f64().unwrap();
        assert_eq!(row["loss"].as_f64().unwrap(), -r, "the ledger's per-row loss is the negated reward");
        assert!(row["tokens"].as_u64().unwrap() <= 12);
        assert_eq!(r, if answers[i] == said[i] { 1.0 } else { 0.25 }, "row {i}");
    }
    assert!(found["generation"]["runs"].as_u64().unwrap() > 0);

    let test_rows = gradients_data::from_jsonl(&test).unwrap();
    let synth_rows = gradients_data::from_jsonl(&synth).unwrap();
    let prepared = prepare(
        &base,
        RewardSet::new(specs()).unwrap(),
        &[("test", &test_rows), ("synth", &synth_rows)],
        &market.settings.evaluator,
    )
    .unwrap();
    let (local, _) = score_model(onnx.into(), &base, &prepared, &market.settings.evaluator).unwrap();
    assert_eq!(result.test_loss, Some(local[0].reward), "the service and the local scorer agree exactly");
    assert_eq!(result.synth_loss, Some(local[1].reward));
    assert_eq!((result.test_tokens, result.synth_tokens), (local[0].tokens, local[1].tokens));
    market.shutdown.cancel();
}

/// A model that does not end its text is cut at the task's new-token limit, which the
/// generation budget sets: 16 prompts sharing 48 tokens get 3 each, and the evaluation
/// generates no more than that, whatever the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generation_stays_within_the_token_budget() {
    let mut market = Market::start().await;
    market.settings.evaluator.grpo_max_generated_tokens = 48;
    let test = rows(&prompts(10, 0), &vec!["never".to_owned(); 10]);
    let synth = rows(&prompts(6, 100), &vec!["never".to_owned(); 6]);
    let task = market.create_task_with(TaskType::Grpo, &test, &synth, in_ms(3_600_000), with_rewards).await;
    market.spawn_evaluator(market.shutdown.clone());
    let results = market.wait_for(&task, 1, Duration::from_secs(120)).await;
    let base_result = &results[0];
    assert_eq!(base_result.status, EvaluationStatus::Valid as i32, "{:?}", base_result.error);
    assert!(base_result.test_tokens + base_result.synth_tokens <= 48);
    let found = evidence(&market, base_result).await;
    let mut cut = 0;
    for split in ["test", "synth"] {
        for row in found["splits"][split]["rows"].as_array().unwrap() {
            let tokens = row["tokens"].as_u64().unwrap();
            assert!(tokens <= 3, "{row}");
            if !row["stopped"].as_bool().unwrap() {
                assert_eq!(tokens, 3, "a completion that did not stop ran to the limit: {row}");
                cut += 1;
            }
        }
    }
    assert!(cut > 0, "the random base model runs on without ending its text");
    assert!(found["generation"]["new_tokens"].as_u64().unwrap() <= 48);
    market.shutdown.cancel();
}
