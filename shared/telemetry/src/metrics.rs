//! The Prometheus metrics every service records, registered once with the service name as
//! a constant label. Names and labels are the same in every service, so one dashboard and
//! one autoscaler rule (consumer lag) serve them all.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// What became of a consumed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled and acknowledged.
    Ack,
    /// A transient failure: redelivered later.
    Retry,
    /// Undecodable or impossible: dead-lettered at once.
    Poison,
    /// Failed on every allowed delivery: dead-lettered.
    DeadLettered,
    /// Not actionable yet (the handler asked for it later): redelivered after its delay.
    /// Not a failure.
    Deferred,
    /// The handler panicked: redelivered later, dead-lettered on its last delivery.
    Panicked,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ack => "ack",
            Outcome::Retry => "retry",
            Outcome::Poison => "poison",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Deferred => "deferred",
            Outcome::Panicked => "panicked",
        }
    }
}

/// A service's metrics. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    handled: Family<Labels, Counter>,
    handler_seconds: Family<Labels, Histogram>,
    api_requests: Family<Labels, Counter>,
    api_seconds: Family<Labels, Histogram>,
    rejections: Family<Labels, Counter>,
    pending: Family<Labels, Gauge>,
    published: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// Registers the metric families for `service_name`.
    pub fn new(service_name: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "gradients",
            [(Cow::Borrowed("service"), Cow::Owned(service_name.to_owned()))].into_iter(),
        );
        let metrics = Self {
            registry: Arc::new(Mutex::new(Registry::default())),
            handled: Family::default(),
            handler_seconds: Family::new_with_constructor(latency_histogram),
            api_requests: Family::default(),
            api_seconds: Family::new_with_constructor(latency_histogram),
            rejections: Family::default(),
            pending: Family::default(),
            published: Family::default(),
        };
        registry.register("messages_handled", "Messages consumed, by handler and outcome", metrics.handled.clone());
        registry.register("handler_duration_seconds", "Time to handle one message", metrics.handler_seconds.clone());
        registry.register("api_requests", "API requests, by endpoint and result code", metrics.api_requests.clone());
        registry.register(
            "api_request_duration_seconds",
            "Time to answer one API request",
            metrics.api_seconds.clone(),
        );
        registry.register("rejections", "Requests refused for bad input, by error code", metrics.rejections.clone());
        registry.register(
            "consumer_pending_messages",
            "Messages waiting in a durable consumer (lag)",
            metrics.pending.clone(),
        );
        registry.register("events_published", "Events published, by kind", metrics.published.clone());
        Self { registry: Arc::new(Mutex::new(registry)), ..metrics }
    }

    /// Records one consumed message.
    pub fn handled(&self, handler: &str, outcome: Outcome, elapsed: Duration) {
        self.handled
            .get_or_create(&vec![("handler", handler.to_owned()), ("outcome", outcome.as_str().to_owned())])
            .inc();
        self.handler_seconds.get_or_create(&vec![("handler", handler.to_owned())]).observe(elapsed.as_secs_f64());
    }

    /// Records one API request and its result code (`OK` or an error code name).
    pub fn api_request(&self, endpoint: &str, code: &str, elapsed: Duration) {
        self.api_requests.get_or_create(&vec![("endpoint", endpoint.to_owned()), ("code", code.to_owned())]).inc();
        self.api_seconds.get_or_create(&vec![("endpoint", endpoint.to_owned())]).observe(elapsed.as_secs_f64());
    }

    /// Records a request refused for bad input.
    pub fn rejected(&self, code: &str) {
        self.rejections.get_or_create(&vec![("code", code.to_owned())]).inc();
    }

    /// Sets a consumer's backlog, as last reported by JetStream.
    pub fn set_consumer_pending(&self, consumer: &str, pending: u64) {
        self.pending.get_or_create(&vec![("consumer", consumer.to_owned())]).set(pending.min(i64::MAX as u64) as i64);
    }

    /// Records a published event of `kind` (the subject's second token: `tasks`, ...).
    pub fn published(&self, kind: &str) {
        self.published.get_or_create(&vec![("kind", kind.to_owned())]).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        match self.registry.lock() {
            Ok(registry) => {
                if encode(&mut text, &registry).is_err() {
                    text.clear();
                }
            }
            Err(_) => text.push_str("# registry unavailable\n"),
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded values appear in the exposition with the service label.
    #[test]
    fn records_and_encodes() {
        let metrics = Metrics::new("intake");
        metrics.rejected("MISSING_COLUMN");
        metrics.handled("intake-status", Outcome::Ack, Duration::from_millis(3));
        metrics.set_consumer_pending("intake-status", 7);
        let text = metrics.encode();
        assert!(text.contains("gradients_rejections_total{service=\"intake\",code=\"MISSING_COLUMN\"} 1"), "{text}");
        assert!(
            text.contains("gradients_consumer_pending_messages{service=\"intake\",consumer=\"intake-status\"} 7"),
            "{text}"
        );
        assert!(text.contains("gradients_handler_duration_seconds_bucket"), "{text}");
    }
}
