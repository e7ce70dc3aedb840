//! Faults with real processes (issue 17 §3): every service runs as its own process
//! (`gradients serve`) on a PostgreSQL database of its own, load miners submit real ONNX
//! models, customers submit through intake, and a test breaks something while tasks flow:
//! - each service SIGKILLed in turn, then all five at once, each time started again;
//! - every PostgreSQL connection of the test's own databases terminated, again and again;
//! - the ledger and the audit held past their ack wait by a lock on their tables, so
//!   JetStream redelivers what they are still working on (to a second replica, and to the
//!   same process);
//! - NATS absent when the services start: they wait with back-off, report not ready, and
//!   work once it appears.
//!
//! After each, [`ProcessMarket::assert_whole`]: no accepted task lost, every one scored
//! on every miner's evaluation, no evaluation, ledger entry or audit record doubled,
//! nothing dead-lettered, the audit log verified against its signed checkpoints.
//!
//! The scenarios run one at a time (each is a whole market of processes on a small machine).

#[path = "common/load_miners.rs"]
mod load_miners;
#[path = "common/processes.rs"]
mod processes;

use std::time::{Duration, Instant};

use gradients_bus::subjects::{consumers, streams};
use gradients_testkit::{eventually, NatsServer};
use processes::{ProcessMarket, Service};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

/// One market at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A market on a private single-node NATS, every service ready, the miners live.
async fn running_market(nats: &NatsServer, tweak: impl FnOnce(&mut ProcessMarket)) -> ProcessMarket {
    let mut market = ProcessMarket::new(vec![nats.url()], 1).await;
    tweak(&mut market);
    market.publish_base_model().await;
    market.start_all();
    market.wait_ready().await;
    market.start_miners().await;
    market
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_killed_mid_flow_then_restarted_loses_and_doubles_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let nats = NatsServer::start().unwrap();
    let mut market = running_market(&nats, |_| {}).await;
    let rounds: [&[Service]; 6] = [
        &[Service::Intake],
        &[Service::Dispatch],
        &[Service::Evaluator],
        &[Service::Ledger],
        &[Service::Audit],
        &Service::ALL,
    ];
    let mut tasks = Vec::new();
    for (round, victims) in rounds.iter().enumerate() {
        // Two tasks under way (and the earlier rounds' still flowing) when the kill comes.
        tasks.push(market.submit(&format!("kill-{round}-a")).await);
        tasks.push(market.submit(&format!("kill-{round}-b")).await);
        if victims.contains(&Service::Dispatch) {
            // Dispatch dies with offers out: the miners' answers are never recorded.
            market.wait_for_offer_out().await;
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        market.kill(victims).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        market.restart(victims);
    }
    market.wait_ready().await;
    market.assert_whole(&tasks).await;
    // Dispatch died twice with offers out; the miners it never heard were asked again.
    let db = Database::connect(market.database(Service::Dispatch).url()).await.unwrap();
    let unanswered = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT task_id, miner_id, outcome, reason FROM dispatch_offers WHERE outcome <> 'accepted'",
        ))
        .await
        .unwrap();
    assert!(unanswered.is_empty(), "offers lost to a crash: {unanswered:?}");
    eprintln!("{} tasks through 6 kills: whole after {:.1?}", tasks.len(), started.elapsed());
}

/// `SELECT pg_terminate_backend(pid)` for every other connection to the database at `url`
/// (a test's own database, never another); how many were terminated.
async fn terminate_connections(url: &str) -> u64 {
    let db = Database::connect(url).await.expect("connect to the test's database");
    let terminated = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ))
        .await
        .expect("terminate the database's connections")
        .len() as u64;
    db.close().await.expect("close");
    terminated
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_postgres_connections_mid_flow_lose_and_double_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = NatsServer::start().unwrap();
    let mut market = running_market(&nats, |_| {}).await;
    let urls: Vec<String> = [Service::Intake, Service::Dispatch, Service::Ledger, Service::Audit]
        .into_iter()
        .map(|service| market.database(service).url().to_owned())
        .collect();
    // After each task, every connection of the four databases cut while the earlier tasks
    // are placed, evaluated, paid and audited.
    let mut terminated = 0;
    let mut tasks = Vec::new();
    for i in 0..5 {
        tasks.push(market.submit(&format!("pg-{i}")).await);
        tokio::time::sleep(Duration::from_millis(700)).await;
        for url in &urls {
            terminated += terminate_connections(url).await;
        }
    }
    eprintln!("{terminated} PostgreSQL connections terminated while {} tasks flowed", tasks.len());
    assert!(terminated > 0, "no connection was ever cut: the test proved nothing");
    market.assert_whole(&tasks).await;
}

/// `num_redelivered` of durable `consumer` on `stream`: messages handed out again because
/// their ack wait passed while still unacknowledged.
async fn redelivered(bus: &gradients_bus::Bus, stream: &str, consumer: &str) -> Result<usize, String> {
    let stream = bus.jetstream.get_stream(stream).await.map_err(|e| e.to_string())?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(consumer).await.map_err(|e| e.to_string())?;
    Ok(consumer.info().await.map_err(|e| e.to_string())?.num_redelivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_slowed_past_their_ack_wait_handle_redeliveries_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = NatsServer::start().unwrap();
    let mut market = running_market(&nats, |market| {
        for service in [Service::Ledger, Service::Audit] {
            market.tweak(service, "GRADIENTS__NATS__ACK_WAIT_MS", "1000");
        }
    })
    .await;
    // A second replica of each: a redelivery goes to whichever replica pulls first.
    market.start(Service::Ledger, 1);
    market.start(Service::Audit, 1);
    market.wait_ready().await;

    // A real database that stalls: writers to the ledger's evaluations and the audit's head
    // wait on our locks (readers do not) far longer than the 1 s ack wait.
    let ledger_db = Database::connect(market.database(Service::Ledger).url()).await.unwrap();
    let audit_db = Database::connect(market.database(Service::Audit).url()).await.unwrap();
    let ledger_lock = ledger_db.begin().await.unwrap();
    ledger_lock.execute_unprepared("LOCK TABLE ledger_evaluations IN EXCLUSIVE MODE").await.unwrap();
    let audit_lock = audit_db.begin().await.unwrap();
    audit_lock.execute_unprepared("LOCK TABLE audit_head IN EXCLUSIVE MODE").await.unwrap();

    let tasks = vec![market.submit("slow-0").await, market.submit("slow-1").await];
    let bus = market.bus().await;
    let (ledger, audit) =
        eventually(Duration::from_secs(120), "redeliveries to the stalled ledger and audit", || async {
            let ledger = redelivered(&bus, streams::EVALUATIONS, consumers::LEDGER_EVALUATIONS).await?;
            let audit = redelivered(&bus, streams::TASKS, consumers::AUDIT_TASKS).await?;
            (ledger > 0 && audit > 0).then_some((ledger, audit)).ok_or(format!("ledger {ledger}, audit {audit}"))
        })
        .await;
    eprintln!("redelivered while stalled: {ledger} evaluations to the ledger, {audit} task events to the audit");
    ledger_lock.commit().await.unwrap();
    audit_lock.commit().await.unwrap();
    market.assert_whole(&tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_started_before_nats_wait_for_it_and_then_work() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut nats = NatsServer::start().unwrap();
    let url = nats.url();
    nats.kill();
    let mut market = ProcessMarket::new(vec![url], 1).await;
    market.start_all();

    // Each keeps trying, with growing waits, and says it is not ready.
    for service in Service::ALL {
        eventually(Duration::from_secs(30), &format!("{} retrying with back-off", service.name()), || async {
            let log = market.log(service);
            let tries = log.matches("NATS unreachable").count();
            (tries >= 3 && log.contains("250ms") && log.contains("500ms")).then_some(()).ok_or(format!("{tries} tries"))
        })
        .await;
        let readiness = market.readiness(service).await;
        assert!(readiness.starts_with("HTTP/1.1 503"), "{} without NATS: {readiness}", service.name());
    }
    market.all_alive().expect("no service gave up without NATS");

    // NATS appears (same port, as a server coming up late would): all ready, tasks flow.
    nats.restart().unwrap();
    market.wait_ready().await;
    market.publish_base_model().await;
    market.start_miners().await;
    let tasks = vec![market.submit("late-nats-0").await, market.submit("late-nats-1").await];
    market.assert_whole(&tasks).await;
}
