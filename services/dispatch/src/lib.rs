//! Miner dispatch: how a task finds its miners.
//!
//! - A registry of miners (JetStream key-value, shared by replicas): registration proves
//!   possession of an ed25519 key by signing a one-time challenge (stateless and rate
//!   limited: anonymous callers create nothing); signed, fresh heartbeats bound to the
//!   registration keep a miner live; a silent miner expires.
//! - On `tasks.created`, offers to eligible live miners on their own subjects, then signed
//!   assignments with a grant to read the train split only; too few acceptances are retried
//!   with back-off, then the task fails with a reason.
//! - Granted data is served chunk by chunk to the assigned miner alone.
//! - A cancelled task gets no (more) assignments.
//! - At a task's deadline, it is closed for submissions.
//!
//! API: NATS micro service `gradients-dispatch`, `gradients.api.miners.*`.

mod cancel;
mod challenge;
mod data;
mod data_cache;
mod deadlines;
mod error;
mod placement;
mod registry;

use std::sync::Arc;
use std::time::Instant;

use async_nats::service::Request;
use gradients_bus::api::{answer, ServiceSpec};
use gradients_bus::lifecycle::Lifecycle;
use gradients_bus::service_loops::CrashSwitch;
use gradients_bus::subjects::{api, consumers, kv, streams, TASK_CREATED, TASK_STATUS_ALL};
use gradients_bus::worker::ConsumerSpec;
use gradients_bus::{topology, Bus, BusError};
use gradients_config::Settings;
use gradients_miner::Identity;
use gradients_store::outbox::Relay;
use gradients_store::sea_orm::DatabaseConnection;
use gradients_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

pub use error::{DispatchError, Refusal};
pub use gradients_store::entity::dispatch::{OfferOutcome, TaskState};

/// The service's name in metrics, logs, events and the NATS connection.
pub const SERVICE_NAME: &str = "dispatch";
/// Version reported by `$SRV.INFO`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What every handler needs.
pub(crate) struct Context {
    pub settings: Settings,
    pub bus: Bus,
    pub db: DatabaseConnection,
    pub registry: registry::Registry,
    pub identity: Identity,
    pub outbox: Relay,
    pub metrics: Metrics,
    /// Bounds the challenges anonymous callers get from this process.
    pub challenge_limit: challenge::RateLimit,
    /// Granted splits recently served (read once, served in many chunks).
    pub data_cache: data_cache::DataCache,
    /// Fired by a test's fault point; [`run`] then stops as if killed.
    pub crash: CrashSwitch,
}

/// Dispatch's key: read from `key_file`, or made and saved there on first start.
pub fn load_or_create_identity(settings: &Settings) -> Result<Identity, DispatchError> {
    Ok(Identity::load_or_create(&settings.dispatch.key_file)?)
}

/// Runs dispatch until `shutdown` is cancelled, then drains.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), DispatchError> {
    let identity = load_or_create_identity(&settings)?;
    let lifecycle = Lifecycle::new(SERVICE_NAME, &settings.nats).health_on(&settings.dispatch.http_addr);
    let Some(mut running) = lifecycle.start::<DispatchError>(&shutdown).await? else { return Ok(()) };
    let (bus, metrics) = (running.bus.clone(), running.metrics.clone());
    let ttl = settings.dispatch.heartbeat_ttl();
    let miners =
        topology::key_value(&bus, kv::MINERS, "Registered miners", registry::registry_max_age(ttl), &settings.nats)
            .await?;
    let challenges = topology::key_value(
        &bus,
        kv::CHALLENGES,
        "Registration challenges already used (each expires with its challenge)",
        settings.dispatch.challenge_ttl(),
        &settings.nats,
    )
    .await?;
    let db = gradients_store::connect(&settings.store, gradients_store::Schema::Dispatch).await?;
    let relay = Relay::new(db.clone(), bus.clone(), metrics.clone());
    let ctx = Arc::new(Context {
        settings: settings.clone(),
        bus,
        db,
        registry: registry::Registry { miners, challenges },
        identity,
        outbox: relay.clone(),
        metrics,
        challenge_limit: challenge::RateLimit::new(
            settings.dispatch.challenge_rate_per_s,
            settings.dispatch.challenge_burst,
        ),
        data_cache: data_cache::DataCache::default(),
        crash: CrashSwitch::default(),
    });

    let poll = settings.dispatch.outbox_poll();
    running.spawn_until_stopped(|stop| async move { relay.run(poll, stop).await });
    let created = ConsumerSpec {
        stream: streams::TASKS,
        durable: consumers::DISPATCH_TASKS,
        filter_subject: TASK_CREATED.to_owned(),
    };
    running.spawn_worker(created, &settings.nats, placement::Placer(ctx.clone()));
    let status = ConsumerSpec {
        stream: streams::TASKS,
        durable: consumers::DISPATCH_STATUS,
        filter_subject: TASK_STATUS_ALL.to_owned(),
    };
    running.spawn_worker(status, &settings.nats, cancel::Canceller(ctx.clone()));
    {
        let (ctx, interval) = (ctx.clone(), settings.dispatch.deadline_sweep());
        running.spawn_until_stopped(|stop| async move { deadlines::sweep(&ctx, interval, stop).await });
    }
    {
        let (ctx, stop) = (ctx.clone(), running.stop_token());
        running.spawn(async move { Ok(serve(ctx, stop).await?) });
    }
    running.ready();
    tracing::info!(service = api::DISPATCH_SERVICE, version = VERSION, dispatch_key = %hex::encode(ctx.identity.public_key()), "dispatch ready");

    // A test's crash point drops everything in flight, as a kill would.
    running.run_unless(async move { DispatchError::FaultInjected(ctx.crash.fired().await) }).await
}

/// Registers the micro service and answers miners until `stop`.
async fn serve(ctx: Arc<Context>, stop: CancellationToken) -> Result<(), BusError> {
    let spec = ServiceSpec {
        name: api::DISPATCH_SERVICE,
        version: VERSION,
        description: "Gradients dispatch: miner registration, heartbeats, the live miner list and granted train data",
        group: api::MINERS_GROUP,
        endpoints: &[
            api::MINERS_CHALLENGE,
            api::MINERS_REGISTER,
            api::MINERS_HEARTBEAT,
            api::MINERS_DEREGISTER,
            api::MINERS_LIST,
            api::MINERS_TRAIN,
        ],
        max_concurrent: ctx.settings.dispatch.max_concurrent_requests,
    };
    let client = ctx.bus.client.clone();
    gradients_bus::api::serve(&client, spec, stop, move |endpoint, request| {
        let ctx = ctx.clone();
        async move { handle(&ctx, endpoint, request).await }
    })
    .await
}

async fn handle(ctx: &Context, endpoint: &'static str, request: Request) {
    let started = Instant::now();
    let to_api = |refusal: Refusal| {
        // A failure of dispatch itself was logged, with its cause, where it happened.
        if refusal.is_rejection() {
            tracing::warn!(endpoint, code = refusal.code.as_str_name(), error = %refusal.message, "request refused");
            ctx.metrics.rejected(refusal.code.as_str_name());
        }
        refusal.to_api()
    };
    let code = match endpoint {
        api::MINERS_CHALLENGE => answer(&request, |r| registry::challenge(ctx, r), to_api).await,
        api::MINERS_REGISTER => answer(&request, |r| registry::register(ctx, r), to_api).await,
        api::MINERS_HEARTBEAT => answer(&request, |r| registry::heartbeat(ctx, r), to_api).await,
        api::MINERS_DEREGISTER => answer(&request, |r| registry::deregister(ctx, r), to_api).await,
        api::MINERS_LIST => answer(&request, |r| registry::list(ctx, r), to_api).await,
        _ => answer(&request, |r| data::train(ctx, r), to_api).await,
    };
    ctx.metrics.api_request(endpoint, code.map(|c| c.as_str_name()).unwrap_or("OK"), started.elapsed());
}
