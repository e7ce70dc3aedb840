//! Installs the process-wide `tracing` subscriber and OpenTelemetry pipeline: the log
//! filter and format, span contexts for every span (so `traceparent` propagates), and the
//! OTLP/gRPC span exporter when an endpoint is configured.

use gradients_config::{LogFormat, TelemetrySettings};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::{runtime, Resource};
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::TelemetryError;

/// Flushes exported spans when dropped; keep it alive for the life of the process.
#[derive(Debug)]
#[must_use = "dropping the guard at once shuts the span exporter down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether this guard owns an exporting tracer provider (the call that made it
    /// installed the subscriber and an OTLP endpoint was configured).
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            shut_down(provider);
        }
    }
}

/// Installs logging and tracing for `service_name`. Spans always get OpenTelemetry
/// contexts (so `traceparent` propagates even when nothing is exported); they are
/// exported over OTLP/gRPC when `otlp_endpoint` is set, which needs a Tokio runtime.
/// Calling it again in one process (tests run several services) keeps the first
/// subscriber, is not an error, and returns a guard that owns nothing.
pub fn init(service_name: &str, settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&settings.log_filter)
        .map_err(|e| TelemetryError::Filter { filter: settings.log_filter.clone(), reason: e.to_string() })?;
    if tracing::dispatcher::has_been_set() {
        return Ok(TelemetryGuard { provider: None });
    }

    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.namespace", "gradients"))
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.trace_sample_ratio))));
    if let Some(endpoint) = &settings.otlp_endpoint {
        builder = builder.with_span_processor(batch_processor(endpoint)?);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_owned());

    let fmt = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let installed =
        tracing_subscriber::registry().with(fmt.with_filter(filter)).with(trace_layer(tracer)).try_init().is_ok();
    let exporting = settings.otlp_endpoint.is_some();
    if !installed {
        // Another thread installed its subscriber first: this provider serves nobody.
        if exporting {
            shut_down(provider);
        }
        return Ok(TelemetryGuard { provider: None });
    }
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(TelemetryGuard { provider: exporting.then_some(provider) })
}

/// A subscriber for tests: `RUST_LOG` or `warn`, printed through the test harness.
/// Idempotent; spans still get trace contexts; nothing is exported.
pub fn init_for_tests() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let tracer = SdkTracerProvider::builder().build().tracer("test");
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter))
        .with(trace_layer(tracer))
        .try_init();
}

/// The OTLP/gRPC exporter behind a batch processor whose worker runs on the current
/// Tokio runtime.
fn batch_processor(endpoint: &str) -> Result<BatchSpanProcessor<runtime::Tokio>, TelemetryError> {
    let failed = |reason: String| TelemetryError::Exporter { endpoint: endpoint.to_owned(), reason };
    if Handle::try_current().is_err() {
        return Err(failed("exporting spans needs a Tokio runtime; call init from within one".to_owned()));
    }
    let exporter =
        SpanExporter::builder().with_tonic().with_endpoint(endpoint).build().map_err(|e| failed(e.to_string()))?;
    Ok(BatchSpanProcessor::builder(exporter, runtime::Tokio).build())
}

/// Flushes and stops `provider`. The batch processor waits, blocking, for its worker task
/// on the Tokio runtime: on a multi-threaded runtime the wait hands this worker's other
/// tasks off first; on a current-thread runtime it would wait forever, so it is skipped.
fn shut_down(provider: SdkTracerProvider) {
    let result = match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| provider.shutdown()),
        Ok(_) => {
            tracing::warn!("spans not flushed: the tracer provider cannot shut down on a current-thread runtime");
            // Keep the provider's last reference from shutting it down (and blocking) on drop.
            std::mem::forget(provider);
            return;
        }
        // Outside any runtime the worker either runs elsewhere or is gone (then the
        // shutdown fails at once instead of waiting).
        Err(_) => provider.shutdown(),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "flushing spans on exit failed");
    }
}

/// The OpenTelemetry layer sees info-level spans whatever the log filter says: a quiet
/// log must not break the trace that `traceparent` carries to the next service.
fn trace_layer<S>(tracer: opentelemetry_sdk::trace::Tracer) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(tracer).with_filter(tracing_subscriber::filter::LevelFilter::INFO)
}
