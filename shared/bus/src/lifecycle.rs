//! One lifecycle for every service process, so each `run()` only says what its service does.
//!
//! [`Lifecycle::start`]: the service's metrics, its health endpoint (`/metrics`, `/healthz`,
//! `/readyz`, not ready yet), NATS reached patiently (services start in any order; shutdown
//! while waiting is a clean stop), the system's topology declared. [`Running`] then holds
//! the service's loops (API, workers, relays, timers), spawned with the stop token they
//! share; [`Running::run`] waits for the shutdown signal or the first loop to end, stops
//! them all, gives them [`Lifecycle::drain_limit`] to finish, turns a panicked loop into the
//! service's error ([`LoopPanicked`]), reports not ready, flushes what NATS has buffered
//! (bounded by the flush limit) and closes the health endpoint.

use std::future::Future;
use std::time::Duration;

use gradients_config::NatsSettings;
use gradients_telemetry::{HealthEndpoint, Metrics, Readiness, TelemetryError};
use tokio_util::sync::CancellationToken;

use crate::batch_worker::{run_batch_worker, BatchHandler};
use crate::service_loops::ServiceLoops;
use crate::worker::{run_worker, ConsumerSpec, Handler};
use crate::{error_chain, topology, Bus, BusError};

/// How long a service's loops may take to finish after shutdown, unless it says otherwise.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// How long the last flush of the NATS connection may wait for the server.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// A loop of the service panicked; the service stopped.
#[derive(Debug, thiserror::Error)]
#[error("a loop of {service} panicked: {message}")]
pub struct LoopPanicked {
    /// The service.
    pub service: &'static str,
    /// The panic's message.
    pub message: String,
}

/// What a service's error must be able to say: the bus failed, the health endpoint could
/// not start, a loop panicked.
pub trait ServiceFailure:
    From<BusError> + From<TelemetryError> + From<LoopPanicked> + std::error::Error + Send + 'static
{
}

impl<E> ServiceFailure for E where
    E: From<BusError> + From<TelemetryError> + From<LoopPanicked> + std::error::Error + Send + 'static
{
}

/// How one service process starts and stops.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    name: &'static str,
    nats: NatsSettings,
    health_addr: Option<String>,
    declare_topology: bool,
    drain_limit: Duration,
    flush_limit: Duration,
}

impl Lifecycle {
    /// The lifecycle of service `name` (in metrics, logs and, as `gradients-<name>`, the NATS
    /// connection's name) on the NATS servers of `nats`.
    pub fn new(name: &'static str, nats: &NatsSettings) -> Self {
        Self {
            name,
            nats: nats.clone(),
            health_addr: None,
            declare_topology: true,
            drain_limit: DRAIN_LIMIT,
            flush_limit: FLUSH_LIMIT,
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `addr`.
    pub fn health_on(mut self, addr: &str) -> Self {
        self.health_addr = Some(addr.to_owned());
        self
    }

    /// Leaves the streams and buckets to the services that own them (a miner's NATS user
    /// may not declare them).
    pub fn without_topology(mut self) -> Self {
        self.declare_topology = false;
        self
    }

    /// How long the loops may take to finish once stopped.
    pub fn drain_limit(mut self, limit: Duration) -> Self {
        self.drain_limit = limit;
        self
    }

    /// Starts the health endpoint, connects and declares the topology. `Ok(None)` when
    /// `shutdown` came while NATS was still out of reach: there is nothing to stop.
    pub async fn start<E: ServiceFailure>(self, shutdown: &CancellationToken) -> Result<Option<Running<E>>, E> {
        let metrics = Metrics::new(self.name);
        let health = match &self.health_addr {
            Some(addr) => Some(HealthEndpoint::start(addr, metrics.clone()).await?),
            None => None,
        };
        // Not ready (on /readyz) until NATS answers.
        let connected = Bus::connect_patiently(&self.nats, &format!("gradients-{}", self.name), shutdown).await;
        let bus = match connected {
            Ok(Some(bus)) => bus,
            Ok(None) | Err(_) => {
                if let Some(health) = health {
                    health.stop().await;
                }
                return connected.map(|_| None).map_err(E::from);
            }
        };
        if self.declare_topology {
            if let Err(e) = topology::declare(&bus, &self.nats).await {
                if let Some(health) = health {
                    health.stop().await;
                }
                return Err(e.into());
            }
        }
        let loops = ServiceLoops::new(shutdown);
        let readiness = health.as_ref().map(|h| h.readiness.clone()).unwrap_or_default();
        Ok(Some(Running { bus, metrics, health, readiness, loops, lifecycle: self }))
    }
}

/// A started service: its connection, metrics and loops.
pub struct Running<E> {
    /// The service's NATS connection.
    pub bus: Bus,
    /// The service's metrics (served on its health endpoint).
    pub metrics: Metrics,
    health: Option<HealthEndpoint>,
    /// The health endpoint's, or one of its own when there is none.
    readiness: Readiness,
    loops: ServiceLoops<E>,
    lifecycle: Lifecycle,
}

impl<E: ServiceFailure> Running<E> {
    /// The token every loop watches: cancelled on shutdown or when a loop ends.
    pub fn stop_token(&self) -> CancellationToken {
        self.loops.stop_token()
    }

    /// The service's readiness, as `/readyz` reports it.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Reports the service ready: every loop it needs is running.
    pub fn ready(&self) {
        self.readiness().set_ready(true);
    }

    /// Runs `task` (built with [`Running::stop_token`]) until it ends; a loop that returns,
    /// or fails, stops the others.
    pub fn spawn(&mut self, task: impl Future<Output = Result<(), E>> + Send + 'static) {
        self.loops.spawn(task);
    }

    /// Runs a loop that cannot fail (a relay, a timer) until the stop token it is given.
    pub fn spawn_until_stopped<Fut>(&mut self, task: impl FnOnce(CancellationToken) -> Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let running = task(self.stop_token());
        self.loops.spawn(async move {
            running.await;
            Ok(())
        });
    }

    /// Runs `handler` on the durable consumer `spec`, a message at a time (up to
    /// `nats.worker_concurrency` at once).
    pub fn spawn_worker<H: Handler>(&mut self, spec: ConsumerSpec, nats: &NatsSettings, handler: H) {
        let (bus, nats, metrics, stop) = (self.bus.clone(), nats.clone(), self.metrics.clone(), self.stop_token());
        self.loops.spawn(async move { Ok(run_worker(&bus, spec, &nats, metrics, stop, handler).await?) });
    }

    /// Runs `handler` on the durable consumer `spec`, a fetched batch at a time.
    pub fn spawn_batch_worker<H: BatchHandler>(&mut self, spec: ConsumerSpec, handler: H) {
        let (bus, nats, metrics, stop) =
            (self.bus.clone(), self.lifecycle.nats.clone(), self.metrics.clone(), self.stop_token());
        self.loops.spawn(async move { Ok(run_batch_worker(&bus, spec, &nats, metrics, stop, handler).await?) });
    }

    /// Runs the loops until shutdown or the first one ends, then drains and stops (see the
    /// module's documentation). Returns the first loop's failure, if any.
    pub async fn run(self) -> Result<(), E> {
        self.run_unless(std::future::pending()).await
    }

    /// [`Running::run`], unless `abort` resolves first: then the loops are dropped where they
    /// are, as if the process were killed (a test's crash point), and its error returned.
    pub async fn run_unless(self, abort: impl Future<Output = E>) -> Result<(), E> {
        let Running { bus, health, readiness, loops, lifecycle, .. } = self;
        let service = lifecycle.name;
        let outcome = tokio::select! {
            outcome = loops.run(lifecycle.drain_limit, |message| E::from(LoopPanicked { service, message })) => outcome,
            error = abort => {
                if let Some(health) = health {
                    health.abort();
                }
                return Err(error);
            }
        };
        readiness.set_ready(false);
        bus.flush_before_exit(lifecycle.flush_limit).await;
        if let Some(health) = health {
            health.stop().await;
        }
        if let Err(e) = &outcome {
            tracing::error!(service, error = %error_chain(e), "stopped on an error");
        }
        outcome
    }
}
