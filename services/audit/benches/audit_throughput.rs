//! Audit throughput and proof cost, each against its anchor in the same run.
//!
//! 1. Capture: the same `BENCH_MESSAGES` (default 20000) ledger entries, already in their
//!    stream, are (a) consumed and acknowledged by a raw JetStream pull consumer, then (b)
//!    captured by the audit service (start-up included) into a fresh SQLite store, each one a
//!    Merkle leaf with its subtree nodes, committed before its ack. Records/s of both and the
//!    ratio (target >= 0.5).
//! 2. Proofs: a log of `BENCH_PROOF_RECORDS` (default 1000000) records appended through the
//!    audit's own append path; then inclusion proofs for random leaves and a consistency
//!    proof, built from the store and checked: mean and worst time.
//!
//! `cargo bench -p gradients-audit` (needs the set-up's nats-server); `BENCH_BATCH` sets
//! `audit.batch_size`.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull;
use futures::StreamExt;
use gradients_audit::log::{append, Incoming, StreamProbe};
use gradients_audit::merkle::{self, consistency_ranges, inclusion_ranges};
use gradients_audit::store::entity::record;
use gradients_bus::subjects::{streams, LEDGER_ENTRIES};
use gradients_bus::{topology, Bus};
use gradients_config::Settings;
use gradients_proto::v1::LedgerEntry;
use gradients_testkit::{Backend, NatsServer, ScratchDb};
use prost::Message;
use sea_orm::{EntityTrait, PaginatorTrait};
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Appends never skip sequences here, so the stream is never asked.
struct Continuous;

impl StreamProbe for Continuous {
    async fn fetch(&self, _sequence: u64) -> Result<Option<Incoming>, String> {
        Err("the benchmark's sequences have no holes".into())
    }

    async fn first_present(&self, _from: u64, _before: u64) -> Result<u64, String> {
        Err("the benchmark's sequences have no holes".into())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages = env_or("BENCH_MESSAGES", 20_000);
    let proof_records = env_or("BENCH_PROOF_RECORDS", 1_000_000);
    capture(messages).await?;
    proofs(proof_records).await?;
    Ok(())
}

async fn capture(n: u64) -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let db = ScratchDb::new(Backend::Sqlite).await?;
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::default();
    settings.nats.url = vec![nats.url()];
    settings.audit.store_url = db.url().to_owned();
    settings.audit.http_addr = "127.0.0.1:0".to_owned();
    settings.audit.key_file = dir.path().join("audit.key");
    settings.audit.batch_size = env_or("BENCH_BATCH", settings.audit.batch_size as u64) as usize;
    let bus = Bus::connect(&settings.nats, "audit-bench").await?;
    topology::declare(&bus, &settings.nats).await?;

    // The input, pipelined: acks awaited in windows of 512.
    let mut pending = Vec::with_capacity(512);
    for i in 0..n {
        let entry = LedgerEntry {
            entry_id: format!("entry-{i:08}"),
            task_id: format!("task-{}", i / 5),
            miner_id: format!("m{}", i % 5),
            score: 3.0,
            task_weight: 1.0,
            ..Default::default()
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", entry.entry_id.as_str());
        pending.push(bus.jetstream.publish_with_headers(LEDGER_ENTRIES, headers, entry.encode_to_vec().into()).await?);
        if pending.len() == 512 {
            for ack in pending.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in pending.drain(..) {
        ack.await?;
    }

    // (a) Raw JetStream: a durable pull consumer, every message acknowledged.
    let stream = bus.jetstream.get_stream(streams::LEDGER).await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench-raw".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut acked = 0;
    while acked < n {
        let mut batch = consumer.fetch().max_messages(256).expires(Duration::from_secs(1)).messages().await?;
        while let Some(message) = batch.next().await {
            message.map_err(|e| anyhow::anyhow!(e))?.ack().await.map_err(|e| anyhow::anyhow!(e))?;
            acked += 1;
        }
    }
    let raw = n as f64 / started.elapsed().as_secs_f64();

    // (b) The audit service, from its start to the last committed record.
    let store = gradients_audit::connect_store(&settings).await?;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let service = tokio::spawn(gradients_audit::run(settings.clone(), shutdown.clone()));
    loop {
        if record::Entity::find().count(&store).await? >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let audited = n as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    service.await??;
    println!("capture of {n} messages (SQLite store, batch {}):", settings.audit.batch_size);
    println!("  raw JetStream consume+ack : {raw:>10.0} msg/s");
    println!("  audit capture (committed) : {audited:>10.0} records/s");
    println!("  ratio                     : {:>10.2} (target >= 0.5)", audited / raw);
    Ok(())
}

async fn proofs(n: u64) -> anyhow::Result<()> {
    let db = ScratchDb::new(Backend::Sqlite).await?;
    let store = gradients_audit::store::connect(db.url(), 2).await?;
    let payload = LedgerEntry {
        entry_id: "x".repeat(36),
        task_id: "t".repeat(36),
        miner_id: "m".repeat(41),
        ..Default::default()
    }
    .encode_to_vec();
    let started = Instant::now();
    let batch = 5_000;
    let mut next = 1;
    while next <= n {
        let end = (next + batch).min(n + 1);
        let incoming: Vec<Incoming> = (next..end)
            .map(|sequence| Incoming {
                sequence,
                subject: LEDGER_ENTRIES.into(),
                msg_id: format!("e{sequence}"),
                traceparent: String::new(),
                published_at_ms: 1,
                payload: payload.clone().into(),
                decoded: Ok(()),
                note: String::new(),
            })
            .collect();
        append(&store, streams::LEDGER, &incoming, &Continuous, 1).await?;
        next = end;
    }
    let built = started.elapsed();
    println!(
        "a log of {n} records appended in {built:.1?} ({:.0} records/s, one transaction per {batch})",
        n as f64 / built.as_secs_f64()
    );

    let root = gradients_audit::tree::root_at(&store, n).await?;
    let mut times = Vec::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let index = state % n;
        let started = Instant::now();
        let path = gradients_audit::tree::prove(&store, &inclusion_ranges(index, n)).await?;
        times.push(started.elapsed());
        let row = record::Entity::find_by_id(index as i64).one(&store).await?.expect("the record");
        let leaf: merkle::Hash = row.leaf_hash.as_slice().try_into()?;
        merkle::verify_inclusion(index, n, &leaf, &path, &root)?;
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "inclusion proof at {n} records (200 random leaves, from the store, verified): mean {mean:.2?}, worst {:.2?}",
        times.last().unwrap()
    );
    let old = n / 3 + 1;
    let started = Instant::now();
    let proof = gradients_audit::tree::prove(&store, &consistency_ranges(old, n)).await?;
    let took = started.elapsed();
    let old_root = gradients_audit::tree::root_at(&store, old).await?;
    merkle::verify_consistency(old, n, &old_root, &root, &proof)?;
    println!("consistency proof {old} -> {n}: {took:.2?} ({} hashes, verified)", proof.len());
    Ok(())
}
