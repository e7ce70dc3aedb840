//! Logs, traces and the per-service metrics and health endpoint.

use serde::Deserialize;

/// How a service reports on itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// A `tracing` filter (`RUST_LOG` syntax), e.g. `info,gradients_intake=debug`.
    pub log_filter: String,
    /// `text` for people, `json` for log shippers.
    pub log_format: LogFormat,
    /// An OTLP/gRPC endpoint (`http://collector:4317`); traces are exported only when set.
    pub otlp_endpoint: Option<String>,
    /// Fraction of root traces sampled when exporting (0.0 to 1.0).
    pub trace_sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_filter: "info".to_owned(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
        }
    }
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}
