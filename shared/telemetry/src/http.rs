//! Each service's own HTTP port: `/metrics` for Prometheus, `/healthz` (the process is
//! alive) and `/readyz` (it is connected and serving), for orchestrators.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::{Metrics, TelemetryError};

/// Whether the service is ready for traffic. Cheap to clone.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Not ready yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Marks the service ready (or not, while draining).
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A service's running metrics and health endpoint.
pub struct HealthEndpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What `/readyz` reports; the service sets it.
    pub readiness: Readiness,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HealthEndpoint {
    /// Starts serving `metrics` and health on `addr` (port 0 picks one), not ready yet.
    pub async fn start(addr: &str, metrics: Metrics) -> Result<Self, TelemetryError> {
        let readiness = Readiness::new();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let (addr, task) = serve(addr, metrics, readiness.clone(), async move { stopped.cancelled().await }).await?;
        tracing::info!(%addr, "metrics and health endpoint up");
        Ok(Self { addr, readiness, stop, task })
    }

    /// Stops it gracefully and waits until it has.
    pub async fn stop(self) {
        self.readiness.set_ready(false);
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Stops it at once (a simulated crash).
    pub fn abort(self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: Metrics,
    readiness: Readiness,
}

/// Listens on `addr` (port 0 picks one) and serves until `shutdown` resolves; returns the
/// bound address and the server's task.
pub async fn serve(
    addr: &str,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), TelemetryError> {
    let bind_error = |reason: String| TelemetryError::Bind { addr: addr.to_owned(), reason };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| bind_error(e.to_string()))?;
    let bound = listener.local_addr().map_err(|e| bind_error(e.to_string()))?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(Endpoints { metrics, readiness });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::warn!(error = %e, "metrics and health endpoint stopped");
        }
    });
    Ok((bound, task))
}

async fn metrics_page(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], endpoints.metrics.encode())
}

async fn ready(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    if endpoints.readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    /// Health answers at once, readiness follows the flag, metrics show what was recorded.
    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let metrics = Metrics::new("test");
        metrics.rejected("EMPTY_DATASET");
        let readiness = Readiness::new();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let (addr, task) =
            serve("127.0.0.1:0", metrics, readiness.clone(), async move { stopped.cancelled().await }).await.unwrap();

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        readiness.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let page = get(addr, "/metrics").await;
        assert!(page.contains("EMPTY_DATASET") && page.contains("openmetrics"), "{page}");

        stop.cancel();
        task.await.unwrap();
        assert!(serve("definitely not an address", Metrics::new("x"), Readiness::new(), async {}).await.is_err());
    }
}
