//! The audit's tests on the testkit's sandbox (a private nats-server and a scratch audit
//! store): audit replicas in-process (or as real processes), and a publisher of real events.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use gradients_audit::client::AuditClient;
use gradients_audit::store::entity::record;
use gradients_audit::AuditError;
use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::streams;
use gradients_config::Settings;
pub use gradients_testkit::eventually;
use gradients_testkit::{Backend, Services};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};

/// The audit under test on the testkit's sandbox (its server, store, settings and bus are
/// reached through `Deref`).
pub struct Sandbox {
    base: gradients_testkit::Sandbox,
    pub client: AuditClient,
    /// A direct connection to the audit store, for counting and tampering.
    pub store: DatabaseConnection,
    replicas: Services<AuditError>,
}

impl Deref for Sandbox {
    type Target = gradients_testkit::Sandbox;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl DerefMut for Sandbox {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.base
    }
}

impl Sandbox {
    /// A sandbox on `backend` with no audit running yet.
    pub async fn new(backend: Backend, tweak: impl FnOnce(&mut Settings) + Send) -> Sandbox {
        let base = gradients_testkit::Sandbox::builder()
            .store(backend)
            .client_name("audit-test")
            .settings(|settings| {
                settings.nats.ack_wait_ms = 2_000;
                settings.audit.checkpoint_interval_ms = 60_000;
                settings.audit.reorder_delay_ms = 50;
            })
            .settings(tweak)
            .build()
            .await;
        let store = gradients_audit::connect_store(&base.settings).await.expect("audit store");
        let client = AuditClient::new(base.bus.client.clone(), Duration::from_secs(10));
        Sandbox { base, client, store, replicas: Services::new() }
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
        let settings = self.base.settings.clone();
        self.replicas.spawn(|stop| gradients_audit::run(settings, stop));
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

    /// Waits until every audit consumer has been handed and has acknowledged everything
    /// (a late duplicate would be pending or awaiting its ack), so a count is final.
    pub async fn wait_until_settled(&self) {
        eventually(Duration::from_secs(60), "the audit settled", || async {
            for (stream, _, consumer) in streams::AUDITED {
                gradients_testkit::consumer_settled(&self.bus.jetstream, stream, consumer).await?;
            }
            Ok::<(), String>(())
        })
        .await;
    }

    /// Stops every replica and waits for them.
    pub async fn stop(&mut self) {
        for outcome in self.replicas.stop_all().await {
            outcome.expect("the audit ran without error");
        }
    }
}

/// The `gradients-audit` binary cargo built for these tests.
pub fn audit_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gradients-audit"))
}
