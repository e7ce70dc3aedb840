//! The audit log: a record of every event and every reward that an auditor can verify
//! without trusting the operators.
//!
//! Capture ([`capture`]): a durable pull consumer on each stream of the system appends
//! every message, in stream order and exactly once across replicas and restarts, to an
//! append-only log in the audit's own store ([`log`], [`store`]). Each record is a leaf of
//! an RFC 6962 Merkle tree ([`merkle`]) whose root is kept incrementally; lost sequence
//! numbers and undecodable payloads become alarm records. Checkpoints ([`checkpoint`]):
//! signed tree heads, periodic and on demand, stored and published on
//! `gradients.audit.checkpoints`. Proofs and records are served by the micro service
//! `gradients-audit` ([`api`]); [`offline`] checks them with nothing but the public key,
//! and [`verify`] walks the whole log through the API.

mod api;
mod capture;
pub mod checkpoint;
pub mod client;
mod decode;
pub mod document;
pub mod export;
pub mod log;
pub mod merkle;
pub mod offline;
pub mod protocol;
pub mod reconcile;
pub mod store;
pub mod tree;
pub mod verify;

use std::sync::Arc;

use async_nats::jetstream::stream;
use gradients_bus::lifecycle::{Lifecycle, LoopPanicked};
use gradients_bus::subjects::streams;
use gradients_bus::{Bus, BusError};
use gradients_config::Settings;
use gradients_miner::{Identity, IdentityError};
use gradients_telemetry::Metrics;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

/// The service's name in metrics, logs and the NATS connection.
pub const SERVICE_NAME: &str = "audit";
/// Version reported by `$SRV.INFO`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the audit service stopped.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// NATS could not be reached or set up.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The audit store could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] gradients_store::StoreError),
    /// The signing key could not be read or made.
    #[error(transparent)]
    Key(#[from] IdentityError),
    /// The metrics and health endpoint could not start.
    #[error(transparent)]
    Telemetry(#[from] gradients_telemetry::TelemetryError),
    /// One of the service's loops panicked.
    #[error(transparent)]
    Panicked(#[from] LoopPanicked),
}

/// What every loop and handler shares.
pub(crate) struct Context {
    pub settings: Settings,
    pub bus: Bus,
    pub db: DatabaseConnection,
    pub identity: Identity,
    pub metrics: Metrics,
}

/// The audit's key: read from `audit.key_file`, or made and saved there on first start.
pub fn load_or_create_identity(settings: &Settings) -> Result<Identity, IdentityError> {
    Identity::load_or_create(&settings.audit.key_file)
}

/// Opens the audit's store as configured (migrating it).
pub async fn connect_store(settings: &Settings) -> Result<DatabaseConnection, gradients_store::StoreError> {
    store::connect(&settings.audit.store_url, settings.audit.max_connections).await
}

/// Runs the audit service until `shutdown` is cancelled, then drains.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), AuditError> {
    let identity = load_or_create_identity(&settings)?;
    let lifecycle = Lifecycle::new(SERVICE_NAME, &settings.nats).health_on(&settings.audit.http_addr);
    let Some(mut running) = lifecycle.start::<AuditError>(&shutdown).await? else { return Ok(()) };
    let bus = running.bus.clone();
    declare_checkpoint_stream(&bus, &settings).await?;
    let db = connect_store(&settings).await?;
    let ctx = Arc::new(Context { settings: settings.clone(), bus, db, identity, metrics: running.metrics.clone() });

    for (stream, subjects, durable) in streams::AUDITED {
        let (ctx, stop) = (ctx.clone(), running.stop_token());
        let audited = capture::Audited { stream, subjects, durable };
        running.spawn(async move { Ok(capture::run(ctx, audited, stop).await?) });
    }
    {
        let ctx = ctx.clone();
        running.spawn_until_stopped(|stop| async move { checkpoint_periodically(&ctx, stop).await });
    }
    {
        let (ctx, stop) = (ctx.clone(), running.stop_token());
        running.spawn(async move { Ok(api::serve(ctx, stop).await?) });
    }
    running.ready();
    tracing::info!(service = gradients_bus::subjects::api::AUDIT_SERVICE, version = VERSION, public_key = %hex::encode(ctx.identity.public_key()), "audit ready");
    running.run().await
}

/// The stream that keeps published checkpoints, so auditors can read them later.
async fn declare_checkpoint_stream(bus: &Bus, settings: &Settings) -> Result<(), BusError> {
    bus.jetstream
        .get_or_create_stream(stream::Config {
            name: streams::AUDIT.to_owned(),
            subjects: vec![streams::AUDIT_SUBJECTS.to_owned()],
            description: Some("Signed tree heads of the audit log".to_owned()),
            storage: stream::StorageType::File,
            num_replicas: settings.nats.replicas,
            duplicate_window: settings.nats.duplicate_window(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| BusError::Declare { what: format!("stream {}", streams::AUDIT), source: e.into() })
}

/// Signs (and publishes) a checkpoint every interval while the log grows.
async fn checkpoint_periodically(ctx: &Context, stop: CancellationToken) {
    let interval = ctx.settings.audit.checkpoint_interval();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match checkpoint::make(&ctx.db, &ctx.identity).await {
            Ok((_, false)) => {}
            Ok((signed, true)) => {
                if let Err(e) = checkpoint::publish(&ctx.bus, &signed).await {
                    tracing::warn!(error = %e, "publishing a checkpoint; will publish the next one");
                }
            }
            Err(e) => tracing::warn!(error = %e, "signing a checkpoint failed; will retry"),
        }
    }
}
