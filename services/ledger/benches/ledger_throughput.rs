//! Ledger throughput: entries per second from evaluation events to committed rows, beside
//! raw PostgreSQL inserts of the very same rows (one transaction per task, as the ledger
//! writes them) measured in the same run, as a ratio.
//!
//! `cargo bench -p gradients-ledger --bench ledger_throughput` (BENCH_TASKS, BENCH_MINERS
//! change the size). Needs the set-up's nats-server and PostgreSQL on 127.0.0.1:5432.

use std::time::{Duration, Instant};

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::{subjects, topology, Bus};
use gradients_config::Settings;
use gradients_proto::v1::{Assignment, EvaluationResult, EvaluationStatus, Task, TaskCreated, TaskType, Timestamp};
use gradients_store::entity::ledger::{entry, task_result};
use gradients_store::sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, PaginatorTrait, TransactionTrait};
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
    let tasks = env_or("BENCH_TASKS", 200);
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

    let store = gradients_store::connect(&settings.store).await?;
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

    // The anchor: the same rows straight into a fresh database, one transaction per task.
    let raw_db = ScratchDb::new(Backend::Postgres).await?;
    let raw =
        gradients_store::connect(&gradients_config::StoreSettings { url: raw_db.url().to_owned(), max_connections: 8 })
            .await?;
    let mut by_task: std::collections::HashMap<&str, Vec<&entry::Model>> = std::collections::HashMap::new();
    for row in &rows {
        by_task.entry(row.task_id.as_str()).or_default().push(row);
    }
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

    let entries = rows.len() as f64;
    let ledger_rate = entries / ledger_elapsed.as_secs_f64();
    let raw_rate = entries / raw_elapsed.as_secs_f64();
    println!(
        "ledger throughput: {tasks} tasks x {miners} miners = {} entries (PostgreSQL, one ledger replica)",
        rows.len()
    );
    println!("{:<44} {:>10} {:>12}", "path", "seconds", "entries/s");
    println!(
        "{:<44} {:>10.2} {:>12.0}",
        "events -> ledger -> committed entries",
        ledger_elapsed.as_secs_f64(),
        ledger_rate
    );
    println!("{:<44} {:>10.2} {:>12.0}", "raw inserts of the same rows (anchor)", raw_elapsed.as_secs_f64(), raw_rate);
    println!("ratio ledger / raw inserts: {:.2}", ledger_rate / raw_rate);
    Ok(())
}
