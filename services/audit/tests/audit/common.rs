//! A sandbox for the audit's tests: a private nats-server, a scratch audit store, audit
//! replicas in-process (or as real processes), and a publisher of real events.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use gradients_audit::client::AuditClient;
use gradients_audit::store::entity::record;
use gradients_audit::AuditError;
use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::{topology, Bus};
use gradients_config::Settings;
use gradients_testkit::{Backend, NatsServer, ScratchDb};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The audit under test and what it stands on.
pub struct Sandbox {
    pub nats: NatsServer,
    pub db: ScratchDb,
    pub settings: Settings,
    pub bus: Bus,
    pub client: AuditClient,
    /// A direct connection to the audit store, for counting and tampering.
    pub store: DatabaseConnection,
    /// Holds the audit's key file.
    pub dir: TempDir,
    replicas: Vec<(CancellationToken, JoinHandle<Result<(), AuditError>>)>,
}

impl Sandbox {
    /// A sandbox on `backend` with no audit running yet.
    pub async fn new(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Sandbox {
        gradients_telemetry::init_for_tests();
        let nats = NatsServer::start().expect("nats-server");
        let db = ScratchDb::new(backend).await.expect("scratch database");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::default();
        settings.nats.url = vec![nats.url()];
        settings.nats.retry_backoff_ms = 50;
        settings.nats.ack_wait_ms = 2_000;
        settings.audit.store_url = db.url().to_owned();
        settings.audit.http_addr = "127.0.0.1:0".to_owned();
        settings.audit.key_file = dir.path().join("audit.key");
        settings.audit.checkpoint_interval_ms = 60_000;
        settings.audit.reorder_delay_ms = 50;
        tweak(&mut settings);
        let bus = Bus::connect(&settings.nats, "audit-test").await.expect("connect");
        topology::declare(&bus, &settings.nats).await.expect("topology");
        let store = gradients_audit::connect_store(&settings).await.expect("audit store");
        let client = AuditClient::new(bus.client.clone(), Duration::from_secs(10));
        Sandbox { nats, db, settings, bus, client, store, dir, replicas: Vec::new() }
    }

    /// A sandbox with `replicas` audit processes running in-process.
    pub async fn start(backend: Backend, replicas: usize) -> Sandbox {
        let mut sandbox = Sandbox::new(backend, |_| {}).await;
        for _ in 0..replicas {
            sandbox.start_replica();
        }
        sandbox.wait_until_answering().await;
        sandbox
    }

    /// Starts one more audit replica in this process.
    pub fn start_replica(&mut self) {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(gradients_audit::run(self.settings.clone(), shutdown.clone()));
        self.replicas.push((shutdown, handle));
    }

    /// Waits until some audit replica answers its API.
    pub async fn wait_until_answering(&self) {
        eventually(Duration::from_secs(30), "the audit API answers", || async {
            match self.client.records(&Default::default()).await {
                Ok(_) => Some(()),
                Err(_) => None,
            }
        })
        .await;
    }

    /// The audit's public key.
    pub fn public_key(&self) -> [u8; 32] {
        gradients_miner::Identity::load(&self.settings.audit.key_file).expect("audit key").public_key()
    }

    /// Publishes `payload` on `subject` with event id `id`.
    pub async fn publish(&self, subject: &str, id: &str, payload: Vec<u8>) {
        publish_event(
            &self.bus.jetstream,
            OutgoingEvent {
                subject: subject.to_owned(),
                id: id.to_owned(),
                payload: payload.into(),
                traceparent: None,
            },
        )
        .await
        .expect("publish");
    }

    /// How many records the store holds.
    pub async fn records(&self) -> u64 {
        record::Entity::find().count(&self.store).await.expect("count")
    }

    /// Waits until the log holds `n` records.
    pub async fn wait_for_records(&self, n: u64) {
        eventually(Duration::from_secs(60), &format!("{n} records in the log"), || async {
            (self.records().await >= n).then_some(())
        })
        .await;
    }

    /// Stops every replica and waits for them.
    pub async fn stop(&mut self) {
        for (shutdown, handle) in self.replicas.drain(..) {
            shutdown.cancel();
            handle.await.expect("join").expect("the audit ran without error");
        }
    }
}

/// Waits until `check` returns `Some`, or fails the test naming `what`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `gradients-audit` binary cargo built for these tests.
pub fn audit_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gradients-audit"))
}
