//! Installs the process-wide `tracing` subscriber and OpenTelemetry pipeline.

use gradients_config::{LogFormat, TelemetrySettings};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::TelemetryError;

/// Flushes exported spans when dropped; keep it alive for the life of the process.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: flushing spans on exit failed: {e}");
            }
        }
    }
}

/// Installs logging and tracing for `service_name`. Spans always get OpenTelemetry
/// contexts (so `traceparent` propagates even when nothing is exported); they are
/// exported over OTLP/HTTP when `otlp_endpoint` is set. Calling it again in one process
/// (tests run several services) keeps the first subscriber and is not an error.
pub fn init(service_name: &str, settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&settings.log_filter)
        .map_err(|e| TelemetryError::Filter { filter: settings.log_filter.clone(), reason: e.to_string() })?;

    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.namespace", "gradients"))
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.trace_sample_ratio))));
    let exporting = settings.otlp_endpoint.is_some();
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
            .map_err(|e| TelemetryError::Exporter { endpoint: endpoint.clone(), reason: e.to_string() })?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_owned());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let fmt = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let installed =
        tracing_subscriber::registry().with(fmt.with_filter(filter)).with(trace_layer(tracer)).try_init().is_ok();
    Ok(TelemetryGuard { provider: (installed && exporting).then_some(provider) })
}

/// A subscriber for tests: `RUST_LOG` or `warn`, printed through the test harness.
/// Idempotent; spans still get trace contexts.
pub fn init_for_tests() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let tracer = SdkTracerProvider::builder().build().tracer("test");
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer().with_filter(filter))
        .with(trace_layer(tracer))
        .try_init();
}

/// The OpenTelemetry layer sees info-level spans whatever the log filter says: a quiet
/// log must not break the trace that `traceparent` carries to the next service.
fn trace_layer<S>(tracer: opentelemetry_sdk::trace::Tracer) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(tracer).with_filter(tracing_subscriber::filter::LevelFilter::INFO)
}
