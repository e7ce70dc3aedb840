//! How long a small submit takes while large ones are being read, parsed and split.
//!
//! Intake runs in-process on its own Tokio runtime (`BENCH_WORKERS` worker threads, default
//! 2, as on a small host), against a private nats-server and a SQLite database; the
//! clients run on another runtime, so what is measured is intake's answer time, not the
//! bench's. First `BENCH_IDLE` small submits alone (the idle figure), then `BENCH_ROUNDS`
//! rounds of four large submits (`BENCH_LARGE_MB` MB each, uploaded before the clock
//! starts) with small submits one after another for as long as the large ones are in
//! flight. Prints p50/p99 of the small submits, idle and under load, and the large
//! submits' times. A plain program (`harness = false`): it prints numbers, it asserts none.

use std::time::{Duration, Instant};

use gradients_bus::Bus;
use gradients_config::Settings;
use gradients_intake::client::IntakeClient;
use gradients_intake::customer::CustomerKey;
use gradients_proto::v1::{SubmitTaskRequest, TaskType};
use gradients_testkit::{Backend, NatsServer, ScratchDb};
use tokio_util::sync::CancellationToken;

/// Large submits in flight at once.
const LARGE_AT_ONCE: usize = 4;
/// Rows of a small submit.
const SMALL_ROWS: usize = 40;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let workers = env_or("BENCH_WORKERS", 2);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let large_mb = env_or("BENCH_LARGE_MB", 40);
    let idle = env_or("BENCH_IDLE", 30);

    let clients = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let nats = NatsServer::start()?;
    let db = clients.block_on(ScratchDb::new(Backend::Sqlite))?;
    let mut settings = Settings::default();
    settings.nats.url = vec![nats.url()];
    settings.store.url = db.url().to_owned();
    settings.intake.http_addr = "127.0.0.1:0".to_owned();
    settings.intake.outbox_poll_ms = 200;

    // Intake on a runtime of its own: its workers are what a blocked submit would starve.
    let intake_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?;
    let shutdown = CancellationToken::new();
    let intake = intake_runtime.spawn(gradients_intake::run(settings.clone(), shutdown.clone()));

    let report = clients.block_on(measure(&settings, rounds, large_mb, idle));
    shutdown.cancel();
    let _ = intake_runtime.block_on(intake);
    let report = report?;
    println!("intake submit latency ({workers} intake workers, {rounds} rounds of {LARGE_AT_ONCE} x {large_mb} MB)");
    println!("  small submit, idle:           {}", report.idle.summary());
    println!("  small submit, 4 large in flight: {}", report.loaded.summary());
    println!("  large submit:                 {}", report.large.summary());
    Ok(())
}

/// Latencies of one kind of submit, in milliseconds.
#[derive(Default)]
struct Latencies(Vec<f64>);

impl Latencies {
    fn push(&mut self, elapsed: Duration) {
        self.0.push(elapsed.as_secs_f64() * 1000.0);
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    fn summary(&self) -> String {
        if self.0.is_empty() {
            return "no samples".to_owned();
        }
        format!(
            "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (n = {})",
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(100.0),
            self.0.len()
        )
    }
}

struct Report {
    idle: Latencies,
    loaded: Latencies,
    large: Latencies,
}

async fn measure(settings: &Settings, rounds: usize, large_mb: usize, idle_samples: usize) -> anyhow::Result<Report> {
    let bus = Bus::connect(&settings.nats, "intake-bench").await?;
    let client = |key: &CustomerKey| IntakeClient::new(bus.clone(), key.clone(), Duration::from_secs(300));
    wait_until_answering(&client(&CustomerKey::generate())).await?;
    prepare_market(&bus).await?;

    let small = client(&CustomerKey::generate());
    let mut report = Report { idle: Latencies::default(), loaded: Latencies::default(), large: Latencies::default() };
    let mut serial = 0usize;
    for _ in 0..idle_samples {
        serial += 1;
        report.idle.push(small_submit(&small, serial).await?);
    }

    // One customer per large submit: a customer may have only two submits in progress.
    let large_clients: Vec<IntakeClient> = (0..LARGE_AT_ONCE).map(|_| client(&CustomerKey::generate())).collect();
    for round in 0..rounds {
        let mut requests = Vec::new();
        for (i, large) in large_clients.iter().enumerate() {
            let data = rows(large_mb * 1024 * 1024 / ROW_BYTES, &format!("r{round}c{i}"));
            let dataset = large.upload_dataset(&data).await?;
            requests.push(request(&format!("large-{round}-{i}"), dataset));
        }
        let mut in_flight = Vec::new();
        for (large, request) in large_clients.iter().zip(requests) {
            let large = large.clone();
            in_flight.push(tokio::spawn(async move {
                let started = Instant::now();
                large.submit(&request).await.map(|_| started.elapsed())
            }));
        }
        while in_flight.iter().any(|handle| !handle.is_finished()) {
            serial += 1;
            report.loaded.push(small_submit(&small, serial).await?);
        }
        for handle in in_flight {
            report.large.push(handle.await??);
        }
    }
    Ok(report)
}

/// Uploads a small data set (not timed), then times its submit.
async fn small_submit(client: &IntakeClient, serial: usize) -> anyhow::Result<Duration> {
    let dataset = client.upload_dataset(&rows(SMALL_ROWS, &format!("small{serial}"))).await?;
    let request = request(&format!("small-{serial}"), dataset);
    let started = Instant::now();
    client.submit(&request).await?;
    Ok(started.elapsed())
}

fn request(key: &str, dataset: gradients_proto::v1::ObjectRef) -> SubmitTaskRequest {
    SubmitTaskRequest {
        idempotency_key: key.to_owned(),
        name: format!("bench {key}"),
        r#type: TaskType::Instruct as i32,
        base_model: BASE_MODEL.to_owned(),
        hours_to_complete: 1.0,
        dataset: Some(dataset),
        ..Default::default()
    }
}

/// The base model every bench task names.
const BASE_MODEL: &str = "tiny-1m";
/// About how long one generated row is.
const ROW_BYTES: usize = 400;

/// `n` distinct instruct rows of about [`ROW_BYTES`] each, as JSONL.
fn rows(n: usize, tag: &str) -> Vec<u8> {
    let filler = "lorem ipsum dolor sit amet ".repeat(12);
    let mut out = Vec::with_capacity(n * ROW_BYTES);
    for i in 0..n {
        let row = serde_json::json!({
            "instruction": format!("Summarise item {i} of set {tag}."),
            "input": filler,
            "output": format!("Item {i} of {tag}: {}", i * 7919 % 104_729),
        });
        out.extend_from_slice(row.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Waits until intake answers a request (any typed answer will do).
async fn wait_until_answering(client: &IntakeClient) -> anyhow::Result<()> {
    for _ in 0..600 {
        if let Err(gradients_bus::api::CallError::Service(_)) = client.get("no-such-task").await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("intake did not start answering")
}

/// What the market must hold before a task is accepted: its base model, published.
async fn prepare_market(bus: &Bus) -> anyhow::Result<()> {
    gradients_testkit::publish_base_model(bus, BASE_MODEL).await?;
    Ok(())
}
