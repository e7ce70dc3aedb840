//! How a Gradients service reports on itself.
//!
//! - [`init`]: `tracing` logs (text or JSON) and spans, exported over OTLP/gRPC when an endpoint
//!   is configured; the W3C trace context propagator is always installed.
//! - [`propagation`]: carries the trace in message headers (`traceparent`) across services.
//! - [`Metrics`]: the Prometheus metrics every service records.
//! - [`serve`]: `/metrics`, `/healthz` and `/readyz` on the service's own port.
//! - [`cancel_on_signal`]: the binaries' SIGINT/SIGTERM handling.

#![warn(missing_docs)]

mod http;
mod metrics;
pub mod propagation;
mod service_main;
mod tracing_setup;

pub use http::{serve, HealthEndpoint, Readiness};
pub use metrics::{Metrics, Outcome};
pub use propagation::{inject_current, set_parent_from, HeaderCarrier, TRACEPARENT};
pub use service_main::service_main;
pub use tracing_setup::{init, init_for_tests, TelemetryGuard};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `telemetry.log_filter` is not a valid filter.
    #[error("telemetry.log_filter {filter:?}: {reason}")]
    Filter {
        /// The filter as configured.
        filter: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error("telemetry.otlp_endpoint {endpoint:?}: {reason}")]
    Exporter {
        /// The endpoint as configured.
        endpoint: String,
        /// Why the exporter could not be built.
        reason: String,
    },
    /// The metrics and health endpoint could not listen.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address as given.
        addr: String,
        /// Why binding failed.
        reason: String,
    },
}

/// The lifecycle every service process shares: logs and traces for `service_name`,
/// SIGINT/SIGTERM turned into the shutdown signal `run` receives, and exported spans
/// flushed once `run` has drained and returned.
pub async fn run_until_signal<F, Fut, E>(
    service_name: &str,
    settings: &gradients_config::TelemetrySettings,
    run: F,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let _telemetry = init(service_name, settings)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(shutdown).await?;
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM. Only binaries call this: libraries take their
/// shutdown signal as an argument.
pub async fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT: shutting down"),
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
    }
    token.cancel();
}
