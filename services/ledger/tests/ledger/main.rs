//! The ledger end to end against a real nats-server and real PostgreSQL and SQLite.

mod batch;
mod common;
mod confidence;
mod forged;
mod history;
mod startup;

use std::collections::BTreeMap;
use std::time::Duration;

use gradients_bus::subjects::{self, streams};
use gradients_ledger::entry_id;
use gradients_proto::v1::{
    EvaluationKind, LedgerEntriesRequest, LedgerEntry, LedgerEntryKind, TaskStatus, TaskStatusChanged, TaskType,
    Timestamp, WeightsPublished,
};
use gradients_testkit::{eventually, Backend};
use prost::Message;

use common::{invalid, reference, valid, Sandbox};

const HOUR_MS: i64 = 3_600_000;

/// A scripted task gives exactly the expected entries, result and weights: the best
/// max(test, synth) wins 3, the other valid miner 0, the invalid one -1; improvement is
/// measured against the base model and the fixed baseline; entries cite every evaluation.
#[tokio::test]
async fn scripted_series_gives_exact_entries_and_weights() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend, 1, |_| {}).await;
        let now = Timestamp::now().unix_ms;
        sandbox.task_created("t1", TaskType::Instruct, 1.0, now + HOUR_MS).await;
        sandbox.assign("t1", &["alice", "bob", "carol"]).await;
        // bob has the lower test loss, but his synthetic loss is worse: max() ranks alice first.
        sandbox.evaluation("e-alice", &valid("t1", "alice", 1.0, 1.1, now)).await;
        sandbox.evaluation("e-bob", &valid("t1", "bob", 0.9, 1.5, now)).await;
        sandbox.evaluation("e-base", &reference("t1", EvaluationKind::BaseModel, 2.0)).await;
        sandbox.evaluation("e-fixed", &reference("t1", EvaluationKind::FixedBaseline, 1.25)).await;
        sandbox.evaluation("e-carol", &invalid("t1", "carol")).await;
        assert_eq!(sandbox.wait_for_results(1).await, 1, "{backend}: finalized once all three were evaluated");
        // The reference measurements may be recorded after the task is finalized; they
        // change no reward, and the improvements are read from them when asked.
        sandbox.wait_for_rows(3, 5).await;

        let result = sandbox.client.task("t1").await.unwrap().result.unwrap();
        assert_eq!(result.winner_miner_id, "alice");
        assert_eq!(result.finalized_because, "all_evaluated");
        assert_eq!(result.winner_loss, Some(1.0));
        assert_eq!(result.improvement_over_base, Some(0.5));
        assert_eq!(result.improvement_over_baseline, Some(0.2));
        // work = max(1, 2 * sqrt(1 hour * 1 B)): tiny models count as the minimum size.
        assert_eq!(result.task_weight, 2.0);
        let scores: BTreeMap<String, (f64, i32, String)> =
            result.entries.iter().map(|e| (e.miner_id.clone(), (e.score, e.kind, e.reason.clone()))).collect();
        assert_eq!(scores["alice"], (3.0, LedgerEntryKind::TaskScore as i32, "first".to_owned()), "{backend}");
        assert_eq!(scores["bob"], (0.0, LedgerEntryKind::TaskScore as i32, "ranked".to_owned()), "{backend}");
        assert_eq!(scores["carol"], (-1.0, LedgerEntryKind::Penalty as i32, "invalid".to_owned()), "{backend}");
        let alice = result.entries.iter().find(|e| e.miner_id == "alice").unwrap();
        assert_eq!(alice.rank, 1);
        assert_eq!(alice.ranking_loss, Some(1.1));
        assert_eq!(alice.entry_id, entry_id("t1", "alice", LedgerEntryKind::TaskScore, ""));
        let mut cited = alice.source_event_ids.clone();
        cited.sort();
        assert_eq!(cited, ["eval/t1/alice", "eval/t1/bob", "eval/t1/carol"], "every miner evaluation is cited");
        assert_eq!(alice.source_sha256.len(), 3);
        assert!(alice.source_sha256.iter().all(|h| h.len() == 64));

        // Only alice earned anything, so she holds all the weight.
        let weights = sandbox.client.weights(0).await.unwrap().weights;
        assert_eq!(weights.len(), 1);
        assert_eq!(weights[0].miner_id, "alice");
        assert!((weights[0].weight - 1.0).abs() < 1e-12);

        // A second task misses its deadline with one of two miners silent: the sweep
        // finalizes it and the silent miner is penalised.
        // (The task is announced last, already past its deadline, once the rest is recorded.)
        sandbox.assign("t2", &["bob", "dave"]).await;
        sandbox.evaluation("e2-bob", &valid("t2", "bob", 0.7, 0.8, now)).await;
        sandbox.wait_for_rows(5, 6).await;
        sandbox.task_created("t2", TaskType::Instruct, 1.0, now - 1).await;
        assert_eq!(sandbox.wait_for_results(2).await, 2);
        let second = sandbox.client.task("t2").await.unwrap().result.unwrap();
        assert_eq!(second.finalized_because, "deadline");
        assert_eq!(second.winner_miner_id, "bob");
        let dave = second.entries.iter().find(|e| e.miner_id == "dave").unwrap();
        assert_eq!((dave.score, dave.reason.as_str()), (-1.0, "failed"));

        // Weights, worked by hand from G.O.D.'s formula: both tasks fall in every window, and
        // only scores >= 1 or < 0 count (bob's 0 on t1 neither adds nor lowers his mean).
        // alice: summed 3*2 = 6, mean 3 -> 18; bob: summed 3*2 = 6, mean 3 -> 18. Equal shares.
        let weights = sandbox.client.weights(0).await.unwrap().weights;
        assert_eq!(weights.iter().map(|w| w.miner_id.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        assert!((weights[0].weight - 0.5).abs() < 1e-9, "{backend}: {weights:?}");
        assert!((weights[1].weight - 0.5).abs() < 1e-9, "{backend}: {weights:?}");

        // Events: one per entry (5); the weights on their own clock, the latest with both.
        sandbox.wait_until_settled().await;
        let entry_events = sandbox.messages_on(streams::LEDGER, subjects::LEDGER_ENTRIES).await;
        assert_eq!(entry_events.len(), 5, "{backend}");
        let first = LedgerEntry::decode(entry_events[0].payload.as_ref()).unwrap();
        assert_eq!(entry_events[0].headers.as_ref().unwrap().get("Nats-Msg-Id").unwrap().to_string(), first.entry_id);
        // Weights are published on their own clock: wait for a publication with both tasks.
        let latest = eventually(Duration::from_secs(10), "weights published with both tasks", || async {
            let events = sandbox.messages_on(streams::LEDGER, subjects::LEDGER_WEIGHTS).await;
            let latest = events.last().map(|m| WeightsPublished::decode(m.payload.as_ref()).unwrap());
            match latest {
                Some(latest) if latest.weights == weights => Ok(latest),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(latest.weights, weights, "{backend}");

        // Each finalized task ends with its status event: scored, with the winner named.
        for (task_id, winner) in [("t1", "alice"), ("t2", "bob")] {
            let moves = sandbox.messages_on(streams::TASKS, &subjects::task_status(task_id)).await;
            let last = TaskStatusChanged::decode(moves.last().expect("a status event").payload.as_ref()).unwrap();
            assert_eq!(last.to, TaskStatus::Scored as i32, "{backend}: {last:?}");
            assert!(last.reason.contains(winner), "{backend}: {last:?}");
        }
    }
}

/// Redelivered events (the same payloads under new message ids), two replicas at once and
/// a replica killed mid-work: every (task, miner) has exactly one entry, and one event.
#[tokio::test]
async fn redelivery_replicas_and_a_crash_never_double_an_entry() {
    for backend in Backend::ALL {
        let mut sandbox = Sandbox::start(backend, 2, |_| {}).await;
        let now = Timestamp::now().unix_ms;
        let tasks = 12;
        let miners = ["m1", "m2", "m3"];
        for t in 0..tasks {
            let task_id = format!("task-{t}");
            sandbox.task_created(&task_id, TaskType::Dpo, 2.0, now + HOUR_MS).await;
            sandbox.assign(&task_id, &miners).await;
        }
        for round in 0..2 {
            for t in 0..tasks {
                let task_id = format!("task-{t}");
                for (i, miner) in miners.iter().enumerate() {
                    let result = valid(&task_id, miner, 1.0 + i as f64 / 10.0, 1.0 + i as f64 / 10.0, now);
                    sandbox.evaluation(&format!("round-{round}/{task_id}/{miner}"), &result).await;
                }
            }
            if round == 0 {
                // Kill one replica while it works (once it has recorded some of the
                // round); a new one takes its place.
                sandbox.wait_for_rows(0, 1).await;
                sandbox.kill_replica(0);
                sandbox.start_replica();
            }
        }
        assert_eq!(sandbox.wait_for_results(tasks).await, tasks, "{backend}");
        // The killed replica's unacknowledged messages come back after the ack wait.
        sandbox.wait_until_settled().await;
        assert_eq!(sandbox.entry_count().await, tasks * miners.len() as u64, "{backend}: one entry per (task, miner)");
        let events = sandbox.messages_on(streams::LEDGER, subjects::LEDGER_ENTRIES).await;
        assert_eq!(events.len() as u64, tasks * miners.len() as u64, "{backend}: one event per entry");
        let mut winners = Vec::new();
        for t in 0..tasks {
            winners.push(sandbox.client.task(&format!("task-{t}")).await.unwrap().result.unwrap().winner_miner_id);
        }
        assert!(winners.iter().all(|w| w == "m1"), "{backend}: {winners:?}");
    }
}

/// Finalizing the same task from many places at once writes it once.
#[tokio::test]
async fn concurrent_finalizers_write_once() {
    let sandbox = Sandbox::start(Backend::Postgres, 0, |_| {}).await;
    let store = sandbox.store.clone();
    use gradients_store::entity::ledger::{assignment, evaluation, task, EvaluationKind, TaskType};
    use gradients_store::sea_orm::{ActiveModelTrait, Set};
    task::ActiveModel {
        task_id: Set("race".into()),
        task_type: Set(TaskType::Instruct),
        base_model: Set("tiny-1m".into()),
        hours_to_complete: Set(1.0),
        deadline_ms: Set(0),
        recorded_at_ms: Set(0),
    }
    .insert(&store)
    .await
    .unwrap();
    for miner in ["a", "b"] {
        assignment::ActiveModel {
            task_id: Set("race".into()),
            miner_id: Set(miner.into()),
            assignment_id: Set(miner.into()),
            cohort_size: Set(2),
            recorded_at_ms: Set(0),
        }
        .insert(&store)
        .await
        .unwrap();
        let result = valid("race", miner, 1.0, 1.0, if miner == "a" { 1 } else { 2 });
        evaluation::ActiveModel {
            evaluation_id: Set(result.evaluation_id.clone()),
            task_id: Set("race".into()),
            miner_id: Set(miner.into()),
            kind: Set(EvaluationKind::MinerSubmission),
            payload: Set(result.encode_to_vec()),
            payload_sha256: Set(gradients_bus::objects::sha256_hex(&result.encode_to_vec())),
            received_at_ms: Set(0),
        }
        .insert(&store)
        .await
        .unwrap();
    }
    let bus = sandbox.bus.clone();
    let finalizers: Vec<_> = (0..6)
        .map(|_| {
            let metrics = gradients_telemetry::Metrics::new("test");
            gradients_ledger::Finalizer {
                db: store.clone(),
                settings: sandbox.settings.ledger.clone(),
                models: sandbox.settings.models.clone(),
                outbox: gradients_store::outbox::Relay::new(store.clone(), bus.clone(), metrics.clone()),
                metrics,
                evidence: None,
            }
        })
        .collect();
    let outcomes = futures::future::join_all(finalizers.iter().map(|f| f.try_finalize("race", 10))).await;
    let now: Vec<_> = outcomes.iter().filter(|o| matches!(o, Ok(gradients_ledger::Finalized::Now(2)))).collect();
    assert_eq!(now.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_eq!(sandbox.entry_count().await, 2);
    // Equal losses: a duplicate, and the earlier submission (a) wins.
    let result = finalizers[0].try_finalize("race", 20).await.unwrap();
    assert_eq!(result, gradients_ledger::Finalized::Already);
}

/// Queries: a miner's entries within a period and paged; an export of everything; typed
/// errors for an unknown task and a bad page token. A poison evaluation and a conflicting
/// second evaluation go to the dead-letter subject; the first evaluation stands.
#[tokio::test]
async fn queries_paging_and_bad_events() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |_| {}).await;
    let now = Timestamp::now().unix_ms;
    for t in 0..5 {
        let task_id = format!("q{t}");
        sandbox.task_created(&task_id, TaskType::Grpo, 1.0, now + HOUR_MS).await;
        sandbox.assign(&task_id, &["x", "y"]).await;
        sandbox.evaluation(&format!("{task_id}-x"), &valid(&task_id, "x", 2.0, 2.0, now)).await;
        sandbox.evaluation(&format!("{task_id}-y"), &valid(&task_id, "y", 1.0, 1.0, now)).await;
    }
    assert_eq!(sandbox.wait_for_results(5).await, 5);
    // GRPO: higher is better, so x wins every task.
    assert_eq!(sandbox.client.task("q0").await.unwrap().result.unwrap().winner_miner_id, "x");

    let x_entries = sandbox
        .client
        .all_entries(&LedgerEntriesRequest { miner_id: "x".into(), page_size: 2, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(x_entries.len(), 5);
    assert!(x_entries.iter().all(|e| e.miner_id == "x" && e.score == 3.0));
    let everything =
        sandbox.client.all_entries(&LedgerEntriesRequest { page_size: 3, ..Default::default() }).await.unwrap();
    assert_eq!(everything.len(), 10);
    let future_only =
        sandbox.client.entries(&LedgerEntriesRequest { since_ms: now + HOUR_MS, ..Default::default() }).await.unwrap();
    assert!(future_only.entries.is_empty());
    let past_only =
        sandbox.client.entries(&LedgerEntriesRequest { until_ms: now - 1, ..Default::default() }).await.unwrap();
    assert!(past_only.entries.is_empty());

    let missing = sandbox.client.task("nope").await.unwrap_err();
    assert_eq!(missing.code(), Some(gradients_proto::v1::ErrorCode::TaskNotFound));
    let bad_token = sandbox
        .client
        .entries(&LedgerEntriesRequest { page_token: "garbage".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), Some(gradients_proto::v1::ErrorCode::InvalidArgument));

    sandbox.publish(subjects::evaluations("q9"), "poison", b"\xff\xff not protobuf".to_vec()).await;
    let mut conflicting = valid("q0", "x", 0.1, 0.1, now);
    conflicting.evaluation_id = "a-different-evaluation".into();
    sandbox.evaluation("conflict", &conflicting).await;
    let dead_subject = subjects::dead_letter(subjects::consumers::LEDGER_EVALUATIONS);
    eventually(Duration::from_secs(10), "two dead letters", || async {
        let dead = sandbox.messages_on(streams::DEAD_LETTERS, &dead_subject).await.len();
        if dead >= 2 {
            Ok(())
        } else {
            Err(format!("{dead} dead letters"))
        }
    })
    .await;
    sandbox.wait_until_settled().await;
    assert_eq!(sandbox.messages_on(streams::DEAD_LETTERS, &dead_subject).await.len(), 2);
    let first_stands = sandbox.client.task("q0").await.unwrap().result.unwrap();
    assert_eq!(first_stands.entries.len(), 2);
}
