//! `gradients-loadtest`: drives tasks through the real pipeline (intake -> dispatch ->
//! evaluator -> ledger -> audit, every service a process of its own on a private NATS
//! server) at a set rate for a set time, with load miners that speak the whole miner
//! protocol but submit a model exported once instead of training. Reports per stage
//! throughput and latency percentiles, the messages per second the pipeline moved beside
//! the raw JetStream publish+ack rate of the same message sizes measured in the same run,
//! and, run again with 1, 2, 4... replicas of the scaled service, how throughput grows.
//! Writes `OUT/report.json`, `OUT/report.md` and `OUT/scaling.svg`.

mod drive;
mod market;
mod measure;
mod miners;
mod plot;
mod raw;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use gradients_bus::api::call;
use gradients_bus::Bus;
use gradients_config::NatsSettings;
use gradients_proto::v1::{ListMinersRequest, ListMinersResponse};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::drive::{now_ms, DriveOptions, Paid};
use crate::market::{Market, MarketOptions};
use crate::report::RunFigures;

/// Load test of the whole pipeline with real services, real NATS and load miners.
#[derive(Debug, Parser)]
#[command(name = "gradients-loadtest", version)]
struct Args {
    /// How long tasks are submitted, in seconds (each run).
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Tasks submitted per second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Where report.json, report.md and scaling.svg go.
    #[arg(long)]
    out: PathBuf,
    /// Replica counts of the scaled service, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    replicas: Vec<usize>,
    /// The service run as several processes (the busiest: the evaluator runs every model).
    #[arg(long, default_value = "evaluator", value_parser = ["intake", "dispatch", "evaluator", "ledger", "audit"])]
    scale: String,
    /// Load miners (each its own key and connection).
    #[arg(long, default_value_t = 4)]
    miners: usize,
    /// Miners dispatch assigns to each task (its min and max per task).
    #[arg(long, default_value_t = 2)]
    miners_per_task: usize,
    /// Rows in each task's data set (intake splits off test and synthetic rows).
    #[arg(long, default_value_t = 40)]
    rows: usize,
    /// Each task's time to complete, in hours (its deadline).
    #[arg(long, default_value_t = 0.05)]
    hours: f64,
    /// Customers (keys) the submits take turns between.
    #[arg(long, default_value_t = 8)]
    customers: usize,
    /// A NATS server already running on this machine (default: a private one per run).
    #[arg(long)]
    nats_url: Option<String>,
    /// Where the `gradients` binary is (default: beside this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Seconds for each raw JetStream measure (sequential, then windowed).
    #[arg(long, default_value_t = 3.0)]
    raw_seconds: f64,
    /// The longest wait, after the last submit, for every task to be paid and audited.
    #[arg(long, default_value_t = 300.0)]
    drain_seconds: f64,
    /// The services' log filter (their logs go to the run's folder).
    #[arg(long, default_value = "warn")]
    log_filter: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The load test's own warnings (a miner that could not submit); RUST_LOG for more.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if args.rate <= 0.0 || args.seconds <= 0.0 || args.replicas.is_empty() || args.replicas.contains(&0) {
        bail!("--rate and --seconds must be positive and every --replicas count at least 1");
    }
    if args.miners < args.miners_per_task || args.miners_per_task == 0 {
        bail!(
            "--miners ({}) must be at least --miners-per-task ({}), which must be at least 1",
            args.miners,
            args.miners_per_task
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?.parent().context("the binary's folder")?.to_owned(),
    };
    let work = tempfile::Builder::new().prefix("gradients-loadtest-").tempdir()?;
    // Exported once: every run's miners submit these.
    let submissions: Vec<miners::Submission> = (0..args.miners)
        .map(|i| miners::prepare(i, &work.path().join(format!("miner-model-{i}"))))
        .collect::<anyhow::Result<_>>()?;

    let mut runs = Vec::new();
    let mut metrics = serde_json::Map::new();
    for &replicas in &args.replicas {
        let dir = work.path().join(format!("run-{replicas}"));
        let (figures, exported) = run(&args, &bin_dir, &dir, replicas, &submissions).await?;
        println!("{}", report::table(&figures));
        metrics.insert(format!("replicas_{replicas}"), exported);
        runs.push(figures);
    }

    let config = serde_json::json!({
        "seconds": args.seconds,
        "rate": args.rate,
        "replicas": args.replicas,
        "scaled_service": args.scale,
        "miners": args.miners,
        "miners_per_task": args.miners_per_task,
        "rows": args.rows,
        "hours": args.hours,
        "customers": args.customers,
        "raw_seconds": args.raw_seconds,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    let json = report::report_json(&runs, config, serde_json::Value::Object(metrics));
    std::fs::write(args.out.join("report.json"), serde_json::to_vec_pretty(&json)?)?;
    let tables: String = runs.iter().map(report::table).collect::<Vec<_>>().join("\n");
    std::fs::write(args.out.join("report.md"), tables)?;
    plot::write(&args.out.join("scaling.svg"), &runs, &args.scale)?;
    println!("wrote {}/report.json, report.md and scaling.svg", args.out.display());
    Ok(())
}

/// One run: a fresh market with `replicas` processes of the scaled service.
async fn run(
    args: &Args,
    bin_dir: &std::path::Path,
    dir: &std::path::Path,
    replicas: usize,
    submissions: &[miners::Submission],
) -> anyhow::Result<(RunFigures, serde_json::Value)> {
    let options = MarketOptions {
        nats_url: args.nats_url.as_deref(),
        bin_dir,
        dir,
        scaled: &args.scale,
        replicas,
        miners_per_task: args.miners_per_task,
        log_filter: &args.log_filter,
    };
    eprintln!("run with {replicas} {} process(es): starting the market", args.scale);
    let mut market = Market::start(&options).await?;
    let nats = NatsSettings { url: vec![market.nats.url()], ..Default::default() };
    let bus = Bus::connect(&nats, "gradients-loadtest").await?;
    gradients_testkit::publish_base_model(&bus, miners::BASE_MODEL).await?;

    let stop = CancellationToken::new();
    let mut miner_loops = JoinSet::new();
    for (i, submission) in submissions.iter().enumerate() {
        let miner_bus = Bus::connect(&nats, &format!("gradients-loadtest-miner-{i}")).await?;
        let key = dir.join(format!("miner-{i}.key"));
        let (miner, beat) =
            miners::LoadMiner::register(miner_bus, submission.clone(), market.dispatch_key.clone(), &key).await?;
        miner_loops.spawn(miner.run(beat, stop.clone()));
    }
    wait_for_miners(&bus, submissions.len()).await?;

    let paid = Paid::listen(&bus).await?;
    let stored_before = measure::all_stored_messages(&bus.jetstream).await?;
    let since_ms = now_ms();
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{msg} [{elapsed_precise}] {bar:40} {pos}/{len} tasks paid")?);
    bar.set_message(format!("replicas {replicas}: driving"));
    let ticker = {
        let (bar, paid, per_task) = (bar.clone(), paid.clone(), args.miners_per_task);
        tokio::spawn(async move {
            loop {
                bar.set_position(paid.complete_any(per_task) as u64);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let drive_options = DriveOptions {
        seconds: args.seconds,
        rate: args.rate,
        rows: args.rows,
        hours: args.hours,
        customers: args.customers,
        run_label: format!("loadtest-{}-{replicas}", uuid::Uuid::new_v4()),
    };
    let driven = drive::drive(&bus, &drive_options, &bar).await;
    bar.set_message(format!("replicas {replicas}: draining"));
    let accepted: Vec<String> = driven.iter().map(|d| d.task_id.clone()).filter(|t| !t.is_empty()).collect();
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_seconds);
    while paid.complete(&accepted, args.miners_per_task) < accepted.len() && Instant::now() < deadline {
        if let Some(exited) = market.exited() {
            bail!("a service died under load: {exited}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The audit captures the ledger's entries after the ledger stored them.
    while measure::audit_caught_up(&bus.jetstream).await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ticker.abort();
    bar.set_position(paid.complete(&accepted, args.miners_per_task) as u64);
    bar.finish_with_message(format!("replicas {replicas}: done"));

    let observed = measure::observe(&bus, &driven, since_ms).await?;
    let stored = measure::all_stored_messages(&bus.jetstream).await?.saturating_sub(stored_before);
    let ceiling = raw::measure(&bus.jetstream, &observed.sizes, args.raw_seconds).await?;
    let figures = report::figures(replicas, market.process_names(), &driven, &observed, stored, &ceiling);
    let exported = exported_metrics(&market).await;

    stop.cancel();
    while let Some(done) = miner_loops.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            eprintln!("a load miner ended with an error: {e:#}");
        }
    }
    market.stop().await;
    Ok((figures, exported))
}

/// Waits until dispatch lists `n` live miners.
async fn wait_for_miners(bus: &Bus, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let answer: Result<ListMinersResponse, _> = call(
            &bus.client,
            gradients_bus::subjects::api::miners(gradients_bus::subjects::api::MINERS_LIST),
            &ListMinersRequest {},
            Duration::from_secs(5),
        )
        .await;
        let live = answer.map(|a| a.miners.len()).unwrap_or(0);
        if live >= n {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("dispatch lists {live} live miners of {n} after a minute");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 17 §5's check while the market is up: does every process export consumer lag,
/// handler latency and outcomes (samples, not only the families' descriptions)?
async fn exported_metrics(market: &Market) -> serde_json::Value {
    let mut by_process = serde_json::Map::new();
    for (name, page) in market.metrics_pages().await {
        let has = |family: &str| page.contains(&format!("{family}{{"));
        by_process.insert(
            name,
            serde_json::json!({
                "consumer_lag": has("gradients_consumer_pending_messages"),
                "handler_latency": has("gradients_handler_duration_seconds_count"),
                "outcomes": has("gradients_messages_handled_total"),
            }),
        );
    }
    serde_json::Value::Object(by_process)
}
