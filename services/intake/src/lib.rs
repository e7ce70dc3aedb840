//! Task intake: the front door of the market.
//!
//! A customer signs every request with its ed25519 key ([`customer`], checked by
//! [`auth`]); tasks belong to the customer that submitted them. It uploads a data set to
//! its own bucket `gradients-uploads-<customer id>` (named by `gradients.api.tasks.upload`)
//! and calls `gradients.api.tasks.submit`. Intake checks the request, reads the upload
//! (a plain object of the caller's bucket, size and sha256, every wait bounded), validates
//! every row for the task type, splits the rows deterministically from the task id into
//! train (for miners), synthetic and test (for validators only), stores the task with its
//! `tasks.created` event in one transaction (the outbox), answers, and publishes the
//! event. A retry with the same idempotency key returns the same task.
//!
//! [`run`] is the whole service; the `gradients-intake` binary and `gradients serve intake`
//! call it, and tests run it in-process against a real NATS server and database.

mod api;
pub mod auth;
mod cancel;
pub mod client;
pub mod customer;
mod error;
mod ingest;
mod projection;
mod readiness;
mod result;
mod slots;
mod submit;
mod tasks;
mod upload;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use gradients_bus::lifecycle::Lifecycle;
use gradients_bus::service_loops::CrashSwitch;
use gradients_bus::subjects::{consumers, streams, TASK_STATUS_ALL};
use gradients_bus::worker::ConsumerSpec;
use gradients_bus::Bus;
use gradients_config::Settings;
use gradients_store::outbox;
use gradients_store::sea_orm::DatabaseConnection;
use gradients_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

pub use api::VERSION;
pub use error::{IntakeError, RequestError};
pub use submit::task_id_for;

/// The service's name in metrics, logs and the NATS connection.
pub const SERVICE_NAME: &str = "intake";

/// What every request handler needs.
pub(crate) struct Context {
    pub settings: Settings,
    pub bus: Bus,
    pub db: DatabaseConnection,
    pub outbox: outbox::Relay,
    pub metrics: Metrics,
    /// Fired by a test's fault point; [`run`] then stops as if killed.
    pub crash: CrashSwitch,
    /// Checks who signed each request.
    pub auth: auth::Authenticator,
    /// Bounds the submits in progress, in all and per customer.
    pub submits: slots::SubmitSlots,
    /// Bounds the bytes of data sets being read, parsed and split at once.
    pub data_budget: ingest::DataBudget,
    /// API requests being handled now (readiness: all slots taken means no answer).
    pub in_flight: AtomicUsize,
}

/// Runs intake until `shutdown` is cancelled, then drains: stops taking requests, lets
/// those in hand finish, publishes what the outbox still holds.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), IntakeError> {
    let lifecycle = Lifecycle::new(SERVICE_NAME, &settings.nats).health_on(&settings.intake.http_addr);
    let Some(mut running) = lifecycle.start::<IntakeError>(&shutdown).await? else { return Ok(()) };
    let (bus, metrics) = (running.bus.clone(), running.metrics.clone());
    let db = gradients_store::connect(&settings.store, gradients_store::Schema::Intake).await?;
    let relay = outbox::Relay::new(db.clone(), bus.clone(), metrics.clone());
    let auth = auth::Authenticator::new(&bus, &settings).await?;
    let submits =
        slots::SubmitSlots::new(settings.intake.max_concurrent_submits, settings.intake.max_submits_per_customer);
    let ctx = Arc::new(Context {
        settings: settings.clone(),
        bus,
        db: db.clone(),
        outbox: relay.clone(),
        metrics,
        crash: CrashSwitch::default(),
        auth,
        submits,
        data_budget: ingest::DataBudget::new(settings.intake.data_budget_bytes),
        in_flight: AtomicUsize::new(0),
    });

    let poll = settings.intake.outbox_poll();
    running.spawn_until_stopped(|stop| async move { relay.run(poll, stop).await });
    let status = ConsumerSpec {
        stream: streams::TASKS,
        durable: consumers::INTAKE_STATUS,
        filter_subject: TASK_STATUS_ALL.to_owned(),
    };
    running.spawn_worker(status, &settings.nats, projection::StatusProjection { db });
    {
        let (ctx, stop) = (ctx.clone(), running.stop_token());
        running.spawn(async move { Ok(api::serve(ctx, stop).await?) });
    }
    // Readiness follows the submit slots (all taken: not ready), not a fixed flag.
    {
        let (ctx, readiness) = (ctx.clone(), running.readiness());
        running.spawn_until_stopped(|stop| async move { readiness::watch(&ctx, &readiness, stop).await });
    }
    tracing::info!(service = gradients_bus::subjects::api::INTAKE_SERVICE, version = VERSION, "intake ready");

    // A test's crash point drops everything in flight, as a kill would.
    running.run_unless(async move { IntakeError::FaultInjected(ctx.crash.fired().await) }).await
}
