//! Ledger throughput: entries per second from published events to committed rows, beside
//! two anchors measured in the same run on fresh PostgreSQL databases: raw inserts of the
//! result and entry rows (one transaction per task), and raw inserts of every row the ledger
//! durably writes per task (task, assignments, evaluations, result, entries, outbox; one
//! transaction per task). Every clock starts once its database is migrated and its input is
//! in place; the ledger's includes its own start (NATS connection, consumer declarations).
//!
//! `cargo bench -p gradients-ledger --bench ledger_throughput` (BENCH_TASKS, default 1000,
//! and BENCH_MINERS, default 5, change the size). Needs the set-up's nats-server and
//! PostgreSQL on 127.0.0.1:5432.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::{subjects, topology, Bus};
use gradients_config::Settings;
use gradients_proto::v1::{Assignment, EvaluationResult, EvaluationStatus, Task, TaskCreated, TaskType, Timestamp};
use gradients_store::entity::ledger::{assignment, entry, evaluation, task, task_result};
use gradients_store::entity::outbox;
use gradients_store::sea_orm::{
    ActiveModelTrait, DatabaseConnection, EntityTrait, IntoActiveModel, PaginatorTrait, TransactionTrait,
};
use gradients_testkit::{Backend, NatsServer, ScratchDb};
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn publish(bus: &Bus, subject: String, id: String, payload: Vec<u8>) -> anyhow::Result<()> {
    publish_event(&bus.jetstream, OutgoingEvent { subject, id, payload: payload.into(), traceparent: None }).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tasks = env_or("BENCH_TASKS", 1000);
    let miners = env_or("BENCH_MINERS", 5);
    let nats = NatsServer::start()?;
    let db = ScratchDb::new(Backend::Postgres).await?;
    let mut settings = Settings::default();
    settings.nats.url = vec![nats.url()];
    settings.store.url = db.url().to_owned();
    settings.ledger.http_addr = "127.0.0.1:0".to_owned();
    // Assignments are signed by dispatch, as the ledger requires.
    let dispatch = gradients_miner::Identity::generate();
    settings.ledger.dispatch_public_key = hex::encode(dispatch.public_key());
    // Evaluations are signed by the evaluator, as the ledger requires.
    let evaluator = gradients_miner::Identity::generate();
    settings.evaluator.public_key = hex::encode(evaluator.public_key());
    let bus = Bus::connect(&settings.nats, "ledger-bench").await?;
    topology::declare(&bus, &settings.nats).await?;

    // The input: every event published before the ledger starts, so the clock measures
    // the ledger alone.
    let now = Timestamp::now().unix_ms;
    for t in 0..tasks {
        let task_id = format!("bench-{t}");
        let task = Task {
            id: task_id.clone(),
            r#type: TaskType::Instruct as i32,
            base_model: "tiny-10m".into(),
            hours_to_complete: 1.0,
            deadline: Some(Timestamp { unix_ms: now + 3_600_000 }),
            ..Default::default()
        };
        let created = TaskCreated { event_id: task_id.clone(), task: Some(task), at: Some(Timestamp { unix_ms: now }) };
        publish(&bus, subjects::TASK_CREATED.into(), task_id.clone(), created.encode_to_vec()).await?;
        for m in 0..miners {
            let miner = format!("miner-{m}");
            let mut assignment = Assignment {
                assignment_id: format!("{task_id}/{miner}"),
                task_id: task_id.clone(),
                miner_id: miner.clone(),
                cohort_size: miners as u32,
                ..Default::default()
            };
            assignment.signature =
                dispatch
                    .sign_message(gradients_miner::identity::domains::ASSIGNMENT, &assignment, |a| a.signature.clear());
            publish(&bus, subjects::assignments(&miner), assignment.assignment_id.clone(), assignment.encode_to_vec())
                .await?;
            let mut result = EvaluationResult {
                evaluation_id: format!("eval/{task_id}/{miner}"),
                task_id: task_id.clone(),
                miner_id: miner.clone(),
                status: EvaluationStatus::Valid as i32,
                test_loss: Some(1.0 + (m as f64) * 0.01 + (t % 7) as f64 * 0.001),
                synth_loss: Some(1.0 + (m as f64) * 0.01),
                artifact_sha256: format!("{t}-{m}"),
                submitted_at: Some(Timestamp { unix_ms: now + m as i64 }),
                ..Default::default()
            };
            result.signature = evaluator
                .sign_message(gradients_miner::identity::domains::EVALUATION, &result, |r| r.signature.clear());
            publish(&bus, subjects::evaluations(&task_id), result.evaluation_id.clone(), result.encode_to_vec())
                .await?;
        }
    }

    let store = gradients_store::connect(&settings.store, gradients_store::Schema::Ledger).await?;
    let progress = ProgressBar::new(tasks as u64);
    progress.set_style(ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} tasks ({elapsed})")?);
    progress.set_message("ledger finalizing");
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let ledger = tokio::spawn(gradients_ledger::run(settings.clone(), shutdown.clone()));
    loop {
        let done = task_result::Entity::find().count(&store).await?;
        progress.set_position(done);
        if done as usize >= tasks {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "the ledger did not finish in 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ledger_elapsed = started.elapsed();
    progress.finish_and_clear();
    shutdown.cancel();
    ledger.await??;
    let rows = entry::Entity::find().all(&store).await?;
    let results = task_result::Entity::find().all(&store).await?;
    anyhow::ensure!(rows.len() == tasks * miners, "expected {} entries, found {}", tasks * miners, rows.len());

    // Anchor 1 (the figure the ledger was first measured against): the same result and entry
    // rows straight into a fresh database, one transaction per task.
    let mut by_task: HashMap<&str, Vec<&entry::Model>> = HashMap::new();
    for row in &rows {
        by_task.entry(row.task_id.as_str()).or_default().push(row);
    }
    let (raw_db, raw) = fresh_database().await?;
    let started = Instant::now();
    for result in &results {
        let txn = raw.begin().await?;
        result.clone().into_active_model().insert(&txn).await?;
        for row in by_task.get(result.task_id.as_str()).into_iter().flatten() {
            (*row).clone().into_active_model().insert(&txn).await?;
        }
        txn.commit().await?;
    }
    let raw_elapsed = started.elapsed();
    drop((raw, raw_db));

    // Anchor 2, the fair one: every row the ledger must durably write per task (task,
    // assignments, evaluations with their payloads, result, entries, outbox), one
    // transaction per task, one row per statement, as a straightforward service would.
    let ledger_tasks = task::Entity::find().all(&store).await?;
    let assignments = group(assignment::Entity::find().all(&store).await?, |a| a.task_id.clone());
    let evaluations = group(evaluation::Entity::find().all(&store).await?, |e| e.task_id.clone());
    let outbox_rows: HashMap<String, outbox::Model> =
        outbox::Entity::find().all(&store).await?.into_iter().map(|o| (o.id.clone(), o)).collect();
    let results_by_task: HashMap<&str, &task_result::Model> = results.iter().map(|r| (r.task_id.as_str(), r)).collect();
    let (full_db, full) = fresh_database().await?;
    let started = Instant::now();
    for task_row in &ledger_tasks {
        let id = task_row.task_id.as_str();
        let txn = full.begin().await?;
        task_row.clone().into_active_model().insert(&txn).await?;
        for row in assignments.get(id).into_iter().flatten() {
            row.clone().into_active_model().insert(&txn).await?;
        }
        for row in evaluations.get(id).into_iter().flatten() {
            row.clone().into_active_model().insert(&txn).await?;
        }
        if let Some(result) = results_by_task.get(id) {
            (*result).clone().into_active_model().insert(&txn).await?;
        }
        for row in by_task.get(id).into_iter().flatten() {
            (*row).clone().into_active_model().insert(&txn).await?;
            if let Some(event) = outbox_rows.get(&row.entry_id) {
                event.clone().into_active_model().insert(&txn).await?;
            }
        }
        txn.commit().await?;
    }
    let full_elapsed = started.elapsed();
    drop((full, full_db));

    let entries = rows.len() as f64;
    let ledger_rate = entries / ledger_elapsed.as_secs_f64();
    let raw_rate = entries / raw_elapsed.as_secs_f64();
    let full_rate = entries / full_elapsed.as_secs_f64();
    println!(
        "ledger throughput: {tasks} tasks x {miners} miners = {} entries (PostgreSQL, one ledger replica)",
        rows.len()
    );
    println!("{:<58} {:>10} {:>12}", "path", "seconds", "entries/s");
    let line = |path: &str, elapsed: Duration, rate: f64| {
        println!("{path:<58} {:>10.2} {rate:>12.0}", elapsed.as_secs_f64());
    };
    line("events -> ledger -> committed entries", ledger_elapsed, ledger_rate);
    line("anchor 1: raw inserts of results + entries", raw_elapsed, raw_rate);
    line("anchor 2: raw inserts of every durable row of the ledger", full_elapsed, full_rate);
    println!("ratio ledger / anchor 1: {:.2}", ledger_rate / raw_rate);
    println!("ratio ledger / anchor 2: {:.2}", ledger_rate / full_rate);
    Ok(())
}

/// A scratch PostgreSQL database with the schema applied (before any clock starts).
async fn fresh_database() -> anyhow::Result<(ScratchDb, DatabaseConnection)> {
    let db = ScratchDb::new(Backend::Postgres).await?;
    let settings = gradients_config::StoreSettings { url: db.url().to_owned(), max_connections: 8 };
    let connection = gradients_store::connect(&settings, gradients_store::Schema::Ledger).await?;
    Ok((db, connection))
}

/// `rows` grouped by `key`.
fn group<T>(rows: Vec<T>, key: impl Fn(&T) -> String) -> HashMap<String, Vec<T>> {
    let mut groups: HashMap<String, Vec<T>> = HashMap::new();
    for row in rows {
        groups.entry(key(&row)).or_default().push(row);
    }
    groups
}
