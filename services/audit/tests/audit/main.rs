//! The audit's stories against real NATS and real PostgreSQL and SQLite stores.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{eventually, Sandbox};
use gradients_audit::document::{ProofFile, RecordKind};
use gradients_audit::offline::{self, VerifyError};
use gradients_audit::protocol::{CheckpointRequest, ProofRequest, RecordsRequest, StoredRecord};
use gradients_audit::store::entity::record;
use gradients_audit::verify::{verify_log, Finding, VerifyRunError};
use gradients_bus::subjects::{self, streams};
use gradients_proto::v1::{
    Assignment, EvaluationResult, LedgerEntry, TaskCreated, TaskStatusChanged, WeightsPublished,
};
use gradients_testkit::Backend;
use prost::Message;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};

/// One task's worth of market events, as the services publish them: (subject, id, payload).
fn market_events(task: &str) -> Vec<(String, String, Vec<u8>)> {
    let entry = |miner: &str| LedgerEntry {
        entry_id: format!("entry-{task}-{miner}"),
        task_id: task.into(),
        miner_id: miner.into(),
        ..Default::default()
    };
    let evaluation = |miner: &str| EvaluationResult {
        evaluation_id: format!("eval-{task}-{miner}"),
        task_id: task.into(),
        miner_id: miner.into(),
        test_loss: Some(1.5),
        ..Default::default()
    };
    let assignment = |miner: &str| Assignment {
        assignment_id: format!("assign-{task}-{miner}"),
        task_id: task.into(),
        miner_id: miner.into(),
        ..Default::default()
    };
    let status = |n: u32| TaskStatusChanged {
        event_id: format!("status-{task}-{n}"),
        task_id: task.into(),
        ..Default::default()
    };
    vec![
        (
            subjects::TASK_CREATED.into(),
            format!("created-{task}"),
            TaskCreated { event_id: format!("created-{task}"), ..Default::default() }.encode_to_vec(),
        ),
        (subjects::task_status(task), format!("status-{task}-1"), status(1).encode_to_vec()),
        (subjects::assignments("m1"), format!("assign-{task}-m1"), assignment("m1").encode_to_vec()),
        (subjects::assignments("m2"), format!("assign-{task}-m2"), assignment("m2").encode_to_vec()),
        (subjects::evaluations(task), format!("eval-{task}-m1"), evaluation("m1").encode_to_vec()),
        (subjects::evaluations(task), format!("eval-{task}-m2"), evaluation("m2").encode_to_vec()),
        (subjects::LEDGER_ENTRIES.into(), format!("entry-{task}-m1"), entry("m1").encode_to_vec()),
        (subjects::LEDGER_ENTRIES.into(), format!("entry-{task}-m2"), entry("m2").encode_to_vec()),
        (
            subjects::LEDGER_WEIGHTS.into(),
            format!("weights-{task}"),
            WeightsPublished { event_id: format!("weights-{task}"), ..Default::default() }.encode_to_vec(),
        ),
        (subjects::task_status(task), format!("status-{task}-2"), status(2).encode_to_vec()),
    ]
}

async fn publish_all(sandbox: &Sandbox, events: &[(String, String, Vec<u8>)]) {
    for (subject, id, payload) in events {
        sandbox.publish(subject, id, payload.clone()).await;
    }
}

/// Every stored record, in leaf order.
async fn all_records(sandbox: &Sandbox) -> Vec<record::Model> {
    record::Entity::find().order_by_asc(record::Column::LeafIndex).all(&sandbox.store).await.expect("records")
}

/// Each stream's records cover its sequences 1..=n once each, in order, with no alarm.
fn assert_complete(records: &[record::Model], expected_per_stream: &HashMap<&str, i64>) {
    let mut last: HashMap<String, i64> = HashMap::new();
    for (i, row) in records.iter().enumerate() {
        assert_eq!(row.leaf_index, i as i64, "leaf indexes are dense");
        assert_eq!(row.kind, "message", "no alarm expected: {row:?}");
        let previous = last.entry(row.stream.clone()).or_insert(0);
        assert_eq!(row.first_sequence, *previous + 1, "{} follows on without gap or repeat", row.stream);
        *previous = row.last_sequence;
    }
    for (stream, n) in expected_per_stream {
        assert_eq!(last.get(*stream).copied().unwrap_or(0), *n, "{stream} captured up to its last message");
    }
}

/// A market's events on every stream are captured in stream order without gaps; the log
/// verifies; a record's inclusion proof and a consistency proof between two checkpoints
/// verify offline with the public key alone; another key or a changed record fails; the
/// checkpoints are published on `gradients.audit.checkpoints`.
#[tokio::test]
async fn market_events_are_captured_and_prove_offline() {
    for backend in Backend::ALL {
        let mut sandbox = Sandbox::start(backend, 1).await;
        publish_all(&sandbox, &market_events("t1")).await;
        sandbox.wait_for_records(10).await;
        let expected = HashMap::from([
            (streams::TASKS, 3),
            (streams::ASSIGNMENTS, 2),
            (streams::EVALUATIONS, 2),
            (streams::LEDGER, 3),
        ]);
        assert_complete(&all_records(&sandbox).await, &expected);

        let first = sandbox.client.checkpoint(&CheckpointRequest { fresh: true, ..Default::default() }).await.unwrap();
        assert_eq!(first.checkpoint.tree_size, 10, "{backend}");
        let key = sandbox.public_key();
        let proof = sandbox
            .client
            .proof(&ProofRequest { msg_id: Some("entry-t1-m2".into()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(proof.record.subject, subjects::LEDGER_ENTRIES);
        let entry = LedgerEntry::decode(hex::decode(&proof.record.payload_hex).unwrap().as_slice()).unwrap();
        assert_eq!(entry.entry_id, "entry-t1-m2", "the record carries the event byte for byte");
        // Through a file, as an auditor would hold it.
        let file = sandbox.dir.path().join("proof.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&ProofFile::Inclusion(proof.clone())).unwrap()).unwrap();
        let read: ProofFile = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        offline::verify_file(&read, &key).expect("the inclusion proof verifies offline");

        let other_key = gradients_miner::Identity::generate().public_key();
        assert!(matches!(offline::verify_file(&read, &other_key), Err(VerifyError::BadSignature { .. })));
        let mut changed = proof.clone();
        changed.record.payload_hex.replace_range(0..2, "ff");
        assert!(
            matches!(offline::verify_inclusion(&changed, &key), Err(VerifyError::Proof(_))),
            "a changed payload fails"
        );
        let mut moved = proof.clone();
        moved.record.leaf_index += 1;
        assert!(offline::verify_inclusion(&moved, &key).is_err(), "a record claimed at another index fails");

        publish_all(&sandbox, &market_events("t2")[..3]).await;
        sandbox.wait_for_records(13).await;
        let second = sandbox.client.checkpoint(&CheckpointRequest { fresh: true, ..Default::default() }).await.unwrap();
        assert_eq!(second.checkpoint.tree_size, 13);
        let consistency = sandbox.client.consistency(10, 13).await.unwrap();
        offline::verify_file(&ProofFile::Consistency(consistency.clone()), &key).expect("13 extends 10");
        let mut forged = consistency.clone();
        forged.proof[0] = "00".repeat(32);
        assert!(offline::verify_consistency(&forged, &key).is_err());
        // An older record proven against the newer checkpoint, too.
        let old = sandbox
            .client
            .proof(&ProofRequest { leaf_index: Some(0), tree_size: Some(13), ..Default::default() })
            .await
            .unwrap();
        offline::verify_inclusion(&old, &key).unwrap();

        let report = verify_log(&sandbox.client, key).await.expect("the log verifies");
        assert_eq!((report.records, report.checkpoints, report.alarms), (13, 2, 0), "{backend}");
        // The export: every record with its proof, each line verifiable alone.
        let mut lines = Vec::new();
        let exported = gradients_audit::export::export_jsonl(&sandbox.client, 0, &mut lines).await.unwrap();
        assert_eq!(exported, 13);
        let lines: Vec<&[u8]> = lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 13);
        for (i, line) in lines.iter().enumerate() {
            let file: ProofFile = serde_json::from_slice(line).unwrap();
            assert_eq!(
                offline::verify_file(&file, &key).unwrap(),
                offline::Verified::Inclusion { leaf_index: i as u64, tree_size: 13 }
            );
        }
        let published =
            gradients_testkit::stream_messages(&sandbox.bus.jetstream, streams::AUDIT, subjects::AUDIT_CHECKPOINTS)
                .await;
        let sizes: Vec<u64> = published
            .iter()
            .map(|m| {
                serde_json::from_slice::<gradients_audit::document::SignedCheckpoint>(&m.payload)
                    .unwrap()
                    .checkpoint
                    .tree_size
            })
            .collect();
        assert_eq!(sizes, vec![10, 13], "{backend}: checkpoints are published");
        sandbox.stop().await;
    }
}

/// Two replicas share each stream's consumer and capture each message exactly once, in
/// stream order, with dense leaf indexes.
#[tokio::test]
async fn two_replicas_capture_each_message_once() {
    for backend in Backend::ALL {
        let mut sandbox = Sandbox::start(backend, 2).await;
        let n = 300;
        for i in 0..n {
            let entry = LedgerEntry { entry_id: format!("e{i}"), ..Default::default() };
            sandbox.publish(subjects::LEDGER_ENTRIES, &format!("e{i}"), entry.encode_to_vec()).await;
            if i % 3 == 0 {
                let evaluation = EvaluationResult { evaluation_id: format!("v{i}"), ..Default::default() };
                sandbox.publish(&subjects::evaluations("t"), &format!("v{i}"), evaluation.encode_to_vec()).await;
            }
        }
        sandbox.wait_for_records(n + n / 3).await;
        // Any late duplicate would still be pending or awaiting its ack: wait it out.
        sandbox.wait_until_settled().await;
        let records = all_records(&sandbox).await;
        assert_eq!(records.len() as u64, n + n / 3, "{backend}");
        assert_complete(
            &records,
            &HashMap::from([(streams::LEDGER, n as i64), (streams::EVALUATIONS, (n / 3) as i64)]),
        );
        let report = verify_log(&sandbox.client, sandbox.public_key()).await.unwrap();
        assert_eq!(report.records, n + n / 3);
        sandbox.stop().await;
    }
}

/// Messages the stream lost before the audit saw them become one gap record naming the
/// sequences; a payload that is not its subject's type is kept as an undecodable alarm.
/// Nothing is dropped and the log still verifies.
#[tokio::test]
async fn lost_and_undecodable_messages_become_alarms() {
    for backend in Backend::ALL {
        let mut sandbox = Sandbox::new(backend, |_| {}).await;
        for i in 1..=4 {
            let entry = LedgerEntry { entry_id: format!("e{i}"), ..Default::default() };
            sandbox.publish(subjects::LEDGER_ENTRIES, &format!("e{i}"), entry.encode_to_vec()).await;
        }
        let stream = sandbox.bus.jetstream.get_stream(streams::LEDGER).await.unwrap();
        stream.delete_message(2).await.unwrap();
        stream.delete_message(3).await.unwrap();
        sandbox.publish(subjects::LEDGER_ENTRIES, "garbage", vec![0xff, 0xff, 0xff, 0x01]).await;
        sandbox.start_replica();
        sandbox.wait_for_records(4).await;
        let records = all_records(&sandbox).await;
        let summary: Vec<(i64, i64, &str)> =
            records.iter().map(|r| (r.first_sequence, r.last_sequence, r.kind.as_str())).collect();
        assert_eq!(
            summary,
            vec![(1, 1, "message"), (2, 3, "gap"), (4, 4, "message"), (5, 5, "undecodable")],
            "{backend}"
        );
        assert!(records[1].note.contains("2..=3"), "{}", records[1].note);
        assert!(records[3].note.contains("LedgerEntry"), "{}", records[3].note);
        assert_eq!(records[3].payload, vec![0xff, 0xff, 0xff, 0x01], "the undecodable payload is kept");
        sandbox.client.checkpoint(&CheckpointRequest { fresh: true, ..Default::default() }).await.unwrap();
        let report = verify_log(&sandbox.client, sandbox.public_key()).await.unwrap();
        assert_eq!((report.records, report.alarms), (4, 2));
        sandbox.stop().await;
    }
}

/// The store refuses UPDATE and DELETE on the log. With the guard removed, as an attacker
/// with database access would, one changed byte is named by `verify` (the record whose
/// content no longer matches its leaf), and a change that also rewrites the stored leaf
/// hash is caught by the signed checkpoint.
#[tokio::test]
async fn a_changed_byte_is_detected_and_named() {
    for backend in Backend::ALL {
        let mut sandbox = Sandbox::start(backend, 1).await;
        publish_all(&sandbox, &market_events("t1")[..6]).await;
        sandbox.wait_for_records(6).await;
        sandbox.client.checkpoint(&CheckpointRequest { fresh: true, ..Default::default() }).await.unwrap();
        let key = sandbox.public_key();
        verify_log(&sandbox.client, key).await.expect("clean before tampering");

        for statement in [
            "UPDATE audit_records SET note = 'x' WHERE leaf_index = 3",
            "DELETE FROM audit_records WHERE leaf_index = 5",
        ] {
            let refused = sandbox.store.execute_unprepared(statement).await.expect_err(statement);
            assert!(refused.to_string().contains("append-only"), "{backend}: {refused}");
        }
        let unguard = match backend {
            Backend::Sqlite => "DROP TRIGGER audit_records_no_update",
            Backend::Postgres => "ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only",
        };
        sandbox.store.execute_unprepared(unguard).await.unwrap();
        let flip = match backend {
            Backend::Sqlite => "UPDATE audit_records SET payload = X'00' || substr(payload, 2) WHERE leaf_index = 3",
            Backend::Postgres => "UPDATE audit_records SET payload = set_byte(payload, 0, 0) WHERE leaf_index = 3",
        };
        sandbox.store.execute_unprepared(flip).await.unwrap();
        match verify_log(&sandbox.client, key).await {
            Err(VerifyRunError::Finding(Finding::RecordAltered { leaf_index, .. })) => {
                assert_eq!(leaf_index, 3, "{backend}")
            }
            other => panic!("{backend}: expected record 3 to be named, got {other:?}"),
        }
        // Rewrite the stored leaf hash to match the changed record: the signed root catches it.
        let page =
            sandbox.client.records(&RecordsRequest { from_leaf: 3, limit: 1, ..Default::default() }).await.unwrap();
        let StoredRecord { record, .. } = &page.records[0];
        let forged_leaf = hex::encode(record.leaf_hash().unwrap());
        let literal = match backend {
            Backend::Sqlite => format!("X'{forged_leaf}'"),
            Backend::Postgres => format!("'\\x{forged_leaf}'::bytea"),
        };
        sandbox
            .store
            .execute_unprepared(&format!("UPDATE audit_records SET leaf_hash = {literal} WHERE leaf_index = 3"))
            .await
            .unwrap();
        match verify_log(&sandbox.client, key).await {
            Err(VerifyRunError::Finding(Finding::RootMismatch { tree_size, first_suspect, .. })) => {
                assert_eq!((tree_size, first_suspect), (6, 0), "{backend}")
            }
            other => panic!("{backend}: expected the checkpoint to catch it, got {other:?}"),
        }
        assert!(matches!(records_kind(&sandbox, 3).await, RecordKind::Message));
        sandbox.stop().await;
    }
}

async fn records_kind(sandbox: &Sandbox, leaf: u64) -> RecordKind {
    let page =
        sandbox.client.records(&RecordsRequest { from_leaf: leaf, limit: 1, ..Default::default() }).await.unwrap();
    page.records[0].record.kind
}

/// The audit process killed with SIGKILL in the middle of a stream and started again
/// resumes where the log ends: no gap, no duplicate, and the log verifies.
#[tokio::test]
async fn sigkill_mid_stream_resumes_without_gap_or_duplicate() {
    for backend in Backend::ALL {
        sigkill_and_resume(backend).await;
    }
}

async fn sigkill_and_resume(backend: Backend) {
    let sandbox = Sandbox::new(backend, |_| {}).await;
    let spawn = || {
        std::process::Command::new(common::audit_binary())
            .env("GRADIENTS__NATS__URL", sandbox.nats.url())
            .env("GRADIENTS__NATS__ACK_WAIT_MS", "2000")
            .env("GRADIENTS__AUDIT__STORE_URL", &sandbox.settings.audit.store_url)
            .env("GRADIENTS__AUDIT__KEY_FILE", &sandbox.settings.audit.key_file)
            .env("GRADIENTS__AUDIT__HTTP_ADDR", "127.0.0.1:0")
            .env("GRADIENTS__AUDIT__BATCH_SIZE", "32")
            .env("GRADIENTS__AUDIT__REORDER_DELAY_MS", "50")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start gradients-audit")
    };
    let n: u64 = 1500;
    let publisher = {
        let bus = sandbox.bus.clone();
        tokio::spawn(async move {
            for i in 0..n {
                let entry = LedgerEntry { entry_id: format!("e{i}"), ..Default::default() };
                gradients_bus::event::publish_event(
                    &bus.jetstream,
                    gradients_bus::event::OutgoingEvent {
                        subject: subjects::LEDGER_ENTRIES.into(),
                        id: format!("e{i}"),
                        payload: entry.encode_to_vec().into(),
                        traceparent: None,
                    },
                )
                .await
                .expect("publish");
            }
        })
    };
    let mut first = spawn();
    eventually(Duration::from_secs(60), "the first process to capture 200 records", || async {
        (sandbox.records().await >= 200).then_some(())
    })
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let at_kill = sandbox.records().await;
    assert!(at_kill < n, "{backend}: killed mid-stream ({at_kill} of {n})");
    let mut second = spawn();
    publisher.await.unwrap();
    sandbox.wait_for_records(n).await;
    sandbox.wait_until_answering().await;
    sandbox.wait_until_settled().await;
    let records = all_records(&sandbox).await;
    assert_eq!(records.len() as u64, n);
    assert_complete(&records, &HashMap::from([(streams::LEDGER, n as i64)]));
    sandbox.client.checkpoint(&CheckpointRequest { fresh: true, ..Default::default() }).await.unwrap();
    let report = verify_log(&sandbox.client, sandbox.public_key()).await.unwrap();
    assert_eq!(report.records, n);
    second.kill().ok();
    second.wait().ok();
}

/// Reconcile recomputes a scripted market's rewards from the captured evaluations with
/// `gradients_scoring`: an honest ledger's entries and weights agree; a weights publication
/// with one wrong weight is reported with both values, and a wrong entry score too.
#[tokio::test]
async fn reconcile_reports_a_wrong_weight_and_a_wrong_score() {
    use gradients_audit::reconcile::{reconcile, Scope};
    use gradients_proto::v1::{
        EvaluationKind, EvaluationStatus, LedgerEntryKind, MinerWeight, Task, TaskType, Timestamp,
    };
    use gradients_scoring::{MinerResult, Outcome, ScoredTask};

    let mut sandbox = Sandbox::start(Backend::Sqlite, 1).await;
    let scoring = sandbox.settings.ledger.scoring.clone();
    let models = sandbox.settings.models.clone();
    let task = Task {
        id: "t1".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-1m".into(),
        hours_to_complete: 2.0,
        ..Default::default()
    };
    sandbox
        .publish(
            subjects::TASK_CREATED,
            "created-t1",
            TaskCreated { event_id: "created-t1".into(), task: Some(task), ..Default::default() }.encode_to_vec(),
        )
        .await;
    for miner in ["m1", "m2", "m3"] {
        let assignment = Assignment {
            assignment_id: format!("a-{miner}"),
            task_id: "t1".into(),
            miner_id: miner.into(),
            ..Default::default()
        };
        sandbox.publish(&subjects::assignments(miner), &format!("a-{miner}"), assignment.encode_to_vec()).await;
    }
    let evaluations = [("m1", 1.0, 1.1), ("m2", 2.0, 2.2)];
    for (miner, test, synth) in evaluations {
        let evaluation = EvaluationResult {
            evaluation_id: format!("eval-{miner}"),
            task_id: "t1".into(),
            miner_id: miner.into(),
            status: EvaluationStatus::Valid as i32,
            kind: EvaluationKind::MinerSubmission as i32,
            test_loss: Some(test),
            synth_loss: Some(synth),
            artifact_sha256: format!("sha-{miner}"),
            submitted_at: Some(Timestamp { unix_ms: 1_000 }),
            ..Default::default()
        };
        sandbox.publish(&subjects::evaluations("t1"), &format!("eval-{miner}"), evaluation.encode_to_vec()).await;
    }
    // The honest ledger's answer, by the rules: scores, work and weights.
    let results: Vec<MinerResult> = vec![
        MinerResult {
            miner_id: "m1".into(),
            outcome: Outcome::Valid { test_loss: 1.0, synth_loss: Some(1.1) },
            artifact_sha256: "sha-m1".into(),
            submitted_at_ms: 1_000,
        },
        MinerResult {
            miner_id: "m2".into(),
            outcome: Outcome::Valid { test_loss: 2.0, synth_loss: Some(2.2) },
            artifact_sha256: "sha-m2".into(),
            submitted_at_ms: 1_000,
        },
        MinerResult {
            miner_id: "m3".into(),
            outcome: Outcome::Failed { reason: "no evaluated submission by the deadline".into() },
            artifact_sha256: String::new(),
            submitted_at_ms: i64::MAX,
        },
    ];
    let scores = gradients_scoring::score_task(gradients_scoring::TaskType::Instruct, &results, &scoring);
    let work = gradients_scoring::task_work(2.0, models["tiny-1m"], "tiny-1m", &scoring);
    let paid_at = Timestamp::now().unix_ms;
    for score in &scores {
        let entry = LedgerEntry {
            entry_id: format!("entry-{}", score.miner_id),
            task_id: "t1".into(),
            miner_id: score.miner_id.clone(),
            kind: if score.score < 0.0 { LedgerEntryKind::Penalty } else { LedgerEntryKind::TaskScore } as i32,
            score: score.score,
            task_weight: work,
            rank: score.rank.unwrap_or(0),
            recorded_at: Some(Timestamp { unix_ms: paid_at }),
            ..Default::default()
        };
        sandbox.publish(subjects::LEDGER_ENTRIES, &entry.entry_id.clone(), entry.encode_to_vec()).await;
    }
    let history = [ScoredTask {
        task_id: "t1".into(),
        task_type: gradients_scoring::TaskType::Instruct,
        finished_at_ms: paid_at,
        work,
        scores: scores.iter().map(|s| (s.miner_id.clone(), s.score)).collect(),
    }];
    let weights: Vec<MinerWeight> = gradients_scoring::period_weights(&history, paid_at + 1, &scoring)
        .into_iter()
        .map(|w| MinerWeight { miner_id: w.miner_id, weight: w.weight })
        .collect();
    assert!(!weights.is_empty(), "someone earned something");
    let honest = WeightsPublished {
        event_id: "w-honest".into(),
        weights: weights.clone(),
        at: Some(Timestamp { unix_ms: paid_at + 1 }),
        ..Default::default()
    };
    sandbox.publish(subjects::LEDGER_WEIGHTS, "w-honest", honest.encode_to_vec()).await;
    sandbox.wait_for_records(10).await;

    let clean = reconcile(&sandbox.client, None, &Scope::default(), &scoring, &models).await.unwrap();
    assert!(clean.differences.is_empty(), "an honest ledger reconciles: {:#?}", clean.differences);
    assert_eq!((clean.tasks, clean.entries, clean.weights), (1, 3, 1));

    // The ledger is fed a wrong weight for m1.
    let mut wrong = weights.clone();
    let m1 = wrong.iter_mut().find(|w| w.miner_id == "m1").expect("m1 has a weight");
    let (right_weight, wrong_weight) = (m1.weight, m1.weight * 0.5);
    m1.weight = wrong_weight;
    let bad = WeightsPublished {
        event_id: "w-wrong".into(),
        weights: wrong,
        at: Some(Timestamp { unix_ms: paid_at + 2 }),
        ..Default::default()
    };
    sandbox.publish(subjects::LEDGER_WEIGHTS, "w-wrong", bad.encode_to_vec()).await;
    // And a correction that pays m2 as if it had won.
    let correction = LedgerEntry {
        entry_id: "entry-m2-fix".into(),
        task_id: "t1".into(),
        miner_id: "m2".into(),
        kind: LedgerEntryKind::Correction as i32,
        score: 3.0,
        task_weight: work,
        corrects_entry_id: "entry-m2".into(),
        recorded_at: Some(Timestamp { unix_ms: paid_at + 3 }),
        ..Default::default()
    };
    sandbox.publish(subjects::LEDGER_ENTRIES, "entry-m2-fix", correction.encode_to_vec()).await;
    sandbox.wait_for_records(12).await;
    let found = reconcile(&sandbox.client, None, &Scope::default(), &scoring, &models).await.unwrap();
    let weight = found
        .differences
        .iter()
        .find(|d| d.field == "weight" && d.source.contains("w-wrong"))
        .expect("the wrong weight is reported");
    assert_eq!(weight.miner_id, "m1");
    assert_eq!(
        (weight.ledger.as_str(), weight.recomputed.as_str()),
        (wrong_weight.to_string().as_str(), right_weight.to_string().as_str())
    );
    let score = found.differences.iter().find(|d| d.field == "score").expect("the wrong score is reported");
    assert_eq!((score.miner_id.as_str(), score.ledger.as_str(), score.recomputed.as_str()), ("m2", "3", "0"));
    assert!(score.evidence.iter().any(|e| e.starts_with("eval-m2")), "{:?}", score.evidence);
    sandbox.stop().await;
}

/// With the real ledger paying a task from signed events, reconcile agrees with both the
/// captured entries and the ledger's API; after one ledger row is changed in its database
/// (the append-only trigger dropped, as an attacker with database access would), reconcile
/// names that entry with both values.
#[tokio::test]
async fn reconcile_names_a_changed_ledger_row() {
    use gradients_audit::reconcile::{reconcile, Scope};
    use gradients_miner::identity::domains;
    use gradients_proto::v1::{EvaluationStatus, Task, TaskType, Timestamp};

    let mut sandbox = Sandbox::new(Backend::Sqlite, |_| {}).await;
    let ledger_db = gradients_testkit::ScratchDb::new(Backend::Sqlite).await.unwrap();
    let dispatch = gradients_miner::Identity::generate();
    let evaluator = gradients_miner::Identity::generate();
    let mut settings = sandbox.settings.clone();
    settings.store.url = ledger_db.url().to_owned();
    settings.ledger.http_addr = "127.0.0.1:0".to_owned();
    settings.ledger.weights_interval_ms = 300;
    settings.ledger.sweep_interval_ms = 200;
    settings.ledger.dispatch_public_key = hex::encode(dispatch.public_key());
    settings.evaluator.key_file = sandbox.dir.path().join("evaluator.key");
    evaluator.save(&settings.evaluator.key_file).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ledger = tokio::spawn(gradients_ledger::run(settings.clone(), shutdown.clone()));
    sandbox.start_replica();
    sandbox.wait_until_answering().await;

    let deadline = Timestamp::now().unix_ms + 3_600_000;
    let task = Task {
        id: "t1".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-1m".into(),
        hours_to_complete: 1.0,
        deadline: Some(Timestamp { unix_ms: deadline }),
        ..Default::default()
    };
    let created = TaskCreated { event_id: "t1".into(), task: Some(task), at: Some(Timestamp::now()) };
    sandbox.publish(subjects::TASK_CREATED, "t1", created.encode_to_vec()).await;
    for miner in ["m1", "m2"] {
        let mut assignment = Assignment {
            assignment_id: format!("t1/{miner}"),
            task_id: "t1".into(),
            miner_id: miner.into(),
            cohort_size: 2,
            ..Default::default()
        };
        assignment.signature = dispatch.sign_message(domains::ASSIGNMENT, &assignment, |a| a.signature.clear());
        sandbox
            .publish(&subjects::assignments(miner), &assignment.assignment_id.clone(), assignment.encode_to_vec())
            .await;
    }
    for (miner, test) in [("m1", 1.0), ("m2", 2.0)] {
        let mut result = EvaluationResult {
            evaluation_id: format!("eval/t1/{miner}"),
            task_id: "t1".into(),
            miner_id: miner.into(),
            submission_id: format!("sub/t1/{miner}"),
            status: EvaluationStatus::Valid as i32,
            test_loss: Some(test),
            synth_loss: Some(test + 0.1),
            artifact_sha256: format!("sha-{miner}"),
            evaluated_at: Some(Timestamp::now()),
            submitted_at: Some(Timestamp { unix_ms: 1_000 }),
            ..Default::default()
        };
        result.signature = evaluator.sign_message(domains::EVALUATION, &result, |r| r.signature.clear());
        sandbox.publish(&subjects::evaluations("t1"), &result.evaluation_id.clone(), result.encode_to_vec()).await;
    }
    // The ledger pays (two entries) and publishes weights; the audit captures all of it.
    eventually(Duration::from_secs(60), "the ledger's entries and weights in the log", || async {
        let records = all_records(&sandbox).await;
        let entries = records.iter().filter(|r| r.subject == subjects::LEDGER_ENTRIES).count();
        let weights = records.iter().filter(|r| r.subject == subjects::LEDGER_WEIGHTS).count();
        (entries == 2 && weights >= 1).then_some(())
    })
    .await;
    let scoring = settings.ledger.scoring.clone();
    let ledger_api = Some((&sandbox.bus.client, Duration::from_secs(10)));
    let clean = reconcile(&sandbox.client, ledger_api, &Scope::default(), &scoring, &settings.models).await.unwrap();
    assert!(clean.differences.is_empty(), "the honest ledger reconciles: {:#?}", clean.differences);
    assert_eq!((clean.tasks, clean.entries), (1, 4), "two captured entries and two from the API");
    assert!(clean.weights >= 1);

    // An attacker with database access rewrites m2's reward.
    let ledger_store = gradients_store::connect(&settings.store, gradients_store::Schema::Ledger).await.unwrap();
    ledger_store.execute_unprepared("DROP TRIGGER ledger_entries_no_update").await.unwrap();
    ledger_store.execute_unprepared("UPDATE ledger_entries SET score = 3.0 WHERE miner_id = 'm2'").await.unwrap();
    let found = reconcile(
        &sandbox.client,
        ledger_api,
        &Scope { task_id: Some("t1".into()), since_ms: 0 },
        &scoring,
        &settings.models,
    )
    .await
    .unwrap();
    assert_eq!(found.differences.len(), 1, "{:#?}", found.differences);
    let changed = &found.differences[0];
    assert_eq!(
        (
            changed.source.as_str(),
            changed.miner_id.as_str(),
            changed.field.as_str(),
            changed.ledger.as_str(),
            changed.recomputed.as_str()
        ),
        ("ledger API", "m2", "score", "3", "0")
    );
    assert!(changed.evidence.iter().any(|e| e.starts_with("eval/t1/m2")), "{:?}", changed.evidence);
    shutdown.cancel();
    ledger.await.unwrap().unwrap();
    sandbox.stop().await;
}

/// A dead letter is captured like any event, with the reason and origin its headers carry.
#[tokio::test]
async fn dead_letters_are_captured_with_their_reason() {
    use gradients_bus::worker::{DEAD_LETTER_REASON, DEAD_LETTER_SUBJECT};

    let mut sandbox = Sandbox::start(Backend::Sqlite, 1).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "dlq:ledger-evaluations:7");
    headers.insert(DEAD_LETTER_REASON, "poison: not an EvaluationResult");
    headers.insert(DEAD_LETTER_SUBJECT, "gradients.evaluations.t9");
    sandbox
        .bus
        .jetstream
        .publish_with_headers(subjects::dead_letter("ledger-evaluations"), headers, vec![1, 2, 3].into())
        .await
        .unwrap()
        .await
        .unwrap();
    sandbox.wait_for_records(1).await;
    let records = all_records(&sandbox).await;
    assert_eq!((records[0].stream.as_str(), records[0].kind.as_str()), (streams::DEAD_LETTERS, "message"));
    assert_eq!(records[0].msg_id, "dlq:ledger-evaluations:7");
    assert!(records[0].note.contains("poison: not an EvaluationResult"), "{}", records[0].note);
    assert!(records[0].note.contains("gradients.evaluations.t9"), "{}", records[0].note);
    assert_eq!(records[0].payload, vec![1, 2, 3]);
    sandbox.stop().await;
}

/// Messages the consumer already acknowledged but the store does not hold (a store
/// restored from an older backup, here an empty one) are read back from the stream when
/// the next message arrives: the log is rebuilt in order, nothing skipped.
#[tokio::test]
async fn a_store_behind_its_consumer_catches_up_from_the_stream() {
    let mut sandbox = Sandbox::start(Backend::Sqlite, 1).await;
    publish_all(&sandbox, &market_events("t1")[6..]).await;
    sandbox.wait_for_records(4).await;
    sandbox.stop().await;

    let restored = gradients_testkit::ScratchDb::new(Backend::Sqlite).await.unwrap();
    sandbox.settings.audit.store_url = restored.url().to_owned();
    sandbox.store = gradients_audit::connect_store(&sandbox.settings).await.unwrap();
    sandbox.start_replica();
    sandbox.wait_until_answering().await;
    let entry = LedgerEntry { entry_id: "late".into(), ..Default::default() };
    sandbox.publish(subjects::LEDGER_ENTRIES, "late", entry.encode_to_vec()).await;
    // The ledger stream heals at its next message (the tasks stream will at its own).
    sandbox.wait_for_records(4).await;
    let records = all_records(&sandbox).await;
    assert_complete(&records, &HashMap::from([(streams::LEDGER, 4)]));
    let ids: Vec<&str> = records.iter().map(|r| r.msg_id.as_str()).collect();
    assert_eq!(ids, vec!["entry-t1-m1", "entry-t1-m2", "weights-t1", "late"]);
    sandbox.stop().await;
}

/// A page of records always fits in one NATS reply: records carry their messages, so a
/// page of large ones ends early (with `next_leaf`) instead of never being answered, and
/// paging reads every record.
#[tokio::test]
async fn pages_of_large_records_fit_in_a_reply() {
    let mut sandbox = Sandbox::start(Backend::Sqlite, 1).await;
    // Three messages of 300 KB: their records (hex) are about 600 KB each, so three do not
    // fit in one reply of the server's 1 MB limit.
    for i in 0..3u8 {
        sandbox.publish(subjects::TASK_CREATED, &format!("large-{i}"), vec![i; 300_000]).await;
    }
    sandbox.wait_for_records(3).await;
    let mut from_leaf = 0;
    let mut leaves = Vec::new();
    loop {
        let page = sandbox
            .client
            .records(&RecordsRequest { from_leaf, limit: 1000, ..Default::default() })
            .await
            .expect("a page, not a timeout");
        assert!(!page.records.is_empty(), "every page holds at least one record");
        leaves.extend(page.records.iter().map(|r| r.record.leaf_index));
        match page.next_leaf {
            Some(next) => from_leaf = next,
            None => break,
        }
    }
    assert_eq!(leaves, [0, 1, 2], "every record once, in order");
    sandbox.stop().await;
}
